"""The benchmark harness: agents x envs, results to JSONL (resumable), a summary table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import gymnasium as gym
from tqdm import tqdm

import pyvision_env  # noqa: F401  (registers the env ids)
from agents.registry import make_agent
from agents.results import ResultsFile
from agents.runner import run_episodes

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Summary:
    """Aggregate results of one agent on one env."""

    env_id: str
    agent: str
    episodes: int
    accuracy: float
    mean_turns: float
    mean_code_cells: float
    zero_tool_share: float
    mean_visual_tokens: float
    steps_per_second: float
    end_reasons: dict[str, int]


def summarize(records: Sequence[dict[str, Any]], env_id: str, agent: str) -> Summary:
    """Summarize the records of one (env, agent) pair."""
    rows = [r for r in records if r["env_id"] == env_id and r["agent"] == agent]
    n = len(rows)

    def mean(field: str) -> float:
        return sum(float(r[field]) for r in rows) / n if n else 0.0

    reasons: dict[str, int] = {}
    for row in rows:
        reasons[row["end_reason"]] = reasons.get(row["end_reason"], 0) + 1
    wall = sum(r["wall_time"] for r in rows)
    return Summary(
        env_id=env_id,
        agent=agent,
        episodes=n,
        accuracy=mean("correct"),
        mean_turns=mean("turns"),
        mean_code_cells=mean("code_cells"),
        zero_tool_share=sum(r["code_cells"] == 0 for r in rows) / n if n else 0.0,
        mean_visual_tokens=mean("visual_tokens"),
        steps_per_second=sum(r["turns"] for r in rows) / wall if wall > 0 else 0.0,
        end_reasons=dict(sorted(reasons.items())),
    )


def format_table(summaries: Iterable[Summary]) -> str:
    """A plain-text table of summaries, one row per (env, agent)."""
    headers = ("env", "agent", "episodes", "accuracy", "turns", "code cells", "zero-tool",
               "visual tokens", "steps/s")
    rows = [
        (s.env_id, s.agent, str(s.episodes), f"{s.accuracy:.1%}", f"{s.mean_turns:.2f}",
         f"{s.mean_code_cells:.2f}", f"{s.zero_tool_share:.0%}", f"{s.mean_visual_tokens:,.0f}",
         f"{s.steps_per_second:.1f}")
        for s in summaries
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *map(line, rows)])


def bench(
    env_ids: Sequence[str],
    agent_names: Sequence[str],
    episodes: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_envs: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[Summary]:
    """Run every agent on every env for `episodes` episodes (seeds `seed`, `seed+1`, ...).

    Records go to `out_dir/episodes.jsonl` as each episode finishes; a rerun with the same
    arguments skips the episodes already there. Returns one `Summary` per (env, agent) and
    writes them to `out_dir/summary.json`.
    """
    results = ResultsFile(out_dir)
    done = results.done()
    for env_id in env_ids:
        gym.spec(env_id)  # fail fast, with Gymnasium's closest-name suggestion
    for agent_name in agent_names:
        agent = make_agent(agent_name)
        for env_id in env_ids:
            todo = [(i, seed + i) for i in range(episodes) if (env_id, agent.name, i) not in done]
            _run_pair(env_id, agent, todo, results, num_envs, env_kwargs or {}, progress)
    summaries = [summarize(results.records, e, a) for a in agent_names for e in env_ids]
    Path(out_dir, SUMMARY_FILE).write_text(
        json.dumps([asdict(s) for s in summaries], indent=2) + "\n", encoding="utf-8"
    )
    return summaries


def _run_pair(env_id, agent, todo, results, num_envs, env_kwargs, progress) -> None:
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"{agent.name} on {env_id}", disable=not progress,
               unit="ep", dynamic_ncols=True)
    correct = 0
    make_env = lambda: gym.make(env_id, **env_kwargs)  # noqa: E731
    with bar:
        for finished, record in enumerate(
            run_episodes(make_env, agent, todo, env_id=env_id, num_envs=num_envs), start=1
        ):
            results.append(record)
            correct += record.correct
            bar.set_postfix(acc=f"{correct / finished:.1%}", refresh=False)
            bar.update()
