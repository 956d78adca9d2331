"""The `TaskFamily` base class and the drawing and solver pieces built-in families share.

A family draws (`draw`) one task from a seeded `np.random.Generator`; `TaskFamily.generate`
wraps it into a `Task`. An image family's single image is large and cluttered and its
decisive detail small: too small to read once a VLM's processor shrinks the image to about
one megapixel, so the model has to crop, zoom or measure with code.

Each family also writes its reference solution: a self-contained Python cell that works on
the pixels of `image_clue_0` in the sandbox (only `numpy`, `PIL` and `matplotlib`), shows a
crop with `plt.show()` and ends with `print(f"ANSWER: {value}")`. The cell gets the task's
question and `task.extra["solver"]` (colours, font size, layout pitch: never the answer).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import re
import string
import textwrap
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pyvision_env.answers import AnswerType, random_choice_letter
from pyvision_env.tasks.task import Task

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")

# Letters and digits that stay distinct at small sizes (no 0/O, 1/I, ...).
CODE_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ2345689"

# Saturated colours with everyday names. Backgrounds and clutter are muted (see `muted_colour`),
# so a colour from this table never occurs in them: a family can name it in the question and
# the solver can find it by colour alone.
NAMED_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 0),
    "yellow": (240, 215, 0),
    "green": (20, 170, 40),
    "cyan": (0, 200, 220),
    "blue": (25, 70, 230),
    "purple": (130, 40, 200),
    "magenta": (230, 0, 200),
    "pink": (255, 110, 180),
    "lime": (160, 240, 0),
    "brown": (150, 75, 0),
    "teal": (0, 140, 130),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Draft:
    """What a family draws for one task; `TaskFamily.generate` turns it into a `Task`.

    Attributes:
        question, answer, answer_type, choices: as in `Task`.
        solver: the reference solution's parameters (never the answer): `Task.extra["solver"]`.
        grading: how a number answer is graded ("exact" or "mra"), or None for the default.
        images: the task's pictures, in clue order (image families).
    """

    question: str
    answer: str
    answer_type: AnswerType
    solver: Mapping[str, Any]
    choices: Sequence[str] = ()
    grading: str | None = None
    images: Sequence[Image.Image] = ()


class TaskFamily(abc.ABC):
    """A generator of procedural, verifiable tasks of one kind.

    Subclasses set `name`, `description`, `Knobs` (a frozen dataclass of the family's
    knobs) and `presets` (difficulty -> `Knobs`), and implement `draw` and `solution_code`;
    `generate` owns the rest of the pipeline (for video, `VideoTaskFamily` adds seeding,
    rendering and caching). `title`, the family's part of its env id
    (`PyVisionImage-<title>-v0`), is `name` in CamelCase unless the subclass sets it.

    Args:
        difficulty: "easy", "medium" or "hard": picks the preset knob values.
        **knobs: explicit knob values that override the preset.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Knobs: ClassVar[type]
    presets: ClassVar[Mapping[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "title" not in cls.__dict__:
            cls.title = "".join(word.capitalize() for word in cls.name.split("_"))

    def __init__(self, difficulty: str = "medium", **knobs: Any) -> None:
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
        valid = [f.name for f in dataclasses.fields(self.Knobs)]
        unknown = sorted(set(knobs) - set(valid))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown knob(s) {unknown}; valid knobs: {valid}")
        self.difficulty = difficulty
        self.knobs = dataclasses.replace(self.presets[difficulty], **knobs)

    def generate(self, rng: np.random.Generator, task_id: str) -> Task:
        """Draw one task from `rng` (the only source of randomness) and call it `task_id`."""
        return self.make_task(task_id, self.draw(rng))

    @abc.abstractmethod
    def draw(self, rng: np.random.Generator) -> Draft:
        """The family's part of `generate`: the question, the answer and the media, from `rng`."""

    @abc.abstractmethod
    def solution_code(self, task: Task) -> str:
        """A Python cell that solves `task` from the pixels of its media in the sandbox."""

    def task_knobs(self, task: Task) -> Any:
        """The knobs `task` was generated with (from `task.extra["knobs"]`), whatever this instance's preset."""
        knobs = task.extra.get("knobs")
        if not isinstance(knobs, Mapping):
            raise ValueError(f"task {task.id!r} carries no knobs in task.extra; pass the task's extra as the env gives it")
        return self.Knobs(**knobs)

    def chance_answer(self, task: Task, rng: np.random.Generator) -> str:
        """A guess made from the task as an agent sees it, without its media: the no-tool baseline.

        A random choice letter for multiple choice; for a number, a random integer in the
        range the question states ("an integer from LO to HI"). Families whose answers are
        otherwise shaped override this, reading the task's own knobs (`task_knobs`), never
        this instance's, so one default-configured family guesses for every difficulty.
        """
        if task.choices:
            return random_choice_letter(rng, len(task.choices))
        found = re.search(r"an integer from (\d+) to (\d+)", task.question)
        if found is None:
            raise NotImplementedError(f"{type(self).__name__} must override chance_answer")
        low, high = int(found.group(1)), int(found.group(2))
        return str(int(rng.integers(low, high + 1)))

    def make_task(self, task_id: str, draft: Draft, videos: Sequence[Path] = ()) -> Task:
        """Wrap a draft (and, for video, its rendered clips) into a `Task` with the standard `extra` keys."""
        extra = {
            "family": self.name,
            "difficulty": self.difficulty,
            "knobs": dataclasses.asdict(self.knobs),
            "solver": dict(draft.solver),
        }
        if draft.grading is not None:
            extra["grading"] = draft.grading
        return Task(
            id=task_id,
            question=draft.question,
            answer=draft.answer,
            answer_type=draft.answer_type,
            choices=tuple(draft.choices),
            images=tuple(draft.images),
            videos=tuple(videos),
            source=f"builtin/{self.name}",
            extra=extra,
        )


# ---------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (Pillow >= 10.1): the same on every machine, no files."""
    return ImageFont.load_default(size=size)


def text_layout(size: int, alphabet: str = CODE_ALPHABET) -> tuple[int, int]:
    """(pitch, line height) of fixed-pitch text: every character gets a cell `pitch` wide."""
    f = font(size)
    pitch = int(np.ceil(max(f.getlength(c) for c in alphabet)))
    return pitch, f.getbbox(alphabet)[3] + 1


def draw_code(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill: tuple) -> None:
    """Draw `text` one character per fixed-pitch cell, so a solver can match cells one by one."""
    pitch, _ = text_layout(size)
    for i, ch in enumerate(text):
        draw.text((xy[0] + i * pitch, xy[1]), ch, font=font(size), fill=fill)


def random_code(rng: np.random.Generator, length: int, alphabet: str = CODE_ALPHABET) -> str:
    """A random string of `length` characters from `alphabet`."""
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=length))


def muted_colour(rng: np.random.Generator, low: int = 85, high: int = 215) -> tuple[int, int, int]:
    """A low-saturation colour: channels within `low..high` and at most 50 apart."""
    grey = int(rng.integers(low + 25, high - 25))
    return tuple(int(v) for v in grey + rng.integers(-25, 26, size=3))


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth, muted, blotchy backdrop (bilinear upsampling of a coarse random grid)."""
    coarse = np.stack([rng.integers(110, 200, size=(height // 120 + 2, width // 120 + 2))] * 3, axis=-1)
    coarse = coarse + rng.integers(-20, 21, size=coarse.shape)
    return Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)


def draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, n: int) -> None:
    """Scatter `n` muted shapes (boxes, blobs, polygons, lines) of mixed sizes over the canvas."""
    for _ in range(n):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        w, h = (int(v) for v in np.exp(rng.uniform(np.log(6), np.log(260), size=2)))
        colour = muted_colour(rng)
        kind = int(rng.integers(4))
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        elif kind == 2:
            pts = rng.integers(-w, w + 1, size=(int(rng.integers(3, 7)), 2)) + np.array([x, y])
            draw.polygon([tuple(int(v) for v in p) for p in pts], fill=colour)
        else:
            draw.line([x, y, x + int(rng.integers(-w, w + 1)), y + h], fill=colour, width=int(rng.integers(1, 5)))


def draw_distractor_text(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, n: int, sizes: tuple[int, int]
) -> None:
    """Scatter `n` short random strings in dark muted colours: text that is not the answer."""
    chars = string.ascii_uppercase + string.digits
    for _ in range(n):
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        text = random_code(rng, int(rng.integers(2, 9)), chars)
        xy = (int(rng.integers(width - 60)), int(rng.integers(height - 20)))
        draw.text(xy, text, font=font(size), fill=muted_colour(rng, 20, 120))


def place_rects(
    rng: np.random.Generator, width: int, height: int, sizes: Sequence[tuple[int, int]], margin: int = 20
) -> list[tuple[int, int]]:
    """Top-left corners for non-overlapping rectangles of the given (w, h), `margin` apart."""
    placed: list[tuple[int, int, int, int]] = []
    for w, h in sizes:
        for _ in range(1000):
            x = int(rng.integers(margin, width - w - margin))
            y = int(rng.integers(margin, height - h - margin))
            if all(x + w + margin < a or a + c + margin < x or y + h + margin < b or b + d + margin < y
                   for a, b, c, d in placed):
                placed.append((x, y, w, h))
                break
        else:
            raise RuntimeError(f"could not place {len(sizes)} rectangles on a {width}x{height} canvas")
    return [(x, y) for x, y, _, _ in placed]


# ---------------------------------------------------------------- solver pieces


def solver_cell(solver: Mapping[str, Any], *parts: str) -> str:
    """Assemble a self-contained solution cell: the solver parameters, then the code parts."""
    head = "import numpy as np\nfrom PIL import Image, ImageDraw, ImageFont\nimport matplotlib.pyplot as plt\n"
    body = "\n".join(textwrap.dedent(p).strip() + "\n" for p in parts)
    return f"{head}\nsolver = {dict(solver)!r}\narr = np.asarray(image_clue_0.convert('RGB')).astype(np.int16)\n\n{body}"


# Pixels within `tol` (per channel) of a colour.
COLOUR_MASK = """
def colour_mask(rgb, tol):
    return (np.abs(arr - np.array(rgb, np.int16)) <= tol).all(axis=-1)
"""

# The rectangle where a colour is dense: rows and columns holding at least half the peak count.
DENSE_BOX = """
def dense_box(mask):
    rows, cols = mask.sum(axis=1), mask.sum(axis=0)
    ys = np.nonzero(rows >= rows.max() / 2)[0]
    xs = np.nonzero(cols >= cols.max() / 2)[0]
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
"""

# Connected components (8-connected) of a sparse mask: min-label propagation with pointer
# jumping over the mask's own pixels, so the cost follows the mask, not the image.
COMPONENTS = """
def components(mask):
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    flat = ys.astype(np.int64) * w + xs
    lab = np.arange(len(flat))
    pairs = []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        nb = flat + dy * w + dx
        j = np.minimum(np.searchsorted(flat, nb), len(flat) - 1)
        ok = (flat[j] == nb) & (xs + dx >= 0) & (xs + dx < w)
        pairs.append((np.nonzero(ok)[0], j[ok]))
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    while True:
        new = lab.copy()
        low = np.minimum(lab[a], lab[b])
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, lab):
            break
        lab = new
    roots, idx = np.unique(lab, return_inverse=True)
    k = len(roots)
    x0, y0 = np.full(k, w), np.full(k, h)
    x1, y1 = np.zeros(k, np.int64), np.zeros(k, np.int64)
    np.minimum.at(x0, idx, xs)
    np.minimum.at(y0, idx, ys)
    np.maximum.at(x1, idx, xs + 1)
    np.maximum.at(y1, idx, ys + 1)
    area = np.bincount(idx, minlength=k)
    return [tuple(int(v) for v in box) for box in zip(x0, y0, x1, y1, area)]
"""

# Read fixed-pitch text whose first cell starts at (x, y): each cell is compared with every
# character of the alphabet rendered on the spot with the same built-in font (sum of squared
# differences over the cell); a one-pixel search around (x, y) absorbs any offset.
READ_CODE = """
def read_code(x, y, n, size, pitch, alphabet, fg, bg):
    font = ImageFont.load_default(size=size)
    height = font.getbbox(alphabet)[3] + 1
    tiles = []
    for ch in alphabet:
        tile = Image.new('RGB', (pitch + 4, height), tuple(bg))
        ImageDraw.Draw(tile).text((2, 0), ch, font=font, fill=tuple(fg))
        tiles.append(np.asarray(tile).astype(np.float64))
    tiles = np.stack(tiles)
    best = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            text, cost = '', 0.0
            for i in range(n):
                x0, y0 = x + dx + i * pitch - 2, y + dy
                patch = arr[y0:y0 + height, x0:x0 + pitch + 4].astype(np.float64)
                if patch.shape != tiles.shape[1:]:
                    cost = np.inf
                    break
                scores = ((tiles - patch)[:, :, 2:-2] ** 2).sum(axis=(1, 2, 3))
                text += alphabet[int(scores.argmin())]
                cost += scores.min()
            if best is None or cost < best[0]:
                best = (cost, text)
    return best[1]
"""

# Show a region of the image enlarged, as a model would to look closely.
SHOW_CROP = """
def show_crop(x0, y0, x1, y1, scale=4):
    crop = image_clue_0.crop((int(x0), int(y0), int(x1), int(y1)))
    crop = crop.resize((crop.width * scale, crop.height * scale), Image.Resampling.NEAREST)
    plt.figure(figsize=(6, 6 * crop.height / max(crop.width, 1)))
    plt.imshow(crop)
    plt.axis('off')
    plt.show()
"""
