"""Aggregating episode records: per (env, agent) summaries with confidence intervals, and the leaderboard."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pyvision_agents.runner import AGENT_ERROR, ENV_ERROR
from pyvision_env.info import EndReason

# End reasons that are not the policy's doing: such episodes are counted but not scored.
UNSCORED = frozenset({ENV_ERROR, AGENT_ERROR, EndReason.SANDBOX_FAILURE.value,
                      EndReason.JUDGE_FAILURE.value})


@dataclass(frozen=True)
class Summary:
    """Aggregate results of one agent on one env.

    Accuracy and the means are over the scored episodes (those not ended by an infrastructure
    failure: ENV_ERROR, AGENT_ERROR, SANDBOX_FAILURE, JUDGE_FAILURE); `errors` counts the others,
    and `top_error` is the most common first line of their error messages (None without errors).
    `accuracy_low`/`accuracy_high` bound a 95% Wilson score interval.
    """

    env_id: str
    agent: str
    episodes: int
    scored: int
    errors: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    mean_turns: float
    mean_code_cells: float
    zero_tool_share: float
    mean_visual_tokens: float
    mean_wall_time: float
    end_reasons: dict[str, int]
    top_error: str | None = None

    @property
    def failed(self) -> bool:
        """True when every episode of the group ended in an infrastructure error."""
        return self.errors > 0 and self.scored == 0


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 1) when n = 0.

    >>> tuple(round(x, 3) for x in wilson_interval(8, 10))
    (0.49, 0.943)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def summarize(records: Sequence[dict[str, Any]], env_id: str, agent: str) -> Summary:
    """Summarize the records of one (env, agent) pair."""
    rows = [r for r in records if r["env_id"] == env_id and r["agent"] == agent]
    scored = [r for r in rows if r["end_reason"] not in UNSCORED]
    n = len(scored)

    def mean(field: str, among: Sequence[dict[str, Any]] = scored) -> float:
        return sum(float(r[field]) for r in among) / len(among) if among else 0.0

    reasons = Counter(row["end_reason"] for row in rows)
    errors = Counter(_first_line(r.get("error")) or r["end_reason"] for r in rows if r["end_reason"] in UNSCORED)
    correct = sum(bool(r["correct"]) for r in scored)
    low, high = wilson_interval(correct, n)
    return Summary(
        env_id=env_id,
        agent=agent,
        episodes=len(rows),
        scored=n,
        errors=len(rows) - n,
        accuracy=correct / n if n else 0.0,
        accuracy_low=low,
        accuracy_high=high,
        mean_turns=mean("turns"),
        mean_code_cells=mean("code_cells"),
        zero_tool_share=sum(r["code_cells"] == 0 for r in scored) / n if n else 0.0,
        mean_visual_tokens=mean("visual_tokens"),
        mean_wall_time=mean("wall_time", rows),
        end_reasons=dict(sorted(reasons.items())),
        top_error=errors.most_common(1)[0][0] if errors else None,
    )


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def leaderboard(summaries: Iterable[Summary]) -> list[Summary]:
    """Summaries grouped by env (in first-seen order), best accuracy first within each env."""
    summaries = list(summaries)
    envs = list(dict.fromkeys(s.env_id for s in summaries))
    return sorted(summaries, key=lambda s: (envs.index(s.env_id), -s.accuracy, s.agent))


def format_table(summaries: Iterable[Summary]) -> str:
    """A plain-text leaderboard, one row per (env, agent)."""
    headers = ("env", "agent", "episodes", "accuracy (95% CI)", "turns", "code cells",
               "zero-tool", "visual tokens", "s/episode", "errors")
    rows = [
        (s.env_id, s.agent, str(s.episodes),
         f"{s.accuracy:.1%} [{s.accuracy_low:.0%}, {s.accuracy_high:.0%}]",
         f"{s.mean_turns:.2f}", f"{s.mean_code_cells:.2f}", f"{s.zero_tool_share:.0%}",
         f"{s.mean_visual_tokens:,.0f}", f"{s.mean_wall_time:.2f}", str(s.errors))
        for s in leaderboard(summaries)
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
