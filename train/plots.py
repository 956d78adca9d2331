"""Training curves as PNG from a run's `metrics.jsonl`: one panel per collapse metric."""

from __future__ import annotations

import json
from pathlib import Path

from pyvision_train.run import METRICS_FILE

# The panels of `plot_run`: (title, metric keys drawn in it).
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("pyvision/reward/total", "pyvision/reward/accuracy", "pyvision/reward/tool")),
    ("code cells per trajectory", ("pyvision/code_cells/mean", "pyvision/code_cells/max")),
    ("zero-tool share", ("pyvision/code_cells/zero_share",)),
    ("turns", ("pyvision/turns/mean",)),
    ("visual tokens", ("pyvision/visual_tokens/mean",)),
    ("end reasons", ("pyvision/end_reason/DONE", "pyvision/end_reason/EXCEED_MAX_TURNS",
                     "pyvision/end_reason/ERROR_IN_ACTION", "pyvision/end_reason/OVER_LENGTH")),
    ("filter pass rates", ("pyvision/filter/trajectory_pass_rate", "pyvision/filter/group_pass_rate")),
    ("time per step (s)", ("pyvision/time/generation_s", "pyvision/time/env_s")),
    ("loss", ("loss",)),
)
CURVES_PLOT = "curves.png"


def read_metrics(run: str | Path) -> list[dict]:
    """The training log records of a run (those with a step and a loss or pyvision metrics)."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the output_dir of a pyvision-train run")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if any(key.startswith("pyvision/") for key in r)]


def plot_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Write `curves.png` (into the run folder unless `out` is given); return its path."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    records = read_metrics(run)
    if not records:
        raise ValueError(f"{Path(run) / METRICS_FILE} holds no training metrics yet")
    columns = 3
    rows = -(-len(PANELS) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), dpi=100, layout="constrained")
    for index, (title, names) in enumerate(PANELS):
        axes = figure.add_subplot(rows, columns, index + 1)
        for name in names:
            points = [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float))]
            if points:
                steps, values = zip(*points)
                axes.plot(steps, values, marker=".", label=name.removeprefix("pyvision/"))
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=6)
    path = Path(out) if out is not None else Path(run) / CURVES_PLOT
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
