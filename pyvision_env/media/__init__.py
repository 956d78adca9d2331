"""Media helpers: loading images, converting to arrays, visual-token accounting."""

from pyvision_env.media.images import load_image, to_array
from pyvision_env.media.tokens import (
    PYVISION_RL_RULE,
    VisualTokenRule,
    count_visual_tokens,
    smart_resize,
)

__all__ = [
    "PYVISION_RL_RULE",
    "VisualTokenRule",
    "count_visual_tokens",
    "load_image",
    "smart_resize",
    "to_array",
]
