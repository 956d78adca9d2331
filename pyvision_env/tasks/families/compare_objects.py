"""`compare_objects`: compare two tiny labelled cards that lie far apart in a large scene.

Tests: finding objects by a tiny text label (not by colour: every card looks alike), then
comparing a small visual property of the two: which has more dots, the larger circle, or
the darker square. The two cards are far apart, so one crop cannot show both.

Knobs:
    width, height: image size in pixels.
    n_cards: cards in the scene, the two compared included.
    font_size: size of the built-in font for the two-character labels.
    content_size: side in pixels of the square area that holds a card's dots, circle or square.
    kinds: the properties a question may compare ("dots", "size", "shade").
    min_dot_diff, min_size_diff, min_shade_diff: smallest difference between the two compared
        cards in dot count, circle diameter (pixels) and grey level (0-255).
    n_clutter, n_text: background shapes and loose distractor strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from pyvision_env.answers import choice_letter, inline_options
from pyvision_env.tasks.families.base import (
    CODE_ALPHABET,
    COLOUR_MASK,
    COMPONENTS,
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
CARD_RGB = (250, 236, 190)
LABEL_RGB = (80, 72, 55)
ITEM_RGB = (25, 70, 230)
QUESTIONS = {
    "dots": "Which card has more dots on it",
    "size": "Which card holds the larger circle",
    "shade": "Which card holds the darker square",
}


@dataclass(frozen=True)
class CompareObjectsKnobs:
    width: int = 2400
    height: int = 1800
    n_cards: int = 16
    font_size: int = 10
    content_size: int = 18
    kinds: tuple[str, ...] = ("dots", "size", "shade")
    min_dot_diff: int = 2
    min_size_diff: int = 4
    min_shade_diff: int = 30
    n_clutter: int = 300
    n_text: int = 80


class CompareObjects(TaskFamily):
    """Two labelled cards far apart: which one has more dots / the larger circle / the darker square."""

    name = "compare_objects"
    description = "compare a tiny property of two small labelled cards far apart in a cluttered scene"
    Knobs = CompareObjectsKnobs
    presets = {
        "easy": CompareObjectsKnobs(width=2000, height=1500, n_cards=8, font_size=12, content_size=24,
                                    min_dot_diff=3, min_size_diff=6, min_shade_diff=60, n_clutter=150, n_text=40),
        "medium": CompareObjectsKnobs(),
        "hard": CompareObjectsKnobs(width=3200, height=2400, n_cards=30, font_size=9, content_size=14,
                                    min_dot_diff=1, min_size_diff=2, min_shade_diff=15, n_clutter=500, n_text=160),
    }

    def draw(self, rng: np.random.Generator) -> Draft:
        k = self.knobs
        kind = k.kinds[int(rng.integers(len(k.kinds)))]
        labels = unique_labels(rng, k.n_cards)
        values = [self._value(rng, kind) for _ in labels]
        pitch, line = text_layout(k.font_size)
        top = PAD + line + 2
        size = (max(2 * PAD + 2 * pitch, 2 * PAD + k.content_size), top + k.content_size + PAD)

        image = background(rng, k.width, k.height)
        draw = ImageDraw.Draw(image)
        draw_clutter(draw, rng, k.width, k.height, k.n_clutter)
        draw_distractor_text(draw, rng, k.width, k.height, k.n_text, (k.font_size - 1, k.font_size + 4))
        corners = place_rects(rng, k.width, k.height, [size] * k.n_cards)
        first, second = far_pair(rng, corners, np.hypot(k.width, k.height))
        values[first], values[second] = self._pair(rng, kind)
        for (x, y), label, value in zip(corners, labels, values):
            draw.rectangle([x - 1, y - 1, x + size[0], y + size[1]], fill=CARD_RGB, outline=LABEL_RGB)
            draw_code(draw, (x + PAD, y + PAD), label, k.font_size, LABEL_RGB)
            self._draw_content(draw, rng, x + PAD, y + top, kind, value)

        choices = (labels[first], labels[second])
        answer = choice_letter(0)
        if rng.integers(2):
            choices, answer = choices[::-1], choice_letter(1)
        question = (
            "The image contains many small cards, each marked with a tiny two-character label. "
            f"{QUESTIONS[kind]}: the card labelled {choices[0]} or the card labelled {choices[1]}? "
            f"{inline_options(choices)}. Answer with the letter."
        )
        solver = {
            "kind": kind,
            "card_rgb": CARD_RGB,
            "card_size": size,
            "label_rgb": LABEL_RGB,
            "item_rgb": ITEM_RGB,
            "pad": PAD,
            "content_top": top,
            "content_size": k.content_size,
            "font_size": k.font_size,
            "pitch": pitch,
            "alphabet": CODE_ALPHABET,
            "labels": choices,
        }
        return Draft(question=question, answer=answer, answer_type="choice", solver=solver, choices=choices,
                     images=(image,))

    def _value(self, rng: np.random.Generator, kind: str) -> int:
        """A random dot count, circle diameter or grey level."""
        low, high = self._range(kind)
        return int(rng.integers(low, high + 1))

    def _range(self, kind: str) -> tuple[int, int]:
        c = self.knobs.content_size
        return {"dots": (1, 9), "size": (c // 3, c), "shade": (40, 210)}[kind]

    def _pair(self, rng: np.random.Generator, kind: str) -> tuple[int, int]:
        """Values for the two compared cards, the first being the answer (more / larger / darker)."""
        k = self.knobs
        gap = {"dots": k.min_dot_diff, "size": k.min_size_diff, "shade": k.min_shade_diff}[kind]
        low, high = self._range(kind)
        small = int(rng.integers(low, high - gap + 1))
        big = int(rng.integers(small + gap, high + 1))
        return (small, big) if kind == "shade" else (big, small)

    def _draw_content(self, draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, kind: str, value: int) -> None:
        c = self.knobs.content_size
        if kind == "shade":
            draw.rectangle([x, y, x + c - 1, y + c - 1], fill=(value, value, value))
        elif kind == "size":
            off = (c - value) // 2
            draw.ellipse([x + off, y + off, x + off + value - 1, y + off + value - 1], fill=ITEM_RGB)
        else:
            cell = c // 3
            dot = cell - 2
            for slot in rng.choice(9, size=value, replace=False):
                dx, dy = x + int(slot % 3) * cell + 1, y + int(slot // 3) * cell + 1
                shape = draw.ellipse if dot >= 4 else draw.rectangle
                shape([dx, dy, dx + dot - 1, dy + dot - 1], fill=ITEM_RGB)

    def solution_code(self, task: Task) -> str:
        return solver_cell(task.extra["solver"], COLOUR_MASK, COMPONENTS, READ_CODE, SHOW_CROP, """
            w, h = solver['card_size']
            cards = [b for b in components(colour_mask(solver['card_rgb'], 10))
                     if abs(b[2] - b[0] - w) <= 1 and abs(b[3] - b[1] - h) <= 1]
            print(len(cards), 'cards found')
            found = {}
            for x0, y0, x1, y1, _ in cards:
                label = read_code(x0 + solver['pad'], y0 + solver['pad'], 2, solver['font_size'], solver['pitch'],
                                  solver['alphabet'], solver['label_rgb'], solver['card_rgb'])
                found[label] = (x0, y0)

            def measure(x0, y0):
                c = solver['content_size']
                cx, cy = x0 + solver['pad'], y0 + solver['content_top']
                region = arr[cy:cy + c, cx:cx + c]
                if solver['kind'] == 'shade':
                    return -float(np.median(region[(np.abs(region - np.array(solver['card_rgb'])) > 10).any(-1)]))
                items = (np.abs(region - np.array(solver['item_rgb'])) <= 24).all(-1)
                return len(components(items)) if solver['kind'] == 'dots' else int(items.sum())

            scores = []
            for label in solver['labels']:
                x0, y0 = found[label]
                show_crop(x0 - 10, y0 - 10, x0 + w + 10, y0 + h + 10, scale=8)
                scores.append(measure(x0, y0))
                print(label, 'at', (x0, y0), 'score', scores[-1])
            print(f"ANSWER: {'AB'[int(np.argmax(scores))]}")
        """)


def unique_labels(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct two-character labels."""
    labels: list[str] = []
    while len(labels) < n:
        label = random_code(rng, 2)
        if label not in labels:
            labels.append(label)
    return labels


def far_pair(rng: np.random.Generator, corners: list[tuple[int, int]], diagonal: float) -> tuple[int, int]:
    """Indices of two corners at least a third of the image diagonal apart (the farthest of 50 tries otherwise)."""
    best = (-1.0, 0, 1)
    for _ in range(50):
        i, j = (int(v) for v in rng.choice(len(corners), size=2, replace=False))
        dist = float(np.hypot(corners[i][0] - corners[j][0], corners[i][1] - corners[j][1]))
        if dist >= diagonal / 3:
            return i, j
        best = max(best, (dist, i, j))
    return best[1], best[2]
