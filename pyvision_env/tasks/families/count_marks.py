"""`count_marks`: count the tiny marks of one colour and shape scattered over a large scene.

Tests: exhaustive search of a large image for small targets and telling them apart from
distractors that share the colour or the shape (and, at hard, have a similar colour).
Marks never touch, so counting connected regions of the target colour by shape is exact.

Knobs:
    width, height: image size in pixels.
    mark_size: (min, max) mark size in pixels.
    count_range: (min, max) number of target marks.
    n_distractors: marks that differ from the target in colour or shape.
    similar_colours: whether some distractors have the target shape in a colour close to the target's.
    n_clutter: background shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from pyvision_env.tasks.families.base import (
    COLOUR_MASK,
    COMPONENTS,
    NAMED_COLOURS,
    SHOW_CROP,
    Draft,
    TaskFamily,
    background,
    draw_clutter,
    solver_cell,
)
from pyvision_env.tasks.task import Task

SHAPES: tuple[str, ...] = ("square", "circle", "triangle")


@dataclass(frozen=True)
class CountMarksKnobs:
    width: int = 2400
    height: int = 1800
    mark_size: tuple[int, int] = (9, 12)
    count_range: tuple[int, int] = (5, 15)
    n_distractors: int = 150
    similar_colours: bool = False
    n_clutter: int = 300


class CountMarks(TaskFamily):
    """Count the marks of a named colour and shape."""

    name = "count_marks"
    description = "count tiny marks of one colour and shape among many look-alike distractors"
    Knobs = CountMarksKnobs
    presets = {
        "easy": CountMarksKnobs(width=2000, height=1500, mark_size=(10, 14), count_range=(3, 9), n_distractors=60, n_clutter=150),
        "medium": CountMarksKnobs(),
        "hard": CountMarksKnobs(width=3000, height=2250, mark_size=(7, 9), count_range=(8, 25), n_distractors=300,
                                similar_colours=True, n_clutter=500),
    }

    def draw(self, rng: np.random.Generator) -> Draft:
        k = self.knobs
        names = list(NAMED_COLOURS)
        target_name = names[int(rng.integers(len(names)))]
        target = (NAMED_COLOURS[target_name], SHAPES[int(rng.integers(len(SHAPES)))])
        count = int(rng.integers(k.count_range[0], k.count_range[1] + 1))
        marks = [target] * count + [self._distractor(rng, target) for _ in range(k.n_distractors)]

        image = background(rng, k.width, k.height)
        draw = ImageDraw.Draw(image)
        draw_clutter(draw, rng, k.width, k.height, k.n_clutter)
        cell = 2 * k.mark_size[1] + 4
        cols, rows = k.width // cell, k.height // cell
        slots = rng.choice(cols * rows, size=len(marks), replace=False)
        for slot, (colour, shape) in zip(slots, marks):
            size = int(rng.integers(k.mark_size[0], k.mark_size[1] + 1))
            x = int(slot % cols) * cell + int(rng.integers(1, cell - size))
            y = int(slot // cols) * cell + int(rng.integers(1, cell - size))
            draw_mark(draw, x, y, size, shape, colour)

        lo, hi = k.count_range
        question = (
            f"How many {target_name} {target[1]}s are there in the image? Other marks differ in colour or "
            f"shape and do not count. Answer with an integer from {lo} to {hi}."
        )
        solver = {"rgb": target[0], "shape": target[1], "tolerance": 24}
        return Draft(question=question, answer=str(count), answer_type="number", solver=solver, images=(image,))

    def _distractor(self, rng: np.random.Generator, target: tuple) -> tuple:
        """A mark that shares at most one of the target's colour and shape."""
        colour, shape = target
        kind = int(rng.integers(3))
        if kind == 0:
            return colour, [s for s in SHAPES if s != shape][int(rng.integers(len(SHAPES) - 1))]
        if kind == 1 and self.knobs.similar_colours:
            return similar_colour(rng, colour), shape
        others = [c for c in NAMED_COLOURS.values() if c != colour]
        return others[int(rng.integers(len(others)))], SHAPES[int(rng.integers(len(SHAPES)))]

    def solution_code(self, task: Task) -> str:
        return solver_cell(task.extra["solver"], COLOUR_MASK, COMPONENTS, SHOW_CROP, """
            def shape_of(x0, y0, x1, y1, area):
                fill = area / ((x1 - x0) * (y1 - y0))
                return 'square' if fill > 0.9 else 'circle' if fill > 0.66 else 'triangle'

            found = [b for b in components(colour_mask(solver['rgb'], solver['tolerance'])) if min(b[2] - b[0], b[3] - b[1]) >= 4]
            shapes = [shape_of(*b) for b in found]
            print('marks of that colour by shape:', {s: shapes.count(s) for s in sorted(set(shapes))})
            hits = [b for b, s in zip(found, shapes) if s == solver['shape']]
            for x0, y0, *_ in hits[:2]:
                show_crop(x0 - 40, y0 - 40, x0 + 60, y0 + 60, scale=5)
            print(f"ANSWER: {len(hits)}")
        """)


def draw_mark(draw: ImageDraw.ImageDraw, x: int, y: int, size: int, shape: str, colour: tuple) -> None:
    """A filled square, circle or upward triangle whose bounding box is `size` pixels square."""
    box = [x, y, x + size - 1, y + size - 1]
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(x, y + size - 1), (x + (size - 1) / 2, y), (x + size - 1, y + size - 1)], fill=colour)


def similar_colour(rng: np.random.Generator, colour: tuple) -> tuple[int, int, int]:
    """A colour close to `colour` (a shade a careful look still tells apart): 55-80 off in one channel."""
    rgb = np.array(colour)
    channel = int(rng.integers(3))
    step = int(rng.integers(55, 81))
    rgb[channel] = rgb[channel] + step if rgb[channel] + step <= 255 else rgb[channel] - step
    return tuple(int(v) for v in rgb)
