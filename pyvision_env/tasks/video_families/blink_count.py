"""`blink_count`: how many times does the lamp blink green? Counting short events.

A lamp (a disc) lights green for `blink_frames` frames at a time, a random number of times,
with at least two blink lengths between blinks; a second lamp blinks orange as a
distractor. Sparse uniform sampling misses most blinks; a scan with a stride of
`blink_frames` sees every blink and, thanks to the gaps, counts each one once.

Knobs:
    width, height, fps, duration_s: the clip (see `ClipKnobs`).
    blink_frames: how long each blink lasts, in frames.
    min_count, max_count: range of the number of green blinks.
    n_distractors: orange blinks of the second lamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyvision_env.tasks.families.base import NAMED_COLOURS
from pyvision_env.tasks.task import Task
from pyvision_env.tasks.video_families._clip import (
    ClipDraft,
    ClipKnobs,
    VideoTaskFamily,
    fill_disc,
    format_seconds,
    spaced_starts,
    video_solver_cell,
)

LAMP_OFF = (60, 60, 60)
RADIUS = 16


@dataclass(frozen=True)
class BlinkCountKnobs(ClipKnobs):
    blink_frames: int = 3
    min_count: int = 3
    max_count: int = 12
    n_distractors: int = 4


class BlinkCount(VideoTaskFamily):
    """A lamp blinks green a few times; the question asks how many."""

    name = "blink_count"
    description = "Count the brief green blinks of a lamp (integer, exact)."
    Knobs = BlinkCountKnobs
    presets = {
        "easy": BlinkCountKnobs(fps=10.0, duration_s=20.0, blink_frames=3, min_count=2, max_count=6, n_distractors=0),
        "medium": BlinkCountKnobs(fps=15.0, duration_s=60.0, blink_frames=3, min_count=3, max_count=12),
        "hard": BlinkCountKnobs(fps=20.0, duration_s=150.0, blink_frames=2, min_count=5, max_count=25, n_distractors=12),
    }

    def draw(self, crng: np.random.Generator) -> ClipDraft:
        k = self.knobs
        n, length = k.num_frames, k.blink_frames
        count = int(crng.integers(k.min_count, k.max_count + 1))
        green = spaced_starts(crng, n, count, length, gap=2 * length)
        orange = spaced_starts(crng, n, k.n_distractors, length, gap=2 * length) if k.n_distractors else []
        lamps = [(k.width * 0.3, k.height * 0.5), (k.width * 0.7, k.height * 0.5)]
        crng.shuffle(lamps)

        def paint(frame: np.ndarray, i: int) -> None:
            for (cx, cy), starts, colour in zip(lamps, (green, orange), ("green", "orange")):
                lit = any(s <= i < s + length for s in starts)
                fill_disc(frame, cx, cy, RADIUS, NAMED_COLOURS[colour] if lit else LAMP_OFF)

        question = (
            f"In this {format_seconds(k.duration_s)}-second video a lamp briefly lights up green now and then "
            "(another lamp may blink orange). How many times does the lamp blink green? "
            f"Answer with an integer from {k.min_count} to {k.max_count}."
        )
        solver = {"colour": list(NAMED_COLOURS["green"]), "tol": 60, "min_pixels": 12, "stride": length}
        return ClipDraft(question=question, answer=str(count), answer_type="number", solver=solver,
                         grading="exact", paint=paint)

    def solution_code(self, task: Task) -> str:
        return video_solver_cell(task.extra["solver"], SOLVE)


SOLVE = """
indices = list(range(0, n, solver['stride']))
lit = scan(indices, {'green': solver['colour']}, solver['tol'], solver['min_pixels'])['green']
starts = np.nonzero(lit & ~np.concatenate([[False], lit[:-1]]))[0]
vr.show([indices[i] for i in starts[:8]])
print(f"checked {len(indices)} of {n} frames; green at frames {[indices[i] for i in starts]}")
print(f"ANSWER: {len(starts)}")
"""
