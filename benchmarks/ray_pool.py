"""Episodes per second through the Ray env pool with 1, 2 and 4 actors, against local envs.

Each row plays the same `--episodes` episodes of `PyVisionImage-v0` (easy) with the scripted
`solver` agent (one real code cell, then the answer) on `--envs` envs in all, through
`run_episodes`: first in this process (the baseline, measured in this run), then in a
`RayEnvPool` of 1, 2 and 4 actors sharing those envs. A local Ray instance is started with
`--ray-cpus` logical CPUs (actors reserve 0.5 each); pool start-up (actors importing and making
their envs) is timed apart and not counted in episodes/s.

    python benchmarks/ray_pool.py [--episodes 32] [--envs 8] [--actors 1 2 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from typing import Sequence

import gymnasium as gym

import pyvision_env  # noqa: F401
from pyvision_agents.runner import run_episodes
from pyvision_agents.scripted import SolverAgent

ENV_ID = "PyVisionImage-v0"


def play(envs, episodes: int, num_envs: int) -> float:
    """Episodes per second; every episode must end DONE (else the figure would be meaningless)."""
    started = time.perf_counter()
    records = list(run_episodes(envs, SolverAgent(), [(i, i) for i in range(episodes)], num_envs=num_envs))
    seconds = time.perf_counter() - started
    failed = [r.end_reason for r in records if r.end_reason != "DONE"]
    if failed or len(records) != episodes:
        raise RuntimeError(f"{len(failed)} episodes did not end DONE: {failed[:5]}")
    return episodes / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--envs", type=int, default=8, help="envs in all, split across the actors")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2, help="runs per row (median reported)")
    parser.add_argument("--ray-cpus", type=int, default=4, help="logical CPUs of the local Ray instance")
    args = parser.parse_args(argv)

    import ray

    from pyvision_agents.ray_pool import RayEnvPool

    make_env = functools.partial(gym.make, ENV_ID, difficulty="easy")
    print(f"{ENV_ID} (easy), solver agent, {args.episodes} episodes on {args.envs} envs, "
          f"{os.cpu_count()} CPUs (shared machine), load average {os.getloadavg()[0]:.1f}")
    play(make_env, 2, 2)  # warm-up: the local zygote starts here
    local = [play(make_env, args.episodes, args.envs) for _ in range(args.repeats)]
    baseline = statistics.median(local)
    print(f"{'where':<18} {'start s':>8} {'episodes/s':>11} {'vs local':>9}")
    print(f"{'local (no Ray)':<18} {'-':>8} {baseline:11.2f} {1.0:9.2f}")
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        for actors in args.actors:
            started = time.perf_counter()
            pool = RayEnvPool(make_env, num_workers=actors, envs_per_worker=-(-args.envs // actors))
            start = time.perf_counter() - started
            try:
                play(pool, actors * 2, 0)  # warm-up: each actor's zygote starts here
                rates = [play(pool, args.episodes, 0) for _ in range(args.repeats)]
            finally:
                pool.close()
            rate = statistics.median(rates)
            print(f"{f'Ray, {actors} actor(s)':<18} {start:8.1f} {rate:11.2f} {rate / baseline:9.2f}", flush=True)
    finally:
        ray.shutdown()
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
