"""The Ray env pool on a local Ray instance (CPU): remote envs, the runner on it, a killed actor."""

from __future__ import annotations

import functools
import json
import threading
import time

import gymnasium as gym
import pytest

ray = pytest.importorskip("ray", reason="needs ray: pip install 'pyvision-env[ray]'")

import pyvision_env  # noqa: E402,F401
from pyvision_agents.ray_pool import EnvLost, RayEnvPool  # noqa: E402
from pyvision_agents.runner import run_episodes  # noqa: E402
from pyvision_agents.scripted import SolverAgent, answer_turn, code_turn  # noqa: E402


# The actors import what they run: a partial of gym.make pickles by reference (a function of this
# test module would not be importable in a Ray worker).
make_env = functools.partial(gym.make, "PyVisionImage-v0", difficulty="easy")


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance for every test here (starting Ray costs seconds)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(local_ray):
    pool = RayEnvPool(make_env, num_workers=2, envs_per_worker=2, cpus_per_worker=0.5)
    yield pool
    pool.close()


def test_remote_envs_reset_and_step_like_local_ones(pool):
    envs = pool.envs()
    assert pool.num_slots == len(envs) == 4
    _, remote_info = envs[3].reset(seed=7)
    local = make_env()
    try:
        _, local_info = local.reset(seed=7)
        assert remote_info["task_id"] == local_info["task_id"]
        code = code_turn("print(image_clue_0.size)")
        remote = envs[3].step(code)
        here = local.step(code)
        assert remote[0]["text"] == here[0]["text"] and remote[1:4] == here[1:4]
        # The chat is rebuilt in full, though only its new messages crossed the wire.
        assert [m["role"] for m in remote[4]["messages"]] == [m["role"] for m in here[4]["messages"]]
        assert (remote[4]["messages"][0]["content"][1]["image"] == here[4]["messages"][0]["content"][1]["image"]).all()
        done = envs[3].step(answer_turn("A"))
        assert done[2] and done[4]["end_reason"] == "DONE" and done[4]["ground_truth"] == local.step(answer_turn("A"))[4]["ground_truth"]
    finally:
        local.close()


def test_steps_go_out_at_once_and_come_back_as_they_finish(pool):
    envs = pool.envs()
    for slot, env in enumerate(envs):
        env.reset(seed=slot)
    started = time.monotonic()
    slow = envs[0].submit_step(code_turn("import time; time.sleep(2); print('slow')"))
    fast = [env.submit_step(code_turn("print('fast')")) for env in envs[1:]]
    assert all("fast" in future.result(timeout=60)[0]["text"] for future in fast)
    assert not slow.done() and time.monotonic() - started < 2  # the fast ones did not wait
    assert "slow" in slow.result(timeout=60)[0]["text"]


def test_runner_on_the_pool_matches_local_envs(pool):
    episodes = [(i, 100 + i) for i in range(6)]
    remote = sorted(run_episodes(pool, SolverAgent(), episodes), key=lambda r: r.episode)
    local = sorted(run_episodes(make_env, SolverAgent(), episodes, num_envs=2), key=lambda r: r.episode)
    assert [r.task_id for r in remote] == [r.task_id for r in local]
    assert all(r.correct and r.end_reason == "DONE" for r in remote)


class _KillsActorDuringTheCells:
    """Plays a slow cell then an answer; the first time the cells are out, kills actor 0."""

    name = "killer"

    def __init__(self, pool):
        self.pool, self.killed = pool, threading.Event()

    def act(self, contexts):
        if not self.killed.is_set() and any(c.info["turn"] == 0 for c in contexts):
            threading.Timer(1.0, lambda: ray.kill(self.pool.actor(0), no_restart=True)).start()
            self.killed.set()
        return [code_turn("import time; time.sleep(3); print('done')") if c.info["turn"] == 0
                else answer_turn("0") for c in contexts]


def test_an_actor_killed_mid_episode_ends_its_episodes_with_sandbox_failure_and_is_replaced(local_ray):
    pool = RayEnvPool(make_env, num_workers=2, envs_per_worker=2, cpus_per_worker=0.5)
    try:
        records = list(run_episodes(pool, _KillsActorDuringTheCells(pool), [(i, i) for i in range(8)]))
        by_episode = {r.episode: r for r in records}
        assert sorted(by_episode) == list(range(8))
        failed = [r for r in records if r.end_reason == "SANDBOX_FAILURE"]
        # The first four episodes ran on slots 0-3: those on actor 0 (slots 0, 1) were lost.
        assert sorted(r.episode for r in failed) == [0, 1]
        assert all(r.task_id and "actor died" in r.error for r in failed)
        # The replaced actor took later episodes and finished them.
        assert all(by_episode[i].end_reason == "DONE" for i in range(2, 8))
        assert ray.get(pool.actor(0).pid.remote()) > 0
    finally:
        pool.close()


def test_idle_episodes_of_a_dead_actor_are_lost_and_a_reset_starts_afresh(local_ray):
    pool = RayEnvPool(make_env, num_workers=2, envs_per_worker=1, cpus_per_worker=0.5)
    try:
        first, second = pool.envs()
        first.reset(seed=1)
        second.reset(seed=2)
        dead = ray.get(pool.actor(0).pid.remote())
        ray.kill(pool.actor(0), no_restart=True)
        with pytest.raises(EnvLost, match="actor died"):
            first.step(code_turn("print(1)"))
        with pytest.raises(EnvLost):  # and again, until a reset
            first.step(code_turn("print(1)"))
        assert "2" in second.step(code_turn("print(2)"))[0]["text"]  # the other actor is untouched
        _, info = first.reset(seed=1)
        assert info["turn"] == 0 and ray.get(pool.actor(0).pid.remote()) != dead
        assert "3" in first.step(code_turn("print(3)"))[0]["text"]
    finally:
        pool.close()


def test_run_episodes_starts_its_own_pool_with_num_env_workers(local_ray):
    records = list(run_episodes(make_env, SolverAgent(), [(i, i) for i in range(4)], num_envs=4,
                                num_env_workers=2, env_id="PyVisionImage-v0"))
    assert len(records) == 4 and all(r.correct for r in records)


def test_cli_bench_runs_on_ray_workers(local_ray, tmp_path):
    from pyvision_agents.cli import main

    out = tmp_path / "run"
    assert main(["bench", "--env", "PyVisionImage-v0", "--agent", "solver", "--episodes", "3",
                 "--num-envs", "2", "--num-env-workers", "1", "--difficulty", "easy", "--out", str(out),
                 "--no-progress", "--no-plots", "--no-viewer", "--no-images"]) == 0
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["episode"] for r in records) == [0, 1, 2] and all(r["correct"] for r in records)
