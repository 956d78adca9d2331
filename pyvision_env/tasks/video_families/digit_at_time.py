"""`digit_at_time`: what digit does the display show at t = X s? The state at one moment.

A seven-segment display shows a digit that changes every `min_segment_frames` to
`max_segment_frames` frames (never the same digit twice in a row). The question names a
moment inside one of the shortest stretches, so the frame must be picked by its timestamp,
not guessed from nearby frames. The solver reads the lit segments from the pixels.

Knobs:
    width, height, fps, duration_s: the clip (see `ClipKnobs`).
    min_segment_frames, max_segment_frames: how long a digit stays, in frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyvision_env.tasks.task import Task
from pyvision_env.tasks.video_families._clip import (
    ClipDraft,
    ClipKnobs,
    VideoTaskFamily,
    fill_rect,
    format_seconds,
    video_solver_cell,
)

# Segments a..g of each digit (a top, b top right, c bottom right, d bottom, e bottom left,
# f top left, g middle).
DIGIT_SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}
PANEL, LIT, UNLIT = (20, 20, 20), (255, 240, 240), (55, 55, 55)


def segment_boxes(x: int, y: int, w: int, h: int, t: int) -> dict[str, list[int]]:
    """(x0, y0, x1, y1) of each segment of a digit w wide, h tall, strokes t thick, at (x, y)."""
    mid = y + (h - t) // 2
    return {
        "a": [x + t, y, x + w - t, y + t],
        "b": [x + w - t, y + t, x + w, mid],
        "c": [x + w - t, mid + t, x + w, y + h - t],
        "d": [x + t, y + h - t, x + w - t, y + h],
        "e": [x, mid + t, x + t, y + h - t],
        "f": [x, y + t, x + t, mid],
        "g": [x + t, mid, x + w - t, mid + t],
    }


@dataclass(frozen=True)
class DigitAtTimeKnobs(ClipKnobs):
    min_segment_frames: int = 3
    max_segment_frames: int = 30


class DigitAtTime(VideoTaskFamily):
    """A changing seven-segment digit; the question asks which digit shows at a given second."""

    name = "digit_at_time"
    description = "Read the digit a seven-segment display shows at a given moment (text, exact)."
    Knobs = DigitAtTimeKnobs
    presets = {
        "easy": DigitAtTimeKnobs(fps=10.0, duration_s=20.0, min_segment_frames=3, max_segment_frames=20),
        "medium": DigitAtTimeKnobs(fps=15.0, duration_s=60.0, min_segment_frames=3, max_segment_frames=30),
        "hard": DigitAtTimeKnobs(fps=20.0, duration_s=150.0, min_segment_frames=3, max_segment_frames=40),
    }

    def draw(self, crng: np.random.Generator) -> ClipDraft:
        k = self.knobs
        n = k.num_frames
        digits, starts = self._schedule(crng, n)
        shown = np.repeat(digits, np.diff([*starts, n]))
        query = self._query_frame(crng, starts, n)
        h = k.height // 2
        w, t = h // 2, max(h // 8, 3)
        x, y = int(crng.integers(10, k.width - w - 20)), int(crng.integers(10, k.height - h - 20))
        segments = segment_boxes(x, y, w, h, t)
        panel = [x - t, y - t, x + w + t, y + h + t]

        def paint(frame: np.ndarray, i: int) -> None:
            fill_rect(frame, panel, PANEL)
            lit = DIGIT_SEGMENTS[str(shown[i])]
            for name, box in segments.items():
                fill_rect(frame, box, LIT if name in lit else UNLIT)

        moment = format_seconds((query + 0.5) / k.fps)
        question = (
            f"In this {format_seconds(k.duration_s)}-second video a display shows a digit that changes often. "
            f"Which digit does it show at t = {moment} s? Answer with the digit."
        )
        solver = {"time": float(moment), "segments": segments, "digits": DIGIT_SEGMENTS}
        return ClipDraft(question=question, answer=str(shown[query]), answer_type="text", solver=solver, paint=paint)

    def _schedule(self, crng: np.random.Generator, n: int) -> tuple[np.ndarray, list[int]]:
        """Digits and the frame each starts at; consecutive digits differ."""
        k = self.knobs
        starts, digits, frame = [], [], 0
        while frame < n:
            options = [d for d in range(10) if not digits or d != digits[-1]]
            digits.append(int(crng.choice(options)))
            starts.append(frame)
            frame += int(crng.integers(k.min_segment_frames, k.max_segment_frames + 1))
        return np.array(digits), starts

    @staticmethod
    def _query_frame(crng: np.random.Generator, starts: list[int], n: int) -> int:
        """A frame in the middle of one of the shortest complete stretches."""
        lengths = np.diff([*starts, n])
        complete = np.arange(len(starts) - 1) if len(starts) > 1 else np.arange(1)
        shortest = complete[lengths[complete] == lengths[complete].min()]
        pick = int(crng.choice(shortest))
        return int(starts[pick] + lengths[pick] // 2)

    def solution_code(self, task: Task) -> str:
        return video_solver_cell(task.extra["solver"], SOLVE)

    def chance_answer(self, task: Task, rng: np.random.Generator) -> str:
        return str(int(rng.integers(10)))


SOLVE = """
index = int(np.searchsorted(vr.get_frame_timestamp(range(n))[:, 0], solver['time'] + 1e-6) - 1)
frame = vr[index].asnumpy().astype(np.float64)
lit = ''.join(
    name for name, (x0, y0, x1, y1) in sorted(solver['segments'].items())
    if frame[y0:y1, x0:x1].mean() > 150
)
digit = next((d for d, segs in solver['digits'].items() if segs == lit), '?')
vr.show([max(index - 1, 0), index, min(index + 1, n - 1)])
print(f"t = {solver['time']} s is frame {index}; lit segments {lit!r}")
print(f"ANSWER: {digit}")
"""
