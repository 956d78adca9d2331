"""The answer vocabulary tasks and graders share: answer types, grading modes, numbers, text, choice letters.

A leaf module: it imports nothing from the rest of `pyvision_env`, so `tasks` (which
builds answers) and `rewards` (which grades them) both depend on it and not on each other.
"""

from __future__ import annotations

import math
import re
import string
from typing import Literal, Sequence

import numpy as np

AnswerType = Literal["choice", "number", "text"]
ANSWER_TYPES: tuple[str, ...] = ("choice", "number", "text")

# How a number answer is graded: "exact" equality, or VSI-Bench's mean relative accuracy.
GRADING_MODES: tuple[str, ...] = ("exact", "mra")


# ---------------------------------------------------------------- text

_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_EDGE_JUNK = " \t\n.,;:!?\"'`()[]{}<>«»“”‘’*"
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+(?=\S)")
_WHITESPACE = re.compile(r"\s+")


def unwrap_latex(text: str) -> str:
    """Replace `\\text{x}` and similar wrappers by their content, innermost first.

    >>> unwrap_latex("\\\\textbf{\\\\text{B}}")
    'B'
    """
    previous = None
    while previous != text:
        previous, text = text, _LATEX_WRAPPER.sub(r"\1", text)
    return text


def normalize_text(text: str) -> str:
    """Canonical form of a free-text answer, used for text and option-text matching.

    Steps, in order: unwrap LaTeX text wrappers (`\\text{}`, `\\textbf{}`, `\\mathrm{}`,
    ...); lowercase (casefold); collapse runs of whitespace to one space; strip
    surrounding punctuation, brackets and quotes; drop one leading article
    ("a", "an", "the") when more words follow. Inner punctuation is kept.

    >>> normalize_text('  "The  \\\\text{Red} Car." ')
    'red car'
    """
    text = _WHITESPACE.sub(" ", unwrap_latex(text).casefold()).strip(_EDGE_JUNK)
    return _LEADING_ARTICLE.sub("", text)


# ---------------------------------------------------------------- numbers

_NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_ONLY = re.compile(rf"^\$?\s*({_NUMBER})\s*\$?$")
_NUMBER_WITH_UNIT = re.compile(rf"^\$?\s*({_NUMBER})\s*\$?\s*([^\d\s][^\d]*)?$")


def parse_number(text: str, *, allow_unit: bool = True) -> float | None:
    """Parse one number written in plain text; None when `text` is not exactly that.

    Accepted: a sign (`+`, `-`, `−`), digits with optional comma thousands separators in
    groups of three (`1,234,567`), a decimal part (`12.0`, `.5`), an exponent (`1e3`),
    optional `$` delimiters and LaTeX text wrappers. With `allow_unit`, a trailing unit
    that holds no digit is ignored without conversion (`12 cm`, `3.5 m/s`, `45°`,
    `20%`). Rejected: anything else, e.g. two numbers (`3 to 5`), fractions (`3/4`),
    words (`twelve`), ambiguous separators (`1,23`), infinities and NaN.

    >>> parse_number("1,234.5")
    1234.5
    >>> parse_number("12 cm") == 12.0, parse_number("12 cm", allow_unit=False)
    (True, None)
    """
    stripped = unwrap_latex(text).strip()
    match = (_NUMBER_WITH_UNIT if allow_unit else _NUMBER_ONLY).match(stripped)
    if match is None or not any(ch.isdigit() for ch in match.group(1)):
        return None
    literal = match.group(1).replace(",", "").replace("−", "-")
    try:
        value = float(literal)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- choice letters

# Option letters in order: the option at index i is `CHOICE_LETTERS[i]`.
CHOICE_LETTERS = string.ascii_uppercase


def choice_letter(index: int) -> str:
    """The letter of the option at 0-based `index` ("A" for 0).

    >>> choice_letter(0), choice_letter(3)
    ('A', 'D')
    """
    if not 0 <= index < len(CHOICE_LETTERS):
        raise ValueError(f"option index must be in 0..{len(CHOICE_LETTERS) - 1}, got {index}")
    return CHOICE_LETTERS[index]


def choice_index(letter: str) -> int:
    """The 0-based index of the option named by an upper-case `letter` (0 for "A")."""
    index = CHOICE_LETTERS.find(letter)
    if len(letter) != 1 or index < 0:
        raise ValueError(f"an option letter is one of A..Z, got {letter!r}")
    return index


_BARE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.:)]?$")
_NAMED_LETTER = re.compile(r"^(?:option|choice|answer)\s*[:\-]?\s*\(?([A-Za-z])\)?[.:)]?$", re.IGNORECASE)
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Z])(?:\)|[.:])\s+\S")


def bare_letter(text: str) -> str | None:
    """The upper-cased letter when `text` is a lone option letter (`B`, `b`, `(B)`, `B.`, `B)`), else None.

    >>> bare_letter("(b)"), bare_letter("Option B")
    ('B', None)
    """
    match = _BARE_LETTER.match(unwrap_latex(text).strip())
    return match.group(1).upper() if match else None


def extract_letter(text: str) -> str | None:
    """The option letter a choice answer names, upper-cased, or None.

    Accepts the forms of `bare_letter`, `Option B`, `Answer: (b)`, and an upper-case
    letter followed by option text (`B. a red car`, `(B) a red car`).

    >>> extract_letter("Answer: (b)"), extract_letter("B. a red car"), extract_letter("blue")
    ('B', 'B', None)
    """
    text = unwrap_latex(text).strip()
    for pattern in (_BARE_LETTER, _NAMED_LETTER, _LETTER_THEN_TEXT):
        match = pattern.match(text)
        if match:
            return match.group(1).upper()
    return None


def letter_of_option_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the first option whose `normalize_text` form equals `text`'s, or None.

    >>> letter_of_option_text("The dog.", ["cat", "dog"])
    'B'
    """
    wanted = normalize_text(text)
    for index, option in enumerate(choices):
        if normalize_text(option) == wanted:
            return choice_letter(index)
    return None


def random_choice_letter(rng: np.random.Generator, n_choices: int) -> str:
    """A letter among the first `n_choices`, drawn from the numpy generator `rng`."""
    return choice_letter(int(rng.integers(n_choices)))


_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])(?:\)|[.:])\s*(.+?)\s*$")
_INLINE_OPTION = re.compile(r"\(([A-Z])\)\s*")


def parse_choices(question: str) -> tuple[str, ...]:
    """The option texts a question lists, in order from A, or () when it lists none.

    Options are lines such as `A. cat`, `(A) cat`, `A) cat`, `A: cat` (the longest run
    A, B, C, ... of such lines), or, failing that, inline `(A) cat (B) dog`. At least
    two options are needed.

    >>> parse_choices("Which animal?\\n(A) cat\\n(B) dog")
    ('cat', 'dog')
    >>> parse_choices("Which animal? (A) cat, (B) dog")
    ('cat', 'dog')
    """
    lined = _choices_from_lines(question)
    return lined if len(lined) >= 2 else _choices_inline(question)


def _choices_from_lines(question: str) -> tuple[str, ...]:
    """Options written one per line, the first run that starts at A."""
    options: list[str] = []
    for line in question.splitlines():
        match = _OPTION_LINE.match(line)
        if match and choice_index(match.group(1)) == len(options):
            options.append(match.group(2))
        elif options and match and match.group(1) == choice_letter(0):
            options = [match.group(2)]
    return tuple(options)


def _choices_inline(question: str) -> tuple[str, ...]:
    """Options written inline as `(A) ... (B) ...`."""
    pieces = _INLINE_OPTION.split(question)
    letters, texts = pieces[1::2], pieces[2::2]
    if len(letters) < 2 or letters != list(CHOICE_LETTERS[: len(letters)]):
        return ()
    return tuple(text.strip().rstrip(",;").strip() for text in texts)


def option_lines(choices: Sequence[str]) -> str:
    """The options one per line, `A. text`, as built-in families list them.

    >>> print(option_lines(["red", "blue"]))
    A. red
    B. blue
    """
    return "\n".join(f"{choice_letter(i)}. {text}" for i, text in enumerate(choices))


def inline_options(choices: Sequence[str]) -> str:
    """The options on one line, `(A) text (B) text`.

    >>> inline_options(["red", "blue"])
    '(A) red (B) blue'
    """
    return " ".join(f"({choice_letter(i)}) {text}" for i, text in enumerate(choices))
