"""`flash_time`: when does the red flash happen? Temporal localisation of a few-frame event.

A red rectangle appears once, for `flash_frames` frames; flashes of other colours happen at
other times. The answer is the flash's start time in seconds, graded by mean relative
accuracy (the flash never starts in the first fifth of the clip, so MRA stays meaningful).
A handful of uniformly spaced frames almost surely misses it; a scan with a stride of
`flash_frames` cannot.

Knobs:
    width, height, fps, duration_s: the clip (see `ClipKnobs`).
    flash_frames: how long each flash lasts, in frames.
    n_distractors: flashes in other colours (blue, green, yellow).
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
    fill_rect,
    format_seconds,
    random_box,
    spaced_starts,
    video_solver_cell,
)

DISTRACTOR_COLOURS = ("blue", "green", "yellow")


@dataclass(frozen=True)
class FlashTimeKnobs(ClipKnobs):
    flash_frames: int = 3
    n_distractors: int = 2


class FlashTime(VideoTaskFamily):
    """One short red flash; the question asks when it starts."""

    name = "flash_time"
    description = "Find when a red flash of a few frames begins (seconds, graded by MRA)."
    Knobs = FlashTimeKnobs
    presets = {
        "easy": FlashTimeKnobs(fps=10.0, duration_s=20.0, flash_frames=3, n_distractors=0),
        "medium": FlashTimeKnobs(fps=15.0, duration_s=60.0, flash_frames=3, n_distractors=2),
        "hard": FlashTimeKnobs(fps=20.0, duration_s=150.0, flash_frames=2, n_distractors=5),
    }

    def draw(self, crng: np.random.Generator) -> ClipDraft:
        k = self.knobs
        n, length = k.num_frames, k.flash_frames
        lead = n // 5
        events = spaced_starts(crng, n, 1 + k.n_distractors, length, gap=2 * length, lead=lead)
        red_at = int(events[int(crng.integers(len(events)))])
        colours = [NAMED_COLOURS[DISTRACTOR_COLOURS[i % len(DISTRACTOR_COLOURS)]] for i in range(len(events))]
        plan = []
        for start, colour in zip(events, colours):
            colour = NAMED_COLOURS["red"] if start == red_at else colour
            plan.append((start, colour, random_box(crng, k.width, k.height, k.width // 3, k.height // 3)))

        def paint(frame: np.ndarray, i: int) -> None:
            for start, colour, box in plan:
                if start <= i < start + length:
                    fill_rect(frame, box, colour)

        question = (
            f"A red rectangle flashes once, briefly, in this {format_seconds(k.duration_s)}-second video "
            "(other colours may flash too). At what time, in seconds, does the red flash begin? "
            "Answer with a number of seconds."
        )
        solver = {"colour": list(NAMED_COLOURS["red"]), "tol": 60, "min_pixels": 100, "stride": length}
        answer = format_seconds(red_at / k.fps)
        return ClipDraft(question=question, answer=answer, answer_type="number", solver=solver, grading="mra",
                         paint=paint)

    def solution_code(self, task: Task) -> str:
        return video_solver_cell(task.extra["solver"], SOLVE)

    def chance_answer(self, task: Task, rng: np.random.Generator) -> str:
        return format_seconds(float(rng.uniform(0, self.task_knobs(task).duration_s)))


SOLVE = """
stride, red = solver['stride'], {'red': solver['colour']}
coarse = list(range(0, n, stride))
hits = np.nonzero(scan(coarse, red, solver['tol'], solver['min_pixels'])['red'])[0]
hit = coarse[int(hits[0])]
fine = list(range(max(0, hit - stride + 1), hit + 1))
onset = fine[int(np.argmax(scan(fine, red, solver['tol'], solver['min_pixels'])['red']))]
vr.show([max(onset - 1, 0), onset, min(onset + 1, n - 1)])
start = float(vr.get_frame_timestamp(onset)[0])
print(f"checked {len(coarse) + len(fine)} of {n} frames; red flash starts at frame {onset}")
print(f"ANSWER: {start:.2f}")
"""
