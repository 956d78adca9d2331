"""`tiny_text`: read a short code printed tiny inside one coloured box of a cluttered scene.

Tests: finding a small target by colour in a large image, then reading characters that are
a few pixels tall (unreadable once the image is shrunk to the model's input resolution).
Distractors: boxes of other colours holding other codes, loose random text, muted shapes.

Knobs:
    width, height: image size in pixels.
    font_size: size of the built-in font for the codes (glyphs are about 0.7 x this tall).
    code_length: characters in the code.
    n_boxes: coloured code boxes, the target included (each a different colour).
    n_clutter: background shapes.
    n_text: loose distractor strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from pyvision_env.tasks.families.base import (
    CODE_ALPHABET,
    COLOUR_MASK,
    DENSE_BOX,
    NAMED_COLOURS,
    READ_CODE,
    SHOW_CROP,
    Draft,
    TaskFamily,
    background,
    draw_clutter,
    draw_code,
    draw_distractor_text,
    place_rects,
    random_code,
    solver_cell,
    text_layout,
)
from pyvision_env.tasks.task import Task

PAD = 3
OUTLINE = (40, 40, 40)


@dataclass(frozen=True)
class TinyTextKnobs:
    width: int = 2400
    height: int = 1800
    font_size: int = 10
    code_length: int = 4
    n_boxes: int = 8
    n_clutter: int = 300
    n_text: int = 80


class TinyText(TaskFamily):
    """A tiny code in a coloured box; the question names the colour."""

    name = "tiny_text"
    description = "read a tiny code printed inside a small coloured box in a cluttered scene"
    Knobs = TinyTextKnobs
    presets = {
        "easy": TinyTextKnobs(width=2000, height=1500, font_size=12, code_length=4, n_boxes=4, n_clutter=150, n_text=40),
        "medium": TinyTextKnobs(),
        "hard": TinyTextKnobs(width=3200, height=2400, font_size=9, code_length=6, n_boxes=12, n_clutter=500, n_text=160),
    }

    def draw(self, rng: np.random.Generator) -> Draft:
        k = self.knobs
        names = [list(NAMED_COLOURS)[i] for i in rng.permutation(len(NAMED_COLOURS))[: k.n_boxes]]
        codes = [random_code(rng, k.code_length) for _ in names]
        pitch, line = text_layout(k.font_size)
        size = (2 * PAD + k.code_length * pitch, 2 * PAD + line)

        image = background(rng, k.width, k.height)
        draw = ImageDraw.Draw(image)
        draw_clutter(draw, rng, k.width, k.height, k.n_clutter)
        draw_distractor_text(draw, rng, k.width, k.height, k.n_text, (k.font_size - 2, k.font_size + 4))
        for (x, y), name, code in zip(place_rects(rng, k.width, k.height, [size] * len(names)), names, codes):
            draw.rectangle([x - 1, y - 1, x + size[0], y + size[1]], fill=NAMED_COLOURS[name], outline=OUTLINE)
            draw_code(draw, (x + PAD, y + PAD), code, k.font_size, text_colour(NAMED_COLOURS[name]))

        target = names[0]
        question = (
            f"Somewhere in the image there is a small {target} box with a {k.code_length}-character code "
            "(capital letters and digits) printed in it. What is the code? Answer with the code only."
        )
        solver = {
            "box_rgb": NAMED_COLOURS[target],
            "text_rgb": text_colour(NAMED_COLOURS[target]),
            "font_size": k.font_size,
            "pitch": pitch,
            "pad": PAD,
            "n_chars": k.code_length,
            "alphabet": CODE_ALPHABET,
        }
        return Draft(question=question, answer=codes[0], answer_type="text", solver=solver, images=(image,))

    def solution_code(self, task: Task) -> str:
        return solver_cell(task.extra["solver"], COLOUR_MASK, DENSE_BOX, READ_CODE, SHOW_CROP, """
            x0, y0, x1, y1 = dense_box(colour_mask(solver['box_rgb'], 12))
            print('box found at', (x0, y0, x1, y1))
            show_crop(x0 - 20, y0 - 20, x1 + 20, y1 + 20, scale=6)
            code = read_code(x0 + solver['pad'], y0 + solver['pad'], solver['n_chars'], solver['font_size'],
                             solver['pitch'], solver['alphabet'], solver['text_rgb'], solver['box_rgb'])
            print(f"ANSWER: {code}")
        """)

    def chance_answer(self, task: Task, rng: np.random.Generator) -> str:
        """A random code of the length the question states."""
        return random_code(rng, int(task.question.split("-character")[0].split()[-1]))


def text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Near-black on light fills, near-white on dark ones (tinted by the fill, for lower contrast)."""
    ink = 0 if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 120 else 255
    return tuple(int(0.7 * ink + 0.3 * c) for c in fill)
