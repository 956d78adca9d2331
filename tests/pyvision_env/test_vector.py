"""Every registered id works under `gymnasium.make_vec` (sync and async) and pickles before reset."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import pyvision_env  # noqa: F401
from pyvision_env.registration import PRESETS

IDS = [preset.id for preset in PRESETS]
CODE = "<code>\n```python\nprint('clues', len([n for n in globals() if n.endswith('clue_0')]))\n```\n</code>"
ANSWER = "<answer>\n\\boxed{0}\n</answer>"
MODES = {
    "sync": {"vectorization_mode": "sync"},
    "async": {"vectorization_mode": "async", "vector_kwargs": {"shared_memory": False}},
}


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def _is_zygote(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return b"--fd" in handle.read()


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_reset_code_step_answer_step(env_id, mode):
    envs = gym.make_vec(env_id, num_envs=2, difficulty="easy", **MODES[mode])
    try:
        observations, info = envs.reset(seed=[3, 4])
        assert len(observations["text"]) == 2 and all(observations["text"])
        assert list(info["task_id"]) and info["task_id"][0] != info["task_id"][1]
        if mode == "async":  # each sandbox started in the worker that holds its env
            for worker in envs.processes:
                assert any(_is_zygote(child) for child in _children(worker.pid)), worker.pid
        observations, rewards, terminated, truncated, info = envs.step([CODE, CODE])
        assert list(info["exec"]["status"]) == ["ok", "ok"]
        assert all("clues 1" in text for text in observations["text"])
        assert not terminated.any() and not truncated.any() and np.all(rewards == 0.0)
        observations, rewards, terminated, truncated, info = envs.step([ANSWER, ANSWER])
        assert terminated.all() and not truncated.any()
        assert list(info["end_reason"]) == ["DONE", "DONE"]
        assert all(info["ground_truth"]) and list(info["num_code_cells"]) == [1, 1]
    finally:
        envs.close()


def test_async_with_shared_memory_is_refused_with_the_fix_named():
    # Observations hold a variable number of images of any size: no static shared buffer fits.
    with pytest.raises(TypeError, match="disable `shared_memory`"):
        gym.make_vec("PyVisionImage-v0", num_envs=2, vectorization_mode="async")


@pytest.mark.parametrize("env_id", IDS)
def test_an_env_pickles_before_reset_and_its_copy_plays(env_id):
    env = gym.make(env_id, difficulty="easy")
    copy = pickle.loads(pickle.dumps(env))
    try:
        _, info = copy.reset(seed=5)
        _, first_info = env.reset(seed=5)
        assert info["task_id"] == first_info["task_id"]  # same settings, same seeded task
        _, _, terminated, _, info = copy.step(CODE)
        assert not terminated and info["exec"]["status"] == "ok"
    finally:
        copy.close()
        env.close()
