"""An episode's media, loaded and checked at reset: image arrays, video metadata, initial frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pyvision_env.media.images import ImageLike, cached_array
from pyvision_env.media.video import VideoMeta, VideoReader, open_video


@dataclass(frozen=True)
class Frame:
    """A video frame shown in the prompt: its index, its time in seconds, and its RGB pixels."""

    index: int
    seconds: float
    image: np.ndarray


@dataclass(frozen=True)
class EpisodeMedia:
    """What an episode's prompt and sandbox need from its media.

    Attributes:
        images: the input images as read-only RGB `uint8` arrays, in clue order (decoded once
            per image and shared by later episodes: `images.cached_array`).
        videos: metadata of each input video, in clue order.
        frames: frames of the first video shown up front (empty unless asked for).
    """

    images: tuple[np.ndarray, ...] = ()
    videos: tuple[VideoMeta, ...] = ()
    frames: tuple[Frame, ...] = ()


def load_media(
    images: Sequence[ImageLike], videos: Sequence[Path], *, initial_frames: int = 0
) -> EpisodeMedia:
    """Read every image, open every video to check it and read its metadata.

    Args:
        images: files or PIL images, in clue order.
        videos: video files, in clue order (needs the `video` extra).
        initial_frames: this many uniformly spaced frames of the first video are read too.

    Raises:
        FileNotFoundError / ValueError (`VideoError` included): a file is missing or unreadable;
            the message names it.
    """
    arrays = tuple(cached_array(source) for source in images)
    metas: list[VideoMeta] = []
    frames: tuple[Frame, ...] = ()
    for path in videos:
        with open_video(path, cache_bytes=0) as reader:
            metas.append(reader.meta)
            if initial_frames and not frames:
                frames = uniform_frames(reader, initial_frames)
    return EpisodeMedia(arrays, tuple(metas), frames)


def uniform_frames(reader: VideoReader, count: int) -> tuple[Frame, ...]:
    """`count` uniformly spaced frames (segment centres, as uniform VLM sampling does); fewer
    when the video is shorter than `count` frames."""
    total = len(reader)
    indices = sorted({min(total - 1, int((i + 0.5) * total / count)) for i in range(count)})
    batch = reader.get_batch(indices).asnumpy()
    fps = reader.get_avg_fps()
    return tuple(Frame(index, index / fps, np.ascontiguousarray(frame))
                 for index, frame in zip(indices, batch))
