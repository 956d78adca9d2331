"""A Griffe extension for the docs build: bare doctest blocks render as code.

Docstrings here put short `>>>` examples straight in the text (pytest's doctest runs them);
Google style only renders them as code inside an `Examples:` section, and Markdown reads a
bare `>>>` as three nested quotes. This fences each bare block (from a `>>>` line to the next
blank line) as `pycon`, leaving the docstrings in the source as they are.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """Wrap every doctest block that starts at column 0 in a ```` ```pycon ```` fence.

    >>> fence_doctests("Add.\\n>>> 1 + 1\\n2\\n\\nDone.")
    'Add.\\n\\n```pycon\\n>>> 1 + 1\\n2\\n```\\n\\nDone.'
    """
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        if not in_block and line.startswith(">>>"):
            if out and out[-1].strip():
                out.append("")  # a fence must not continue a paragraph
            out.append("```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class FenceDoctests(griffe.Extension):
    """Fence the bare doctest blocks of every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
