"""Benchmark plots as PNG: accuracy against visual tokens, and code cells per episode.

An agent has the same colour in every plot (`agent_colors`); envs differ by marker or hatch;
legends sit to the right of the axes, off the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pyvision_agents.summary import UNSCORED, Summary

ACCURACY_PLOT = "accuracy_vs_visual_tokens.png"
CODE_CELLS_PLOT = "code_cells_per_episode.png"


MARKERS = "osD^v<>ph*"
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")


def agent_colors(agents: Sequence[str]) -> dict[str, str]:
    """A colour per agent, from matplotlib's default cycle in sorted name order, so an agent keeps
    its colour across plots and across runs with the same agents."""
    return {agent: f"C{i % 10}" for i, agent in enumerate(sorted(set(agents)))}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return figure, figure.add_subplot()


def _legend_outside(axes) -> None:
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def plot_accuracy_vs_visual_tokens(summaries: Sequence[Summary], path: str | Path) -> Path:
    """One marker per (agent, env) at (mean visual tokens, accuracy), with its 95% interval."""
    figure, axes = _figure(8.0, 4.2)
    colors = agent_colors([s.agent for s in summaries])
    envs = list(dict.fromkeys(s.env_id for s in summaries))
    for summary in sorted(summaries, key=lambda s: (s.agent, envs.index(s.env_id))):
        marker = MARKERS[envs.index(summary.env_id) % len(MARKERS)]
        errors = [[max(summary.accuracy - summary.accuracy_low, 0.0)],
                  [max(summary.accuracy_high - summary.accuracy, 0.0)]]
        axes.errorbar(summary.mean_visual_tokens, summary.accuracy, yerr=errors,
                      fmt=marker, color=colors[summary.agent], capsize=3,
                      label=f"{summary.agent} · {summary.env_id}")
    axes.set_xlabel("mean visual tokens per episode")
    axes.set_ylabel("accuracy (95% CI)")
    axes.set_ylim(-0.05, 1.05)
    axes.set_title("Accuracy against visual tokens")
    axes.grid(alpha=0.3)
    if summaries:
        _legend_outside(axes)
    figure.savefig(path)
    return Path(path)


def plot_code_cells(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The distribution of code cells per (scored) episode, one bar per agent × env at each count."""
    figure, axes = _figure(8.0, 4.2)
    scored = [r for r in records if r["end_reason"] not in UNSCORED]
    colors = agent_colors([r["agent"] for r in records])
    envs = list(dict.fromkeys(r["env_id"] for r in records))
    groups = sorted(set((r["agent"], r["env_id"]) for r in scored), key=lambda g: (g[0], envs.index(g[1])))
    top = max((r["code_cells"] for r in scored), default=0)
    width = 0.8 / max(len(groups), 1)
    for i, (agent, env_id) in enumerate(groups):
        cells = [r["code_cells"] for r in scored if r["agent"] == agent and r["env_id"] == env_id]
        shares = [cells.count(k) / len(cells) for k in range(top + 1)]
        axes.bar([k - 0.4 + width * (i + 0.5) for k in range(top + 1)], shares, width=width,
                 label=f"{agent} · {env_id}", color=colors[agent],
                 hatch=HATCHES[envs.index(env_id) % len(HATCHES)], edgecolor="white")
    axes.set_xticks(range(top + 1))
    axes.set_xlabel("code cells in the episode")
    axes.set_ylabel("share of episodes")
    axes.set_title("Code cells per episode")
    axes.grid(axis="y", alpha=0.3)
    if groups:
        _legend_outside(axes)
    figure.savefig(path)
    return Path(path)
