"""`chart_value`: read the exact value of one bar in a large, dense grouped bar chart.

Tests: reading a chart the way HR-Bench-style questions need: tick labels too small to read
at the model's input resolution, many thin bars, and an integer value that sits between
gridlines, so it has to be measured (bar top against gridline pixel positions), not guessed.

Knobs:
    width, height: image size in pixels (rendered by matplotlib at 100 dpi).
    n_categories: bar groups along the x axis.
    n_series: bars per group, told apart by colour and named in a legend.
    y_max: the largest tick value; bar values are integers from 1 to y_max - 1.
    y_step: spacing of the labelled major gridlines (light minor gridlines split each step in five).
    tick_fontsize: font size in points of the tick labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pyvision_env.tasks.families.base import (
    CODE_ALPHABET,
    COLOUR_MASK,
    SHOW_CROP,
    Draft,
    TaskFamily,
    random_code,
    solver_cell,
)
from pyvision_env.tasks.task import Task

SERIES = (("north", (31, 119, 180)), ("south", (255, 127, 14)), ("east", (44, 160, 44)), ("west", (214, 39, 40)))
GRID_RGB = (150, 150, 150)
MINOR_GRID_RGB = (225, 225, 225)
# Category labels: three letters of the code alphabet (letters that stay distinct when tiny).
LABEL_LETTERS = "".join(c for c in CODE_ALPHABET if c.isalpha())


@dataclass(frozen=True)
class ChartValueKnobs:
    width: int = 2400
    height: int = 1800
    n_categories: int = 30
    n_series: int = 2
    y_max: int = 100
    y_step: int = 10
    tick_fontsize: float = 6.0


class ChartValue(TaskFamily):
    """The value of one named bar in a grouped bar chart."""

    name = "chart_value"
    description = "read the exact value of one thin bar in a large, dense bar chart with tiny labels"
    Knobs = ChartValueKnobs
    presets = {
        "easy": ChartValueKnobs(width=2000, height=1500, n_categories=16, n_series=1, y_max=50, tick_fontsize=7.0),
        "medium": ChartValueKnobs(),
        "hard": ChartValueKnobs(width=3200, height=2400, n_categories=40, n_series=3, y_max=200, y_step=20,
                                tick_fontsize=5.0),
    }

    def draw(self, rng: np.random.Generator) -> Draft:
        k = self.knobs
        if not 1 <= k.n_series <= len(SERIES) or k.y_max % k.y_step:
            raise ValueError(f"n_series must be 1..{len(SERIES)} and y_max a multiple of y_step, got {k}")
        labels: list[str] = []
        while len(labels) < k.n_categories:
            label = random_code(rng, 3, LABEL_LETTERS)
            if label not in labels:
                labels.append(label)
        values = rng.integers(1, k.y_max, size=(k.n_series, k.n_categories))
        image = render_chart(k, labels, values)

        series, category = int(rng.integers(k.n_series)), int(rng.integers(k.n_categories))
        name, rgb = SERIES[series]
        question = (
            f"In the bar chart, what is the value of the '{name}' bar for category {labels[category]}? "
            f"Values are whole numbers. Answer with an integer from 0 to {k.y_max}."
        )
        solver = {
            "series_rgb": rgb,
            "grid_rgb": GRID_RGB,
            "y_max": k.y_max,
            "y_step": k.y_step,
            "labels": labels,
            "category": labels[category],
        }
        return Draft(question=question, answer=str(int(values[series, category])), answer_type="number",
                     solver=solver, images=(image,))

    def solution_code(self, task: Task) -> str:
        return solver_cell(task.extra["solver"], COLOUR_MASK, SHOW_CROP, """
            # Major gridlines: long rows of the grid colour; the top one is y_max, the next y_max - y_step.
            grid = colour_mask(solver['grid_rgb'], 30).sum(axis=1)
            rows = np.nonzero(grid >= grid.max() / 2)[0]
            lines = [g.mean() for g in np.split(rows, np.nonzero(np.diff(rows) > 1)[0] + 1)]
            steps = np.round((np.array(lines) - lines[0]) / (lines[1] - lines[0]))
            slope, zero = np.polyfit(solver['y_max'] - steps * solver['y_step'], lines, 1)
            px_per_unit = -slope
            print('gridlines at rows', [round(v, 1) for v in lines[:4]], 'pixels per unit', round(px_per_unit, 2))

            # Bars of the series: runs of its colour along the row just above the x axis.
            bars = colour_mask(solver['series_rgb'], 40)
            base = bars[int(round(zero)) - 3]
            edges = np.diff(np.concatenate([[0], base.astype(np.int8), [0]]))
            starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
            i = solver['labels'].index(solver['category'])
            x = (starts[i] + ends[i]) // 2
            column = bars[:int(round(zero)) - 3, x]
            top = np.nonzero(~column)[0].max() + 1
            value = (zero - top) / px_per_unit
            print('bar', solver['category'], 'x =', x, 'top row', top, 'value', round(value, 3))
            show_crop(starts[i] - 80, top - 60, ends[i] + 80, top + 60, scale=4)
            print(f"ANSWER: {int(round(value))}")
        """)


def render_chart(k: ChartValueKnobs, labels: list[str], values: np.ndarray) -> Image.Image:
    """Draw the grouped bar chart with matplotlib's Agg canvas (no pyplot state) into an RGB image.

    Gridlines are line collections and category labels plain texts: matplotlib `Tick` objects
    cost about a millisecond each, which would dominate the generation time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(k.width / 100, k.height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.05, 0.08, 0.93, 0.86))
    x = np.arange(k.n_categories)
    width = 0.8 / k.n_series
    for s in range(k.n_series):
        name, rgb = SERIES[s]
        ax.bar(x - 0.4 + (s + 0.5) * width, values[s], width, color=np.array(rgb) / 255, label=name, zorder=2)
    left, right = -0.6, k.n_categories - 0.4
    ax.set_xlim(left, right)
    ax.set_ylim(0, k.y_max + k.y_step / 2)
    minor = np.setdiff1d(np.arange(0, k.y_max + 1, k.y_step / 5), np.arange(0, k.y_max + 1, k.y_step))
    ax.hlines(minor, left, right, colors=[np.array(MINOR_GRID_RGB) / 255], linewidth=0.8, zorder=0)
    ax.hlines(np.arange(k.y_step, k.y_max + 1, k.y_step), left, right, colors=[np.array(GRID_RGB) / 255],
              linewidth=1.0, zorder=1)
    ax.set_yticks(np.arange(0, k.y_max + 1, k.y_step))
    ax.tick_params(axis="y", labelsize=k.tick_fontsize)
    ax.set_xticks([])
    for i, label in enumerate(labels):
        ax.text(i, -0.004, label, transform=ax.get_xaxis_transform(), rotation=90, ha="center", va="top",
                fontsize=k.tick_fontsize)
    ax.legend(fontsize=k.tick_fontsize + 1, loc="lower right", bbox_to_anchor=(1, 1), ncols=k.n_series)
    fig.text(0.05, 0.955, "Units shipped by category and region", fontsize=k.tick_fontsize + 3)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
