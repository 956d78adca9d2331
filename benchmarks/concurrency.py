"""Many episodes open at once on one machine: throughput, memory per live sandbox, latencies.

For each size N, `run_episodes` plays `--rounds` x N episodes of `PyVisionImage-v0` (the
built-in families) with N envs open at once and the scripted `solver` agent (one real code
cell per episode: the family's reference solution, which crops and shows a figure; then the
answer). Reported per N:

- cells/s: code cells executed per wall-clock second, over the whole run (resets included);
- the same figure for the baseline measured in this run, the sequential stepping the runner
  used before (one `env.step` after another within a turn), and the ratio;
- memory per live sandbox, sampled when all N episodes have run their cell and their workers
  are alive: USS (private: Private_Clean + Private_Dirty) and PSS of each worker process, from
  /proc/PID/smaps_rollup; the total PSS of the zygote and the workers, and the host's RSS;
- reset and step (code cell) latency percentiles as the runner saw them (p50 / p90 / p99).

Worker processes are found as the descendants of this process other than its direct children
(the zygote is the direct child; every worker is forked from it), so nothing here depends on
the sandbox's internals.

    python benchmarks/concurrency.py [--sizes 1 4 16 64 256] [--baseline-max 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import gymnasium as gym

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.base import EpisodeContext
from pyvision_agents.runner import run_episodes
from pyvision_agents.scripted import SolverAgent, answer_turn, code_turn
from pyvision_env import info as keys

ENV_ID = "PyVisionImage-v0"


@dataclass
class Latencies:
    """Seconds of every reset and every code-cell step, appended by `_Timed` (any thread)."""

    reset: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)


class _Timed(gym.Wrapper):
    def __init__(self, env: gym.Env, latencies: Latencies) -> None:
        super().__init__(env)
        self.latencies = latencies

    def reset(self, **kwargs):
        started = time.perf_counter()
        result = self.env.reset(**kwargs)
        self.latencies.reset.append(time.perf_counter() - started)  # list.append is atomic
        return result

    def step(self, action):
        started = time.perf_counter()
        result = self.env.step(action)
        if result[4][keys.EXEC]["status"] != "none":
            self.latencies.step.append(time.perf_counter() - started)
        return result


# ------------------------------------------------------------------------- memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(parent, []).append(int(entry))
    return tree


def sandbox_processes() -> tuple[list[int], list[int]]:
    """(direct children of this process: the zygote, and any other helper; their descendants:
    the sandbox workers and whatever they started)."""
    tree = _children()
    direct = tree.get(os.getpid(), [])
    workers, todo = [], [pid for child in direct for pid in tree.get(child, [])]
    while todo:
        pid = todo.pop()
        workers.append(pid)
        todo.extend(tree.get(pid, []))
    return direct, workers


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and USS (Private_Clean + Private_Dirty) of one process in KiB ({} if gone)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    fields[name] = int(rest.split()[0])
    except OSError:
        return {}
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


@dataclass
class MemorySample:
    workers: int
    uss_per_worker_mib: float      # median
    pss_per_worker_mib: float      # median
    max_uss_mib: float
    sandbox_total_pss_mib: float   # zygote + workers
    host_rss_mib: float


def sample_memory() -> MemorySample:
    direct, workers = sandbox_processes()
    per_worker = [m for m in map(memory_kib, workers) if m]
    zygotes = [m for m in map(memory_kib, direct) if m]
    host = memory_kib(os.getpid())
    mib = 1024.0
    return MemorySample(
        workers=len(per_worker),
        uss_per_worker_mib=statistics.median(m["uss"] for m in per_worker) / mib if per_worker else 0.0,
        pss_per_worker_mib=statistics.median(m["pss"] for m in per_worker) / mib if per_worker else 0.0,
        max_uss_mib=max((m["uss"] for m in per_worker), default=0) / mib,
        sandbox_total_pss_mib=sum(m["pss"] for m in per_worker + zygotes) / mib,
        host_rss_mib=host.get("rss", 0) / mib,
    )


TRIVIAL_CELL = "print(image_clue_0.size)"


class _SamplingAgent(SolverAgent):
    """Turn 1: a code cell (the family's reference solution, or `TRIVIAL_CELL`); turn 2: the answer.
    Samples memory the first time all `size` episodes are open and idle after `reset` (`idle`),
    and the first time all have run their cell (`after_cell`): every worker is alive then."""

    def __init__(self, size: int, cell: str) -> None:
        self.size, self.cell = size, cell
        self.idle: MemorySample | None = None
        self.after_cell: MemorySample | None = None

    def act(self, contexts: Sequence[EpisodeContext]) -> list[str]:
        cells = [c.info[keys.NUM_CODE_CELLS] for c in contexts]
        if self.idle is None and cells.count(0) == self.size:
            self.idle = sample_memory()
        if self.after_cell is None and cells.count(1) == self.size:
            self.after_cell = sample_memory()
        if self.cell == "trivial":
            return [code_turn(TRIVIAL_CELL) if c.info[keys.TURN] == 0 else answer_turn("0")
                    for c in contexts]
        return super().act(contexts)


# ------------------------------------------------------------------------- the runs


Runner = Callable[..., object]


def _sequential(make_env, agent, episodes, *, num_envs: int):
    """The baseline: the runner's loop before concurrency, every reset and step one after
    another. Yields the number of code cells of each finished episode."""
    queue = list(reversed(episodes))
    envs = [make_env() for _ in range(min(num_envs, len(episodes)))]
    running: dict[int, EpisodeContext] = {}

    def start(slot: int) -> None:
        if queue:
            _, seed = queue.pop()
            observation, info = envs[slot].reset(seed=seed)
            running[slot] = EpisodeContext(slot, info[keys.MESSAGES], observation, info, info)

    try:
        for slot in range(len(envs)):
            start(slot)
        while running:
            slots = sorted(running)
            for slot, action in zip(slots, agent.act([running[s] for s in slots])):
                observation, _, terminated, truncated, info = envs[slot].step(action)
                context = running[slot]
                context.observation, context.info, context.messages = observation, info, info[keys.MESSAGES]
                if terminated or truncated:
                    del running[slot]
                    yield info[keys.NUM_CODE_CELLS]
                    start(slot)
    finally:
        for env in envs:
            env.close()


@dataclass
class Result:
    size: int
    episodes: int
    seconds: float
    cells: int
    latencies: Latencies
    idle: MemorySample | None
    after_cell: MemorySample | None

    @property
    def cells_per_second(self) -> float:
        return self.cells / self.seconds


def measure(size: int, rounds: int, concurrent: bool, difficulty: str, cell: str) -> Result:
    latencies = Latencies()
    make_env = lambda: _Timed(gym.make(ENV_ID, difficulty=difficulty), latencies)  # noqa: E731
    agent = _SamplingAgent(size, cell)
    episodes = [(i, i) for i in range(size * rounds)]
    started = time.perf_counter()
    if concurrent:
        cells = sum(r.code_cells for r in run_episodes(make_env, agent, episodes, num_envs=size))
    else:
        cells = sum(_sequential(make_env, agent, episodes, num_envs=size))
    seconds = time.perf_counter() - started
    return Result(size, len(episodes), seconds, cells, latencies, agent.idle, agent.after_cell)


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return f"{pick(0.5):.0f}/{pick(0.9):.0f}/{pick(0.99):.0f}"


def mem_available_gib() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def _memory_columns(sample: MemorySample | None) -> str:
    if sample is None:
        return f"{'-':>52}"
    return (f"{sample.workers:7d} {sample.uss_per_worker_mib:8.1f} {sample.pss_per_worker_mib:8.1f} "
            f"{sample.max_uss_mib:7.1f} {sample.sandbox_total_pss_mib / 1024:8.2f} "
            f"{sample.host_rss_mib / 1024:8.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--baseline-max", type=int, default=64,
                        help="measure the sequential baseline for sizes up to this")
    parser.add_argument("--rounds", type=int, default=2, help="episodes per env")
    parser.add_argument("--difficulty", default="easy", choices=("easy", "medium", "hard"))
    parser.add_argument("--cell", default="solver", choices=("solver", "trivial"),
                        help="the code cell: the family's reference solution, or " + repr(TRIVIAL_CELL))
    parser.add_argument("--memory-margin", type=float, default=0.8,
                        help="skip a size whose projected memory exceeds this share of MemAvailable")
    args = parser.parse_args(argv)
    print(f"{ENV_ID} ({args.difficulty}), {args.cell} cell then answer, {args.rounds} episodes per "
          f"env, {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    measure(1, 1, True, args.difficulty, args.cell)  # warm-up: the zygote starts here
    base_rss = memory_kib(os.getpid())["rss"] / 2**20
    per_episode_gib = 0.0
    print(f"{'N':>4} {'cells/s':>8} {'seq c/s':>8} {'ratio':>6} {'reset ms p50/90/99':>19} "
          f"{'step ms p50/90/99':>19} | when    {'workers':>7} {'USS MiB':>8} {'PSS MiB':>8} "
          f"{'maxUSS':>7} {'sbx GiB':>8} {'host GiB':>8}")
    for size in args.sizes:
        need, have = per_episode_gib * size, mem_available_gib()
        if need > args.memory_margin * have:
            print(f"{size:4d} skipped: projected {need:.1f} GiB, {have:.1f} GiB available")
            break
        result = measure(size, args.rounds, True, args.difficulty, args.cell)
        baseline = (measure(size, args.rounds, False, args.difficulty, args.cell)
                    if size <= args.baseline_max else None)
        seq = f"{baseline.cells_per_second:8.1f}" if baseline else f"{'-':>8}"
        ratio = f"{result.cells_per_second / baseline.cells_per_second:6.2f}" if baseline else f"{'-':>6}"
        head = (f"{size:4d} {result.cells_per_second:8.1f} {seq} {ratio} "
                f"{percentiles(result.latencies.reset):>19} {percentiles(result.latencies.step):>19} ")
        print(f"{head}| idle    {_memory_columns(result.idle)}")
        print(f"{'':>{len(head) - 2}}| after   {_memory_columns(result.after_cell)}", flush=True)
        if result.after_cell is not None:
            sample = result.after_cell
            used = sample.sandbox_total_pss_mib / 1024 + max(sample.host_rss_mib / 1024 - base_rss, 0)
            per_episode_gib = max(per_episode_gib, used / size)
    print(f"load average at end {os.getloadavg()[0]:.1f} (the machine is shared: figures vary)")


if __name__ == "__main__":
    main()
