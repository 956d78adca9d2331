"""The trainer's episodes on Ray-hosted envs (local Ray, CPU): same trajectories as local envs, a
killed actor's episodes dropped as SANDBOX_FAILURE, and the rollout config's Ray fields."""

from __future__ import annotations

import functools
import importlib.util
import re
import threading

import gymnasium as gym
import pytest

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.scripted import answer_turn, code_turn
from pyvision_train.config import ConfigError, RolloutConfig, from_dict

ENV_ID = "PyVisionImage-v0"


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance for every test here (starting Ray costs seconds)."""
    ray = pytest.importorskip("ray", reason="needs ray: pip install 'pyvision-env[ray]'")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def codec(tiny_model):
    pytest.importorskip("transformers", reason="needs transformers: pip install 'pyvision-env[train]'")
    from transformers import AutoProcessor

    from pyvision_train.rollout import ChatCodec

    return ChatCodec(AutoProcessor.from_pretrained(tiny_model, local_files_only=True, padding_side="left"))


def runner_for(codec, tasks, **kwargs):
    from pyvision_train.rollout import EpisodeRunner

    # A partial of gym.make pickles by reference: the actors can import it.
    make_env = functools.partial(gym.make, tasks=tasks, max_turns=4)
    return EpisodeRunner(codec, make_env, num_workers=4, max_context_tokens=100_000,
                         eos_ids=[codec.tokenizer.eos_token_id], **kwargs)


def turn_of(request, tokenizer) -> int:
    return tokenizer.decode(request.ids).count("<|im_start|>assistant") - 1


def scripted(tokenizer, first_cell: str):
    """Turn 0 runs `first_cell`; turn 1 answers "A" when the cell printed an image width that is a
    multiple of 8, else "B": rewards differ between episodes and depend only on what the env sent."""

    def generate(requests):
        from pyvision_train.rollout import TurnOutput

        turns = []
        for request in requests:
            if turn_of(request, tokenizer) == 0:
                text = code_turn(first_cell)
            else:
                printed = re.findall(r"\((\d+), \d+\)", tokenizer.decode(request.ids))
                text = answer_turn("A" if printed and int(printed[-1]) % 8 == 0 else "B")
            turns.append(TurnOutput(tokenizer.encode(text, add_special_tokens=False)))
        return turns

    return generate


def test_a_rollout_on_ray_envs_matches_local_envs(local_ray, codec, letter_tasks):
    from pyvision_train.rollout import EpisodeStart

    starts = [EpisodeStart(ENV_ID, seed) for seed in range(5)] + [EpisodeStart(ENV_ID, 0, task_index=6)]
    generate = scripted(codec.tokenizer, "plt.imshow(image_clue_0)\nplt.show()\nprint(image_clue_0.size)")
    played = {}
    for workers in (0, 2):
        runner = runner_for(codec, letter_tasks, num_env_workers=workers)
        try:
            played[workers], _ = runner.run(starts, generate)
            if workers:
                assert set(runner.ray_pools) == {ENV_ID} and runner.ray_pools[ENV_ID].num_slots == 6
        finally:
            runner.close()
        assert not runner.ray_pools
    local, remote = played[0], played[2]
    assert all(t.end_reason == "DONE" for t in local)
    assert sorted({round(t.reward, 6) for t in local}) == [0.0, 1.1]  # both answers were played
    for here, there in zip(local, remote):
        assert there.prompt_ids == here.prompt_ids and there.completion_ids == here.completion_ids
        assert there.tool_mask == here.tool_mask
        assert (there.reward, there.end_reason, there.reward_parts) == (here.reward, here.end_reason,
                                                                       here.reward_parts)
        assert (there.turns, there.num_code_cells, len(there.images)) == (here.turns, here.num_code_cells,
                                                                          len(here.images))


def test_a_killed_actor_ends_its_episodes_with_sandbox_failure_and_the_next_batch_succeeds(
        local_ray, codec, letter_tasks):
    from pyvision_train.filtering import FilterConfig, Outcome, keep_trajectory
    from pyvision_train.rollout import EpisodeStart

    ray = local_ray
    tokenizer = codec.tokenizer
    runner = runner_for(codec, letter_tasks, num_env_workers=2)
    killed = threading.Event()
    dead = []
    slow = scripted(tokenizer, "import time\ntime.sleep(3)\nprint('slept')")

    def generate(requests):
        if not killed.is_set() and any(turn_of(r, tokenizer) == 0 for r in requests):
            pool = runner.ray_pools[ENV_ID]  # the cells are about to run: kill actor 0 during them
            dead.append(ray.get(pool.actor(0).pid.remote()))
            threading.Timer(1.0, lambda: ray.kill(pool.actor(0), no_restart=True)).start()
            killed.set()
        return slow(requests)

    starts = [EpisodeStart(ENV_ID, seed) for seed in range(4)]
    try:
        first, _ = runner.run(starts, generate)
        pool = runner.ray_pools[ENV_ID]
        assert (pool.num_slots, pool.envs_per_worker) == (4, 2)
        # Starts 0 and 1 played on actor 0 (slots 0, 1): lost; actor 1's episodes went on.
        assert [t.end_reason for t in first] == ["SANDBOX_FAILURE"] * 2 + ["DONE"] * 2
        assert all(t.reward == 0.0 and not t.reward_parts for t in first[:2])
        kept = [keep_trajectory(Outcome(t.reward, t.end_reason, t.looked_at_image), FilterConfig()) for t in first]
        assert kept == [False, False, True, True]  # dropped by the filter, never scored
        second, _ = runner.run(starts, scripted(tokenizer, "print('again')"))
        assert [t.end_reason for t in second] == ["DONE"] * 4
        assert runner.ray_pools[ENV_ID] is pool  # the same pool, its actor 0 replaced
        assert ray.get(pool.actor(0).pid.remote()) not in dead
    finally:
        runner.close()


def test_a_larger_batch_replaces_the_pool_by_a_larger_one(local_ray, codec, letter_tasks):
    from pyvision_train.rollout import EpisodeStart

    runner = runner_for(codec, letter_tasks, num_env_workers=2)
    generate = scripted(codec.tokenizer, "print(1)")
    try:
        runner.run([EpisodeStart(ENV_ID, 0)], generate)
        small = runner.ray_pools[ENV_ID]
        assert small.num_slots == 1
        trajectories, _ = runner.run([EpisodeStart(ENV_ID, seed) for seed in range(3)], generate)
        assert [t.end_reason for t in trajectories] == ["DONE"] * 3
        assert runner.ray_pools[ENV_ID].num_slots == 4  # 2 actors x 2 envs
        runner.run([EpisodeStart(ENV_ID, 0)], generate)  # a smaller batch reuses the pool
        assert runner.ray_pools[ENV_ID].num_slots == 4
    finally:
        runner.close()


def test_the_trainer_plays_on_ray_envs_when_asked_and_closes_them(local_ray, tmp_path, tiny_model,
                                                                   letter_tasks):
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    import math

    from pyvision_agents.ray_pool import RayEnvPool
    from pyvision_train.run import build_trainer

    config = from_dict({
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(tiny_model), "dtype": "float32"},
        "env": {"id": ENV_ID, "train_max_turns": 2, "kwargs": {"tasks": letter_tasks}},
        "data": {"train_prompts": 2},
        "rollout": {"num_workers": 2, "num_env_workers": 1},
        "grpo": {"use_cpu": True, "bf16": False, "num_generations": 2, "per_device_train_batch_size": 2,
                 "steps_per_generation": 1, "max_completion_length": 8, "max_steps": 1,
                 "logging_steps": 1, "save_strategy": "no", "report_to": [],
                 "gradient_checkpointing": False},
    })
    trainer = build_trainer(config)
    try:
        result = trainer.train()
        runner = trainer._runners["train"]
        pool = runner.ray_pools[ENV_ID]
        assert isinstance(pool, RayEnvPool) and pool.num_slots == 2
        assert runner._pool[ENV_ID] == pool.envs()  # every episode played on the pool's envs
        assert result.global_step == 1 and math.isfinite(result.training_loss)
        ended = [r for r in trainer.state.log_history if "pyvision/code_cells/mean" in r]
        assert ended[0]["pyvision/end_reason/SANDBOX_FAILURE"] == 0.0
    finally:
        trainer.close()
    assert not runner.ray_pools


class LosesItsHost(gym.Wrapper):
    """An env whose host dies at the reset of seed 1 or the first step of seed 2 (as a `RemoteEnv`
    reports a dead actor)."""

    def reset(self, *, seed=None, options=None):
        from pyvision_agents.ray_pool import EnvLost

        if seed == 1:
            raise EnvLost("env slot 1: its actor died twice at reset")
        self.seed_played = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        from pyvision_agents.ray_pool import EnvLost

        if self.seed_played == 2:
            raise EnvLost("env slot 2: its actor died")
        return super().step(action)


def test_a_lost_host_at_reset_or_step_ends_only_that_episode_with_sandbox_failure(codec, letter_tasks):
    from pyvision_train.rollout import EpisodeRunner, EpisodeStart

    runner = EpisodeRunner(codec, lambda env_id: LosesItsHost(gym.make(env_id, tasks=letter_tasks)),
                           num_workers=3, max_context_tokens=100_000, eos_ids=[codec.tokenizer.eos_token_id])
    try:
        trajectories, _ = runner.run([EpisodeStart(ENV_ID, seed) for seed in (0, 1, 2)],
                                     scripted(codec.tokenizer, "print(image_clue_0.size)"))
    finally:
        runner.close()
    played, lost_at_reset, lost_at_step = trajectories
    assert played.end_reason == "DONE" and played.turns == 2
    assert lost_at_reset.end_reason == "SANDBOX_FAILURE" and lost_at_reset.num_model_tokens == 0
    assert len(lost_at_reset.prompt_ids) == len(lost_at_reset.completion_ids) == 1  # a masked placeholder
    assert lost_at_step.end_reason == "SANDBOX_FAILURE" and lost_at_step.num_model_tokens > 0
    assert lost_at_reset.reward == lost_at_step.reward == 0.0


# ---------------------------------------------------------------------- config


def test_the_rollout_section_takes_ray_fields():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs ray: pip install 'pyvision-env[ray]'")
    raw = {"output_dir": "runs/x", "model": {"path": "m"},
           "rollout": {"num_env_workers": 4, "ray_address": "auto"}}
    rollout = from_dict(raw).rollout
    assert (rollout.num_env_workers, rollout.ray_address) == (4, "auto")
    assert (RolloutConfig().num_env_workers, RolloutConfig().ray_address) == (0, None)


@pytest.mark.parametrize("fields, message", [
    ({"num_env_workers": -1}, "num_env_workers must be an integer >= 0"),
    ({"num_env_workers": 1.5}, "num_env_workers must be an integer >= 0"),
    ({"num_env_workers": True}, "num_env_workers must be an integer >= 0"),
    ({"ray_address": "auto"}, "set rollout.num_env_workers > 0 or remove rollout.ray_address"),
    ({"num_env_workers": 2, "ray_address": ""}, "must be a Ray address such as 'auto'"),
    ({"num_env_workers": 2, "ray_address": 6379}, "must be a Ray address such as 'auto'"),
], ids=["negative", "fraction", "bool", "address-without-workers", "empty-address", "not-a-string"])
def test_bad_ray_fields_say_the_fix(fields, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"output_dir": "runs/x", "model": {"path": "m"}, "rollout": fields})


def test_ray_workers_without_ray_say_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'pyvision-env\[ray\]'"):
        RolloutConfig(num_env_workers=2)
    assert RolloutConfig(num_env_workers=0).num_env_workers == 0


def test_a_batch_lost_at_reset_trains_on_without_it(tmp_path, tiny_model, letter_tasks):
    """SANDBOX_FAILURE trajectories lost at reset (no prompt) reach TRL dropped, and the step runs."""
    pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
    import math

    from pyvision_train.run import build_trainer
    from pyvision_train.trainer import PyVisionGRPOTrainer

    class LossyHosts(PyVisionGRPOTrainer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            make_runner = self._make_runner

            def lossy(mode):
                runner = make_runner(mode)
                make_env = runner.make_env
                runner.make_env = lambda env_id: LosesItsHost(make_env(env_id))
                return runner

            self._make_runner = lossy

    config = from_dict({
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(tiny_model), "dtype": "float32"},
        "env": {"id": ENV_ID, "train_max_turns": 2, "kwargs": {"tasks": letter_tasks}},
        "data": {"train_prompts": 2},  # seeds 0 and 1: each step plays one of them twice
        "filter": {"drop_tied_groups": False},
        "grpo": {"use_cpu": True, "bf16": False, "num_generations": 2, "per_device_train_batch_size": 2,
                 "steps_per_generation": 1, "max_completion_length": 8, "max_steps": 2,
                 "logging_steps": 1, "save_strategy": "no", "report_to": [],
                 "gradient_checkpointing": False},
    })
    trainer = build_trainer(config, LossyHosts)
    try:
        result = trainer.train()
    finally:
        trainer.close()
    assert result.global_step == 2 and math.isfinite(result.training_loss)
    lost = [r["pyvision/end_reason/SANDBOX_FAILURE"] for r in trainer.state.log_history
            if "pyvision/end_reason/SANDBOX_FAILURE" in r]
    assert sorted(lost) == [0.0, 1.0]  # one step played seed 1: both its episodes lost at reset
    assert all(math.isfinite(r["loss"]) for r in trainer.state.log_history if "loss" in r)
