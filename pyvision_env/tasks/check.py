"""Checking a data file before use: every row loads, every image decodes, every frame of every video decodes.

The env checks a video at reset by decoding its first and last frames only; a video
corrupt in the middle passes that check, and the decode error then reaches the model as
an error of its own code. `check_data` finds such files first (`pyvision-env check-data FILE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyvision_env.media.images import load_image
from pyvision_env.media.video import VideoError, open_video
from pyvision_env.tasks.loaders import read_rows

# Frames decoded per read when checking a video.
CHUNK_FRAMES = 64
# decord prefixes its messages with "[12:00:00] /path/file.cc:292: ", as often as it rethrows.
_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


@dataclass(frozen=True)
class BadRow:
    """One problem in a data file.

    Attributes:
        row: the row's 0-based index in the file.
        task_id: the row's id, when known.
        field: the field at fault (`"video_path"`, `"mm_hint.hint_path"`, `"answer"`, ...),
            None when the row as a whole is malformed (not an object, not JSON).
        path: the media file that fails to decode, None for a malformed row.
        error: what is wrong, in words.
    """

    row: int
    task_id: str | None
    field: str | None
    path: str | None
    error: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" (id {self.task_id!r})" if self.task_id is not None else "")
        where += f", field {self.field!r}" if self.field is not None else ""
        return f"{where}: {self.error}"


def check_data(path: str | Path, *, video_backend: str | None = None) -> list[BadRow]:
    """The bad rows of a data file: malformed rows, and media that are missing or fail to decode.

    Every row is loaded as `load_tasks` would (media checked here, not by the loader),
    every image is decoded in full, and every frame of every video is decoded with the
    reader the sandbox uses (`open_video`, `video_backend` as there).

    Raises:
        DatasetError: the file itself cannot be read or is not valid JSON.
        ImportError: a row has a video and no video reader is installed.
    """
    bad: list[BadRow] = []
    for result in read_rows(path, check_media=False):
        if result.error is not None:
            error = result.error
            bad.append(BadRow(result.index, error.row_id, error.field, None, str(error)))
            continue
        task = result.task
        media = [(image, _image_error) for image in task.images]
        media += [(video, lambda p: _video_error(p, video_backend)) for video in task.videos]
        for field, (media_path, find_error) in zip(result.media_fields, media):
            error_text = find_error(media_path)
            if error_text is not None:
                bad.append(BadRow(result.index, task.id, field, str(media_path), error_text))
    return bad


def _image_error(path: Path) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes."""
    try:
        load_image(path)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    return None


def _video_error(path: Path, backend: str | None) -> str | None:
    """Why the video at `path` cannot be used, or None when every frame decodes."""
    try:
        with open_video(path, backend=backend, cache_bytes=0) as reader:
            total = len(reader)
            for start in range(0, total, CHUNK_FRAMES):
                indices = list(range(start, min(start + CHUNK_FRAMES, total)))
                if _decode_error(reader, indices) is not None:
                    index, message = _first_bad_frame(reader, indices)
                    return f"{path}: frame {index} of {total} does not decode: {message}"
    except VideoError as exc:
        return str(exc)
    return None


def _first_bad_frame(reader, indices: list[int]) -> tuple[int, str]:
    """The first of `indices` that does not decode on its own, and why (the last one if each does alone)."""
    for index in indices:
        message = _decode_error(reader, [index])
        if message is not None:
            return index, message
    return indices[-1], _decode_error(reader, indices) or "decodes alone but not in sequence"


def _decode_error(reader, indices: list[int]) -> str | None:
    """The decoder's complaint about reading `indices`, in one line, or None when they decode."""
    try:
        reader.get_batch(indices)
    except Exception as exc:  # decoder errors differ by backend
        text = _LOG_PREFIX.sub("", str(exc)).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None
