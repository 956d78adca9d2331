"""What the built-in video families share: the generation pipeline, the clip cache, timing, drawing, solver snippets.

`VideoTaskFamily.generate` owns the pipeline: one draw from the episode's generator seeds a
clip generator; the family's `draw` plans the task from it (question, answer, and how to
paint each frame); the base adds a backdrop and renders the clip once into the cache
folder: `$PYVISION_ENV_CACHE/videos` (default `~/.cache/pyvision_env/videos`), or the
family's `cache_dir` argument. A clip's file name is a keyed hash of (family, knobs,
clip seed) (see `pyvision_env.tasks.keys.neutral_name`): it tells nothing without the key.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from pyvision_env.media.encode import import_av, write_video
from pyvision_env.tasks.families.base import Draft, TaskFamily, background
from pyvision_env.tasks.keys import neutral_name
from pyvision_env.tasks.task import Task

CACHE_ENV = "PYVISION_ENV_CACHE"
# Bump when rendering changes, so clips cached by an older version are not reused.
RENDER_VERSION = 1
GOP = 15
CRF = 20


def default_cache_dir() -> Path:
    """`$PYVISION_ENV_CACHE/videos`, else `~/.cache/pyvision_env/videos`."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "pyvision_env") / "videos"


@dataclasses.dataclass(frozen=True)
class ClipKnobs:
    """Knobs every video family has.

    width, height: frame size in pixels (even).
    fps: frames per second.
    duration_s: clip length in seconds.
    """

    width: int = 320
    height: int = 240
    fps: float = 15.0
    duration_s: float = 60.0

    @property
    def num_frames(self) -> int:
        return int(round(self.fps * self.duration_s))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClipDraft(Draft):
    """A video family's draft: every frame of the clip is the backdrop with `paint(frame, index)` drawn on it.

    `paint` draws in place on a fresh copy of the backdrop, for index 0, 1, ..., num_frames - 1.
    """

    paint: Callable[[np.ndarray, int], None]


class VideoTaskFamily(TaskFamily):
    """A `TaskFamily` whose task is one generated H.264 clip (`Task.videos[0]`).

    Subclasses implement `draw` (a `ClipDraft` from the clip generator) and
    `solution_code`; seeding, the backdrop, rendering and caching happen here.

    Args:
        difficulty: "easy", "medium" or "hard": picks the preset knob values.
        cache_dir: where clips are kept (default: see `default_cache_dir`).
        **knobs: explicit knob values that override the preset.

    Raises:
        ImportError: PyAV, which renders the clips, is not installed (the message has the
            `pip install` line), so an env over video families fails when it is made.
    """

    def __init__(self, difficulty: str = "medium", cache_dir: str | Path | None = None, **knobs: Any) -> None:
        super().__init__(difficulty, **knobs)
        import_av()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def generate(self, rng: np.random.Generator, task_id: str) -> Task:
        """Draw one task from `rng`: one draw seeds the clip generator, from which the whole task follows."""
        seed = sub_seed(rng)
        crng = np.random.default_rng(seed)
        draft = self.draw(crng)
        backdrop = np.asarray(background(crng, self.knobs.width, self.knobs.height), dtype=np.uint8)
        return self.make_task(task_id, draft, videos=(self.render_clip(seed, backdrop, draft.paint),))

    @abc.abstractmethod
    def draw(self, rng: np.random.Generator) -> ClipDraft:
        """The family's part: plan the task (question, answer, `paint`) from the clip generator `rng`."""

    def clip_path(self, seed: int) -> Path:
        """The cache file for the clip of clip seed `seed` under the current knobs (a neutral name)."""
        name = neutral_name("clip", self.name, RENDER_VERSION, dataclasses.asdict(self.knobs), seed)
        return self.cache_dir / f"{name}.mp4"

    def render_clip(self, seed: int, backdrop: np.ndarray, paint: Callable[[np.ndarray, int], None]) -> Path:
        """The clip for `seed`, encoded frame by frame only when it is not cached yet."""
        path = self.clip_path(seed)
        if not (path.is_file() and path.stat().st_size > 0):
            write_video(path, _frames(backdrop, paint, self.knobs.num_frames), self.knobs.fps, gop=GOP, crf=CRF)
        return path


def _frames(backdrop: np.ndarray, paint: Callable[[np.ndarray, int], None], count: int) -> Iterator[np.ndarray]:
    """`count` frames: each a copy of `backdrop` that `paint` drew on."""
    for index in range(count):
        frame = backdrop.copy()
        paint(frame, index)
        yield frame


def sub_seed(rng: np.random.Generator) -> int:
    """The one draw a video family takes from the episode's generator."""
    return int(rng.integers(2**31))


# ---------------------------------------------------------------- timing


def spaced_starts(rng: np.random.Generator, n_frames: int, k: int, length: int, gap: int, lead: int = 0) -> list[int]:
    """Start frames of `k` events of `length` frames, at least `gap` frames apart, in order.

    The free frames are split at random among the k + 1 spaces around the events; the
    first event starts at frame `lead` or later.
    """
    free = n_frames - lead - k * length - (k - 1) * gap - 1
    if free < 0:
        raise ValueError(f"{k} events of {length} frames with gaps of {gap} do not fit in {n_frames} frames")
    cuts = np.sort(rng.integers(0, free + 1, size=k))
    return [int(lead + cuts[i] + i * (length + gap)) for i in range(k)]


# ---------------------------------------------------------------- drawing


def fill_rect(frame: np.ndarray, box: Sequence[int], colour: Sequence[int]) -> None:
    """Paint the box (x0, y0, x1, y1) of `frame` in place."""
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = colour


def fill_disc(frame: np.ndarray, cx: float, cy: float, radius: float, colour: Sequence[int]) -> None:
    """Paint a disc centred at (cx, cy) (sub-pixel) into `frame` in place."""
    height, width = frame.shape[:2]
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, width)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, height)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= radius**2
    frame[y0:y1, x0:x1][inside] = colour


def random_box(rng: np.random.Generator, width: int, height: int, w: int, h: int, margin: int = 8) -> list[int]:
    """A (x0, y0, x1, y1) box of size w x h placed at random inside the frame."""
    x = int(rng.integers(margin, width - w - margin))
    y = int(rng.integers(margin, height - h - margin))
    return [x, y, x + w, y + h]


def format_seconds(value: float) -> str:
    """A time in seconds as text with two decimals, trailing zeros dropped ("12.3", "7")."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- solver pieces


def video_solver_cell(solver: Mapping[str, Any], *parts: str) -> str:
    """A self-contained solution cell: imports, the solver parameters, shared helpers, the parts."""
    head = "import numpy as np\nimport matplotlib.pyplot as plt\n"
    body = "\n".join(textwrap.dedent(p).strip() + "\n" for p in (SCAN, *parts))
    return f"{head}\nsolver = {dict(solver)!r}\nvr = video_clue_0\nn, fps = len(vr), vr.get_avg_fps()\n\n{body}"


# Which frames of `indices` show each colour: at least `min_pixels` pixels within `tol`
# per channel, counted on every 4th row and column (so about 1/16 of an object's pixels
# count). Frames are fetched in chunks so a long scan never holds the clip.
SCAN = """
def scan(indices, colours, tol, min_pixels, chunk=64):
    indices = list(indices)
    bounds = {name: (np.clip(np.array(rgb) - tol, 0, 255).astype(np.uint8),
                     np.clip(np.array(rgb) + tol, 0, 255).astype(np.uint8)) for name, rgb in colours.items()}
    seen = {name: [] for name in colours}
    for s in range(0, len(indices), chunk):
        frames = vr.get_batch(indices[s:s + chunk]).asnumpy()[:, ::4, ::4]
        for name, (low, high) in bounds.items():
            near = ((frames >= low) & (frames <= high)).all(axis=-1)
            seen[name].extend(near.sum(axis=(1, 2)) >= min_pixels)
    return {name: np.array(v, dtype=bool) for name, v in seen.items()}
"""
