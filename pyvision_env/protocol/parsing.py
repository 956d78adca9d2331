"""Reading one model turn: find the final answer or the code cell in the text, PyVision style."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Literal

TurnKind = Literal["answer", "code", "none"]

# The last complete <answer>...</answer> block, as PyVision-RL's `extract_answer` reads it.
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

# A fence opens with ```python, ```python3 or ```py; a bare ``` never opens a code cell
# (PyVision's regexes require the `python` tag).
_LANG = r"```(?:python3?|py)\b"

# <code> + fenced block + </code>. The body may not cross into another <code>, and it ends only
# at a fence directly followed by </code>, so ``` inside a string in the code is kept.
_CODE_TAG_RE = re.compile(r"<code>\s*" + _LANG + r"((?:(?!<code>).)*?)```\s*</code>", re.DOTALL)

# Fallback 1: a fenced block whose closing ``` stands alone on its line (nested ``` mid-line kept).
_FENCE_LINE_RE = re.compile(
    _LANG + r"((?:(?!" + _LANG + r").)*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE
)

# Fallback 2: PyVision's own rule, the body up to the next ``` (covers one-line blocks).
_FENCE_ANY_RE = re.compile(_LANG + r"(.*?)```", re.DOTALL)

_BOXED_RE = re.compile(r"\\boxed\s*\{")


@dataclass(frozen=True)
class Turn:
    """What one model turn asks for.

    Attributes:
        code: the code cell to run (dedented, stripped), or None when the turn has none.
            It is filled even when an answer is present; act on `kind`, which puts the answer first.
        answer: the final answer: the stripped content of the last `\\boxed{...}` in the chosen
            answer block; None when there is no answer block or it holds no (balanced) boxed
            value (graders read the boxed answer only, as PyVision-RL's reward does).
        answer_block: the raw inner text of the chosen (last, non-blank) `<answer>` block.
    """

    code: str | None
    answer: str | None
    answer_block: str | None

    @property
    def kind(self) -> TurnKind:
        """"answer" if the turn ends the episode, "code" if it has a cell to run, else "none"."""
        if self.answer_block is not None:
            return "answer"
        if self.code is not None:
            return "code"
        return "none"


def parse_turn(text: str) -> Turn:
    """Parse one assistant turn (PyVision's grammar).

    Rules:

    - Line endings are normalised (CRLF and CR become LF) before anything else.
    - Answer: the LAST complete `<answer>...</answer>` block, wherever it sits; it wins over code
      and ends the episode. Its value is the last `\\boxed{}` in it (None without one).
      A block holding only whitespace is no answer (as in PyVision-RL, where an empty answer
      falls through to code). An unterminated `<answer>` (no closing tag) is not an answer,
      exactly like PyVision's regex: the turn is then read for code, else it is a format error.
    - Code: see `extract_code`.

    >>> parse_turn("<code>\\n```python\\nprint(1)\\n```\\n</code>").code
    'print(1)'
    >>> parse_turn("<answer>\\n\\\\boxed{B}\\n</answer>").kind
    'answer'
    """
    text = _normalize_newlines(text)
    block = _last_answer_block(text)
    answer = None if block is None else _answer_value(block)
    return Turn(code=extract_code(text), answer=answer, answer_block=block)


def extract_code(text: str) -> str | None:
    """Return the code cell of a turn, or None.

    The last `<code>` + fenced python block + `</code>` wins; without one, the last fenced python
    block anywhere (one closed by a `` ``` `` line first, else PyVision's "up to the next `` ``` ``"
    rule). A fence counts when tagged `` ```python ``, `` ```python3 `` or `` ```py ``; a bare
    `` ``` `` fence does not, as in PyVision's regexes. The body is dedented and stripped; a body
    of only whitespace is no code.
    """
    text = _normalize_newlines(text)
    for pattern in (_CODE_TAG_RE, _FENCE_LINE_RE, _FENCE_ANY_RE):
        bodies = pattern.findall(text)
        if bodies:
            code = textwrap.dedent(bodies[-1]).strip()
            return code or None
    return None


def extract_boxed(text: str) -> str | None:
    """Return the content of the LAST `\\boxed{...}` in `text`, braces balanced.

    Nested braces are followed (`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`) and escaped braces
    `\\{ \\}` do not count. Returns None when there is no `\\boxed{` or the last one never closes.
    `\\fbox` is not read: PyVision's graders only look for `\\boxed`.

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    """
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    return _balanced_content(text, starts[-1])


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _last_answer_block(text: str) -> str | None:
    end = text.rfind("</answer>")
    if end < 0:
        return None
    # Searching only up to the last closing tag keeps unclosed openings after it from costing n^2.
    blocks = _ANSWER_RE.findall(text, 0, end + len("</answer>"))
    if not blocks or not blocks[-1].strip():
        return None
    return blocks[-1]


def _answer_value(block: str) -> str | None:
    boxed = extract_boxed(block)
    return None if boxed is None else boxed.strip()


def _balanced_content(text: str, start: int) -> str | None:
    """The text from `start` up to the brace that closes an already-open `{`, or None."""
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None
