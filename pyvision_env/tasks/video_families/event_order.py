"""`event_order`: which coloured square flashes first? Ordering short events in time.

Two or three squares of different colours each flash once, for `event_frames` frames, at
random times at least two flash lengths apart. With two events the question asks which
comes first (choices: the colours); with three, it asks for the order (choices: four of
the six orders). A scan with a stride of `event_frames` sees every flash.

Knobs:
    width, height, fps, duration_s: the clip (see `ClipKnobs`).
    event_frames: how long each flash lasts, in frames.
    n_events: 2 or 3 flashing colours.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyvision_env.answers import choice_letter, option_lines
from pyvision_env.tasks.families.base import NAMED_COLOURS
from pyvision_env.tasks.task import Task
from pyvision_env.tasks.video_families._clip import (
    ClipDraft,
    ClipKnobs,
    VideoTaskFamily,
    fill_rect,
    format_seconds,
    random_box,
    spaced_starts,
    video_solver_cell,
)

COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")


@dataclass(frozen=True)
class EventOrderKnobs(ClipKnobs):
    event_frames: int = 3
    n_events: int = 3


class EventOrder(VideoTaskFamily):
    """Squares of two or three colours flash once each; the question asks about their order."""

    name = "event_order"
    description = "Tell which of several brief coloured flashes comes first, or their order (choice)."
    Knobs = EventOrderKnobs
    presets = {
        "easy": EventOrderKnobs(fps=10.0, duration_s=20.0, event_frames=3, n_events=2),
        "medium": EventOrderKnobs(fps=15.0, duration_s=60.0, event_frames=3, n_events=3),
        "hard": EventOrderKnobs(fps=20.0, duration_s=150.0, event_frames=2, n_events=3),
    }

    def __init__(self, difficulty: str = "medium", cache_dir: str | Path | None = None, **knobs: Any) -> None:
        super().__init__(difficulty, cache_dir, **knobs)
        if self.knobs.n_events not in (2, 3):
            raise ValueError(f"n_events must be 2 or 3, got {self.knobs.n_events}")

    def draw(self, crng: np.random.Generator) -> ClipDraft:
        k = self.knobs
        n, length = k.num_frames, k.event_frames
        names = [COLOURS[i] for i in crng.choice(len(COLOURS), size=k.n_events, replace=False)]
        starts = spaced_starts(crng, n, k.n_events, length, gap=2 * length)  # in order: names[0] first
        side = min(k.width, k.height) // 4
        boxes = [random_box(crng, k.width, k.height, side, side) for _ in names]

        def paint(frame: np.ndarray, i: int) -> None:
            for start, name, box in zip(starts, names, boxes):
                if start <= i < start + length:
                    fill_rect(frame, box, NAMED_COLOURS[name])

        choices, answer = self._choices(crng, names)
        mentioned = sorted(names)
        listed = ", ".join(mentioned[:-1]) + f" and {mentioned[-1]}"
        ask = "Which one flashes first?" if k.n_events == 2 else "In what order do they flash?"
        question = (
            f"In this {format_seconds(k.duration_s)}-second video, squares coloured {listed} each flash once, "
            f"briefly. {ask}\n{option_lines(choices)}\nAnswer with the option's letter."
        )
        solver = {
            "colours": {name: list(NAMED_COLOURS[name]) for name in mentioned},
            "tol": 60,
            "min_pixels": 50,
            "stride": length,
        }
        return ClipDraft(question=question, answer=answer, answer_type="choice", solver=solver, choices=choices,
                         paint=paint)

    @staticmethod
    def _choices(crng: np.random.Generator, order: list[str]) -> tuple[list[str], str]:
        """Choice texts in letter order, and the letter of the right one."""
        if len(order) == 2:
            choices = sorted(order)
            return choices, choice_letter(choices.index(order[0]))
        orders = [", then ".join(p) for p in itertools.permutations(order)]
        right = orders[0]
        wrong = [orders[i] for i in crng.choice(np.arange(1, len(orders)), size=3, replace=False)]
        choices = [right, *wrong]
        crng.shuffle(choices)
        return choices, choice_letter(choices.index(right))

    def solution_code(self, task: Task) -> str:
        letters = {text: choice_letter(i) for i, text in enumerate(task.choices)}
        return video_solver_cell(task.extra["solver"], f"letters = {letters!r}", SOLVE)


SOLVE = """
indices = list(range(0, n, solver['stride']))
seen = scan(indices, solver['colours'], solver['tol'], solver['min_pixels'])
first = {name: indices[int(np.argmax(hit))] for name, hit in seen.items() if hit.any()}
order = sorted(first, key=first.get)
vr.show([first[name] for name in order])
print(f"checked {len(indices)} of {n} frames; first seen at {first}")
wanted = order[0] if len(order) == 2 else ', then '.join(order)
print(f"ANSWER: {letters[wanted]}")
"""
