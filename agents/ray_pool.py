"""A Ray pool of env hosts: actors that each hold several envs and their sandboxes, on any node.

    pool = RayEnvPool(lambda: gym.make("PyVisionImage-v0"), num_workers=4, envs_per_worker=8,
                      address="auto")
    envs = pool.envs()                     # one `RemoteEnv` per slot: gym-like reset / step
    future = envs[0].submit_step(action)   # or without waiting: a concurrent.futures.Future
    ...
    pool.close()

`pyvision_agents.runner.run_episodes(..., num_env_workers=N, ray_address=...)` drives a pool the
way it drives local envs: each turn the steps of every episode go out at once, and records come
back as episodes finish; a freed slot takes the next episode only when the caller asks for the
next record (back-pressure: never more episodes in flight than slots).

An actor that dies (its node lost, the process killed) ends the episodes it held with end reason
SANDBOX_FAILURE (`EnvLost` from `step`), and is replaced by a fresh actor on the next `reset`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import gymnasium as gym

from pyvision_env import info as keys

EnvFactory = Callable[[], gym.Env]


class EnvLost(RuntimeError):
    """The actor holding this env died: its episode is gone (infrastructure, not the policy)."""


def _ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"the Ray env pool needs ray ({error}): pip install 'pyvision-env[ray]'") from None
    return ray


class EnvHost:
    """The actor's body: `num_envs` envs made by `make_env`, stepped from several threads at once
    (the actor runs with `max_concurrency=num_envs`; each env is used by one request at a time).

    `step` sends back only the messages that changed since the last call for that env (the prompt
    and its images cross the network once per episode); `RemoteEnv` rebuilds the full chat.
    """

    def __init__(self, make_env: EnvFactory, num_envs: int) -> None:
        self.envs = [make_env() for _ in range(num_envs)]
        self.sent = [0] * num_envs

    def reset(self, index: int, seed: int | None, options: dict[str, Any] | None):
        observation, info = self.envs[index].reset(seed=seed, options=options)
        self.sent[index] = len(info[keys.MESSAGES])
        return observation, info

    def step(self, index: int, action: str):
        observation, reward, terminated, truncated, info = self.envs[index].step(action)
        messages = info[keys.MESSAGES]
        start = max(self.sent[index] - 1, 1)  # the last message may have grown (inline chat form)
        self.sent[index] = len(messages)
        return observation, reward, terminated, truncated, {**info, keys.MESSAGES: (start, messages[start:])}

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        for env in self.envs:
            env.close()


class RayEnvPool:
    """`num_workers` actors with `envs_per_worker` envs each; slot i is env i % envs_per_worker of
    actor i // envs_per_worker.

    Args:
        make_env: makes one env on the actor's node (pickled with cloudpickle: a lambda is fine).
        num_workers: actors to start.
        envs_per_worker: envs (and so sandboxes) per actor.
        cpus_per_worker: Ray CPUs each actor reserves. The actor mostly waits on its sandboxes,
            which are processes of their own that Ray does not account for.
        address: the Ray cluster ("auto", "ray://host:10001", ...); None starts or joins a local
            instance. Ignored when Ray is already initialised in this process.
        start_timeout: seconds for every actor to start (made its envs); past it, an error says
            what the cluster lacks instead of waiting for resources forever.
    """

    def __init__(self, make_env: EnvFactory, *, num_workers: int, envs_per_worker: int = 4,
                 cpus_per_worker: float = 0.5, address: str | None = None,
                 start_timeout: float = 120.0) -> None:
        if num_workers < 1 or envs_per_worker < 1:
            raise ValueError(f"num_workers and envs_per_worker must be >= 1, got {num_workers}, {envs_per_worker}")
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.make_env = make_env
        self.envs_per_worker = envs_per_worker
        self._actor_class = ray.remote(num_cpus=cpus_per_worker, max_concurrency=envs_per_worker)(EnvHost)
        self._lock = threading.Lock()
        self._actors = [self._start_actor() for _ in range(num_workers)]
        self._wait_started(start_timeout, cpus_per_worker)
        self._generation = [0] * num_workers  # bumped each time an actor is replaced
        self._slots = [RemoteEnv(self, slot) for slot in range(num_workers * envs_per_worker)]
        self._threads = ThreadPoolExecutor(max_workers=len(self._slots), thread_name_prefix="pyvision-ray")

    @property
    def num_slots(self) -> int:
        return len(self._slots)

    def envs(self) -> list[RemoteEnv]:
        """One gym-like env per slot."""
        return list(self._slots)

    def actor(self, worker: int):
        """The actor handle of `worker` (for tests and monitoring)."""
        return self._actors[worker]

    def close(self) -> None:
        ray = _ray()
        self._threads.shutdown(wait=True, cancel_futures=True)
        for actor in self._actors:
            try:
                ray.get(actor.close.remote(), timeout=60)
            except Exception:  # a dead actor has nothing left to close
                pass
            ray.kill(actor)

    # ------------------------------------------------------------------ used by RemoteEnv

    def _wait_started(self, timeout: float, cpus: float) -> None:
        ray = _ray()
        try:
            ray.get([actor.pid.remote() for actor in self._actors], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            for actor in self._actors:
                ray.kill(actor)
            free = ray.available_resources().get("CPU", 0.0)
            raise RuntimeError(
                f"{len(self._actors)} env actors of {cpus} CPU each did not start within {timeout:.0f} s "
                f"(the cluster has {free:g} CPUs free): lower cpus_per_worker, use fewer workers, or "
                f"add nodes") from None

    def _start_actor(self):
        return self._actor_class.remote(self.make_env, self.envs_per_worker)

    def _call(self, slot: int, method: str, *args: Any):
        """Send `method(index, *args)` to the slot's actor: (the actor's generation, an ObjectRef)."""
        worker, index = divmod(slot, self.envs_per_worker)
        with self._lock:
            actor, generation = self._actors[worker], self._generation[worker]
        return generation, getattr(actor, method).remote(index, *args)

    def _generation_of(self, slot: int) -> int:
        with self._lock:
            return self._generation[slot // self.envs_per_worker]

    def _replace(self, slot: int, generation: int) -> None:
        """The slot's actor of `generation` died: start a fresh one (once, whichever slot asks first)."""
        worker = slot // self.envs_per_worker
        with self._lock:
            if self._generation[worker] != generation:
                return
            _ray().kill(self._actors[worker])
            self._actors[worker] = self._start_actor()
            self._generation[worker] += 1


class RemoteEnv:
    """One slot of a `RayEnvPool`, with the env's `reset` / `step` (blocking) and `submit_reset` /
    `submit_step` (returning `concurrent.futures.Future`s). `step` raises `EnvLost` when the actor
    holding the episode died, and keeps raising it until the next `reset`, which runs on a fresh
    actor."""

    def __init__(self, pool: RayEnvPool, slot: int) -> None:
        self.pool, self.slot = pool, slot
        self._generation: int | None = None
        self._messages: list[dict[str, Any]] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        ray = _ray()
        for attempt in range(2):  # a dead actor is replaced, and the reset tried once more there
            generation, ref = self.pool._call(self.slot, "reset", seed, options)
            try:
                observation, info = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                self._generation = None
                self.pool._replace(self.slot, generation)
                if attempt:
                    raise EnvLost(f"env slot {self.slot}: its actor died twice at reset ({error})") from None
                continue
            self._generation, self._messages = generation, list(info[keys.MESSAGES])
            return observation, info

    def step(self, action: str):
        ray = _ray()
        if self._generation is None or self._generation != self.pool._generation_of(self.slot):
            raise EnvLost(f"env slot {self.slot}: its actor died during the episode; reset it")
        generation, ref = self.pool._call(self.slot, "step", action)
        try:
            observation, reward, terminated, truncated, info = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            self._generation = None
            self.pool._replace(self.slot, generation)
            raise EnvLost(f"env slot {self.slot}: its actor died ({type(error).__name__})") from None
        start, changed = info[keys.MESSAGES]
        self._messages = self._messages[:start] + list(changed)
        return observation, reward, terminated, truncated, {**info, keys.MESSAGES: list(self._messages)}

    def submit_reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Future:
        return self.pool._threads.submit(lambda: self.reset(seed=seed, options=options))

    def submit_step(self, action: str) -> Future:
        return self.pool._threads.submit(self.step, action)

    def close(self) -> None:
        """The pool owns the actors: `RayEnvPool.close` closes them."""
