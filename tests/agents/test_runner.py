"""The runner steps the episodes of a turn at the same time, and keeps its per-episode bookkeeping."""

from __future__ import annotations

import threading
import time

import gymnasium as gym

import pyvision_env  # noqa: F401
from pyvision_agents.runner import ENV_ERROR, run_episodes
from pyvision_agents.scripted import answer_turn, code_turn

SLEEP = 1.0


class _SleepThenAnswer:
    """Turn 1: a cell that sleeps SLEEP seconds in the sandbox; turn 2: answers."""

    name = "sleeper"

    def act(self, contexts):
        return [code_turn(f"import time; time.sleep({SLEEP}); print('slept')")
                if c.info["turn"] == 0 else answer_turn("0") for c in contexts]


class _Timed(gym.Wrapper):
    """Records (start, end) of every step that ran a cell, shared by all the envs of a test."""

    def __init__(self, env, spans, lock):
        super().__init__(env)
        self.spans, self.lock = spans, lock

    def step(self, action):
        start = time.monotonic()
        result = self.env.step(action)
        if result[4]["exec"]["status"] != "none":
            with self.lock:
                self.spans.append((start, time.monotonic()))
        return result


def test_cells_of_different_episodes_run_at_the_same_time():
    spans, lock = [], threading.Lock()
    make_env = lambda: _Timed(gym.make("PyVisionImage-v0", difficulty="easy"), spans, lock)  # noqa: E731
    records = list(run_episodes(make_env, _SleepThenAnswer(), [(i, i) for i in range(4)], num_envs=4))
    assert len(records) == 4 and all(r.code_cells == 1 for r in records)
    assert all("slept" in r.transcript[2]["content"][0]["text"] for r in records)
    assert len(spans) == 4 and all(end - start >= SLEEP for start, end in spans)
    # Every cell started before any of them ended: the four sleeps overlapped.
    assert max(start for start, _ in spans) < min(end for _, end in spans)


class _FailsOnEpisode(gym.Wrapper):
    """Raises in `step` of the episode whose seed is `bad`."""

    def __init__(self, env, bad):
        super().__init__(env)
        self.bad, self.seed = bad, None

    def reset(self, *, seed=None, options=None):
        self.seed = seed
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        if self.seed == self.bad:
            raise RuntimeError("broken step")
        return self.env.step(action)


def test_one_env_failing_mid_turn_ends_only_its_episode():
    make_env = lambda: _FailsOnEpisode(gym.make("PyVisionImage-v0", difficulty="easy"), bad=2)  # noqa: E731
    records = list(run_episodes(make_env, _SleepThenAnswer(), [(i, i) for i in range(5)], num_envs=3))
    by_episode = {r.episode: r for r in records}
    assert sorted(by_episode) == [0, 1, 2, 3, 4]
    assert by_episode[2].end_reason == ENV_ERROR and "broken step" in by_episode[2].error
    assert all(by_episode[i].end_reason == "DONE" for i in (0, 1, 3, 4))


def test_a_consumer_that_stops_early_closes_every_env():
    closed = []

    class _CountClose(gym.Wrapper):
        def close(self):
            closed.append(self)
            super().close()

    make_env = lambda: _CountClose(gym.make("PyVisionImage-v0", difficulty="easy"))  # noqa: E731
    records = run_episodes(make_env, _SleepThenAnswer(), [(i, i) for i in range(6)], num_envs=3)
    first = next(records)
    records.close()  # the caller stops after one record: in-flight steps finish, envs close
    assert first.end_reason == "DONE" and len(closed) == 3
