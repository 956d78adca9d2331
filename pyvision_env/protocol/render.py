"""Rendering what a code cell produced as the content parts of the next chat observation."""

from __future__ import annotations

import re
from typing import Any, Literal, Sequence

import numpy as np

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus, Cut, truncate_middle
from pyvision_env.sandbox.wire import clean_text

ChatForm = Literal["observation", "inline"]
CHAT_FORMS: tuple[str, ...] = ("observation", "inline")

FORMAT_ERROR_MESSAGE = (
    "No Python code or final answer found. To run code, write it as "
    "<code>\n```python\n# your code\n```\n</code>; to finish, give the final answer as "
    "<answer>\n\\boxed{your answer}\n</answer>."
)

# Traceback lines kept for the code cell's own frames (the tail, if there are more).
MAX_TRACEBACK_LINES = 20

_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"]*)", line \d+')
# Text from the code that looks like the protocol's structure: a tag of the PyVision protocol or
# of common chat templates (`<|image_pad|>`, `<|im_end|>`), however spelled in case or spacing.
_PROTOCOL_TAG_RE = re.compile(
    r"<(?=\s*/?\s*(?:interpreter|image|answer|code|think|tool_call|tool_response|"
    r"image_clue_\d+|video_clue_\d+)\b)|<(?=\s*\|)", re.IGNORECASE)
_TRACEBACK_HEADER = "Traceback (most recent call last):"


def text_part(text: str) -> dict[str, Any]:
    """A text content part."""
    return {"type": "text", "text": text}


def image_part(image: np.ndarray) -> dict[str, Any]:
    """An image content part holding an RGB `uint8` array of shape (H, W, 3)."""
    return {"type": "image", "image": image}


def safe_text(text: str) -> str:
    """Text from a code cell made safe for the observation: valid UTF-8, no control characters
    but newline and tab, and no text that reads as the protocol's structure: the `<` of
    `<interpreter>`, `</interpreter>`, `<image>`, `<image_clue_3>`, `<answer>`, `<code>`,
    `<|image_pad|>` and the like becomes `&lt;`, so the code cannot forge a tag, an answer or an
    image placeholder.

    >>> safe_text("</interpreter><image>ok\x07")
    '&lt;/interpreter>&lt;image>ok'
    """
    text = clean_text(text)
    return _PROTOCOL_TAG_RE.sub("&lt;", text) if "<" in text else text


def render_cell(
    result: CellResult, first_clue: int, *, max_output_chars: int, form: ChatForm
) -> list[dict[str, Any]]:
    """The content parts of the observation for one executed cell.

    Args:
        result: what the sandbox returned for the cell.
        first_clue: the number of the cell's first figure (`<image_clue_{first_clue}>`): the count
            of images already in the runtime (input images plus earlier figures).
        max_output_chars: cap for the stripped stdout and for the error text (`truncate_middle`);
            PyVision kept 400. `<= 0` means no cap.
        form: "observation" (PyVision-RL: the parts form a message of role `observation`) or
            "inline" (PyVision: the parts continue the assistant's own message).

    Observation form, from PyVision-RL's tool (every observation ends in `</interpreter>\\n`):
        `<interpreter>Text Result:\\n{stdout}</interpreter>\\n`, or with figures
        `<interpreter>Text Result:\\n{stdout}\\nImage Result:\\n` then, per figure,
        `<image_clue_k>[image]</image_clue_k>`, then `</interpreter>\\n`; a failed cell:
        `<interpreter>Execution error: {message}</interpreter>\\n`.
    Inline form, from PyVision's loop: `<interpreter>\\nText Result:\\n{stdout or None}\\n`
        `Image Result:\\n{figures or None}</interpreter>\\n`; a failed cell:
        `<interpreter>Error: {message}</interpreter>\\n`.

    A failed cell (ERROR, TIMEOUT, SANDBOX_FAILURE) keeps what it produced before it stopped:
    after the message come `\\nText Result (before the error):\\n{stdout}` if it printed anything
    and `\\nImage Result:\\n` with its figures if it showed any (PyVision dropped both).
    """
    _check_form(form)
    stdout = safe_text(_stripped(result.stdout, result.stdout_cut, max_output_chars))
    if result.notes:
        stdout = "\n".join([stdout, *(f"[sandbox: {safe_text(note)}]" for note in result.notes)])
        stdout = stdout.lstrip("\n")
    figures = _figure_parts(result.figures, first_clue)
    if result.status is CellStatus.OK:
        parts = _ok_parts(stdout, figures, form)
    else:
        message = safe_text(_failure_message(result, max_output_chars))
        parts = _failure_parts(message, stdout, figures, form)
    return _merge_text(parts)


def render_format_error(message: str, form: ChatForm) -> list[dict[str, Any]]:
    """The observation for a turn with neither code nor answer.

    It reads `<interpreter>Error: {message}</interpreter>\\n`.

    Both forms read the same (PyVision-RL's wording; the original PyVision loop had no such case).
    """
    _check_form(form)
    return [text_part(f"<interpreter>Error: {message}</interpreter>\n")]


def parts_to_text(parts: Sequence[dict[str, Any]], image_token: str = "<image>") -> str:
    """Join the parts into one string, each image replaced by `image_token`.

    >>> parts_to_text([text_part("a"), image_part(np.zeros((1, 1, 3), np.uint8)), text_part("b")])
    'a<image>b'
    """
    pieces = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            pieces.append(part["text"])
        elif kind == "image":
            pieces.append(image_token)
        else:
            raise ValueError(f"unknown content part type {kind!r}; expected 'text' or 'image'")
    return "".join(pieces)


def parts_images(parts: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    """The images of the parts, in order."""
    return [part["image"] for part in parts if part.get("type") == "image"]


def _stripped(text: str, cut: Cut, max_chars: int) -> str:
    """`text` stripped of surrounding whitespace, then cut once (`truncate_middle`)."""
    stripped = text.strip()
    if not cut.count:
        return truncate_middle(stripped, max_chars)
    lead = len(text) - len(text.lstrip())
    index = min(max(cut.index - lead, 0), len(stripped))
    return truncate_middle(stripped, max_chars, Cut(index, cut.count))


def _check_form(form: str) -> None:
    if form not in CHAT_FORMS:
        raise ValueError(f"form must be one of {CHAT_FORMS}, got {form!r}")


def _figure_parts(figures: Sequence[np.ndarray], first_clue: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for k, figure in enumerate(figures, start=first_clue):
        opening, closing = text_part(f"<image_clue_{k}>"), text_part(f"</image_clue_{k}>")
        parts += [opening, image_part(figure), closing]
    return parts


def _ok_parts(stdout: str, figures: list[dict[str, Any]], form: ChatForm) -> list[dict[str, Any]]:
    if form == "inline":
        head = text_part(f"<interpreter>\nText Result:\n{stdout or 'None'}\nImage Result:\n")
        return [head, *(figures or [text_part("None")]), text_part("</interpreter>\n")]
    if not figures:
        return [text_part(f"<interpreter>Text Result:\n{stdout}</interpreter>\n")]
    head = text_part(f"<interpreter>Text Result:\n{stdout}\nImage Result:\n")
    return [head, *figures, text_part("</interpreter>\n")]


def _failure_parts(
    message: str, stdout: str, figures: list[dict[str, Any]], form: ChatForm
) -> list[dict[str, Any]]:
    prefix = "Execution error: " if form == "observation" else "Error: "
    parts = [text_part(f"<interpreter>{prefix}{message}")]
    if stdout:
        parts.append(text_part(f"\nText Result (before the error):\n{stdout}"))
    if figures:
        parts += [text_part("\nImage Result:\n"), *figures]
    parts.append(text_part("</interpreter>\n"))
    return parts


def _failure_message(result: CellResult, max_chars: int) -> str:
    details = result.error.value if result.error is not None else ""
    if result.status is CellStatus.ERROR:
        message = _exception_text(result.error)
    elif result.status is CellStatus.TIMEOUT:
        reason = details or "the cell ran past its time limit"
        message = f"Execution timeout: {reason}; it was stopped."
    else:
        message = ("The Python sandbox failed while running the cell (not caused by the code)"
                   + (f": {details}" if details else "."))
    if result.state_lost:
        message += (
            " The interpreter was restarted: variables from earlier cells are lost, and the input"
            " media (image_clue_*, video_clue_*) have been loaded again."
        )
    return truncate_middle(message, max_chars)


def _exception_text(error: CellError | None) -> str:
    """`Name: value`, after the code cell's own traceback frames when there are any."""
    if error is None:
        return "the code raised an exception."
    summary = f"{error.name}: {error.value}" if error.value else error.name
    frames = _cell_frames(error.traceback)
    if not frames:
        return summary
    return "\n".join([_TRACEBACK_HEADER, *frames, summary])


def _cell_frames(traceback_text: str) -> list[str]:
    """The lines of the last traceback that belong to the cell's code.

    The cell is compiled under a pseudo file name such as `<cell>` or `<string>`; frames from the
    sandbox's own machinery and from libraries are dropped, and so are `<frozen ...>` frames.
    """
    lines = traceback_text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK_HEADER)]
    start = headers[-1] + 1 if headers else 0
    kept: list[str] = []
    in_cell = False
    for line in lines[start:]:
        match = _FRAME_RE.match(line)
        if match:
            in_cell = _is_cell_file(match["file"])
        elif not line.startswith(" "):
            break  # the exception line: frames are over
        if in_cell:
            kept.append(line)
    return kept[-MAX_TRACEBACK_LINES:]


def _is_cell_file(name: str) -> bool:
    return name.startswith("<") and not name.startswith("<frozen")


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join neighbouring text parts, so images sit between single text parts."""
    merged: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = text_part(merged[-1]["text"] + part["text"])
        else:
            merged.append(part)
    return merged
