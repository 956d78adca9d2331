"""`dot_distance`: how far does the red dot travel? A number graded by mean relative accuracy.

A red dot moves in straight lines between random waypoints, each move taking
`min_move_frames` to `max_move_frames` frames, with pauses in between. The answer is the
length of its path in pixels (the sum of its frame-to-frame displacements). Sampling a
few frames cuts the corners of a zig-zag path; a scan at a stride well under the shortest
move recovers the length to within a few percent.

Knobs:
    width, height, fps, duration_s: the clip (see `ClipKnobs`).
    min_move_frames, max_move_frames: how long one straight move lasts, in frames.
    pause_frames: the longest pause between moves, in frames.
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
    video_solver_cell,
)

RADIUS = 5.0
MARGIN = 15


@dataclass(frozen=True)
class DotDistanceKnobs(ClipKnobs):
    min_move_frames: int = 8
    max_move_frames: int = 30
    pause_frames: int = 20


class DotDistance(VideoTaskFamily):
    """A dot zig-zags with pauses; the question asks for its total path length in pixels."""

    name = "dot_distance"
    description = "Measure the total distance a moving dot travels, in pixels (number, graded by MRA)."
    Knobs = DotDistanceKnobs
    presets = {
        "easy": DotDistanceKnobs(fps=10.0, duration_s=15.0, min_move_frames=8, max_move_frames=20, pause_frames=10),
        "medium": DotDistanceKnobs(fps=15.0, duration_s=45.0, min_move_frames=8, max_move_frames=30),
        "hard": DotDistanceKnobs(fps=20.0, duration_s=120.0, min_move_frames=6, max_move_frames=40, pause_frames=40),
    }

    def draw(self, crng: np.random.Generator) -> ClipDraft:
        k = self.knobs
        path = self._trajectory(crng, k.num_frames)
        distance = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        red = NAMED_COLOURS["red"]

        def paint(frame: np.ndarray, i: int) -> None:
            fill_disc(frame, path[i][0], path[i][1], RADIUS, red)

        question = (
            f"In this {format_seconds(k.duration_s)}-second video ({k.width}x{k.height} pixels) a red dot moves "
            "in straight lines, changing direction and sometimes pausing. How far does it travel in total, "
            "in pixels? Answer with a number."
        )
        solver = {"colour": list(red), "tol": 60, "stride": max(1, k.min_move_frames // 3)}
        return ClipDraft(question=question, answer=f"{distance:.1f}", answer_type="number", solver=solver,
                         grading="mra", paint=paint)

    def _trajectory(self, crng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 2) sub-pixel dot centres: straight moves between waypoints, and pauses."""
        k = self.knobs
        low, high = np.array([MARGIN, MARGIN]), np.array([k.width - MARGIN, k.height - MARGIN])
        here = crng.uniform(low, high)
        points = [here]
        while len(points) < n:
            pause = int(crng.integers(0, k.pause_frames + 1))
            points.extend([here] * pause)
            target = crng.uniform(low, high)
            steps = int(crng.integers(k.min_move_frames, k.max_move_frames + 1))
            points.extend(here + (target - here) * (s / steps) for s in range(1, steps + 1))
            here = target
        return np.array(points[:n])

    def solution_code(self, task: Task) -> str:
        return video_solver_cell(task.extra["solver"], SOLVE)

    def chance_answer(self, task: Task, rng: np.random.Generator) -> str:
        """The expected path length of the task's knobs, times a random factor in 0.5..1.5.

        Expected length: (moves in the clip) x (mean move), a move with its pause taking
        (min + max move frames) / 2 + pause_frames / 2 frames on average, and a move's mean
        length about 0.5214 x sqrt(area), the mean distance between two random points of a
        square of the area the dot roams.
        """
        k = self.task_knobs(task)
        moves = k.num_frames / ((k.min_move_frames + k.max_move_frames) / 2 + k.pause_frames / 2)
        mean_move = 0.5214 * np.sqrt((k.width - 2 * MARGIN) * (k.height - 2 * MARGIN))
        return f"{rng.uniform(0.5, 1.5) * moves * mean_move:.1f}"


SOLVE = """
indices = sorted(set(range(0, n, solver['stride'])) | {n - 1})
rgb, tol = np.array(solver['colour']), solver['tol']
low, high = np.clip(rgb - tol, 0, 255).astype(np.uint8), np.clip(rgb + tol, 0, 255).astype(np.uint8)

def centre(frame):
    ys, xs = np.nonzero(((frame[::4, ::4] >= low) & (frame[::4, ::4] <= high)).all(axis=-1))
    y0, x0 = (max(int(ys.mean()) * 4 - 12, 0), max(int(xs.mean()) * 4 - 12, 0)) if len(ys) else (0, 0)
    window = frame[y0:y0 + 28, x0:x0 + 28] if len(ys) else frame
    ys, xs = np.nonzero(((window >= low) & (window <= high)).all(axis=-1))
    return x0 + xs.mean(), y0 + ys.mean()

centres = []
for s in range(0, len(indices), 64):
    centres.extend(centre(frame) for frame in vr.get_batch(indices[s:s + 64]).asnumpy())
steps = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
steps[steps < 0.5] = 0.0  # a paused dot, give or take compression noise
vr.show(indices[:: max(1, len(indices) // 8)][:8])
print(f"checked {len(indices)} of {n} frames; dot path sampled at {len(centres)} points")
print(f"ANSWER: {steps.sum():.1f}")
"""
