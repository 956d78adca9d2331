"""Media helpers: loading images and an episode's media, video metadata, visual-token accounting."""

from pyvision_env.media.episode import EpisodeMedia, Frame, load_media
from pyvision_env.media.images import load_image, to_array
from pyvision_env.media.tokens import (
    PYVISION_RL_RULE,
    VisualTokenRule,
    count_visual_tokens,
    smart_resize,
)
from pyvision_env.media.video import VideoMeta

__all__ = [
    "PYVISION_RL_RULE",
    "EpisodeMedia",
    "Frame",
    "VideoMeta",
    "VisualTokenRule",
    "count_visual_tokens",
    "load_image",
    "load_media",
    "smart_resize",
    "to_array",
]
