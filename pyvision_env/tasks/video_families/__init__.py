"""Built-in video task families: procedural clips whose decisive events last a few frames.

Each family plans a seeded clip (`draw`) that `VideoTaskFamily` renders to H.264 once and
caches (see `_clip.default_cache_dir`), and asks about something a handful of uniformly
sampled frames misses, so a model has to pull the frames it needs by code through `video_clue_0`.
"""

from __future__ import annotations

from pyvision_env.tasks.video_families._clip import CACHE_ENV, VideoTaskFamily, default_cache_dir
from pyvision_env.tasks.video_families.blink_count import BlinkCount
from pyvision_env.tasks.video_families.digit_at_time import DigitAtTime
from pyvision_env.tasks.video_families.dot_distance import DotDistance
from pyvision_env.tasks.video_families.event_order import EventOrder
from pyvision_env.tasks.video_families.flash_time import FlashTime

VIDEO_FAMILIES: dict[str, type[VideoTaskFamily]] = {
    family.name: family for family in (FlashTime, BlinkCount, EventOrder, DigitAtTime, DotDistance)
}

__all__ = [
    "CACHE_ENV",
    "VIDEO_FAMILIES",
    "BlinkCount",
    "DigitAtTime",
    "DotDistance",
    "EventOrder",
    "FlashTime",
    "VideoTaskFamily",
    "default_cache_dir",
]
