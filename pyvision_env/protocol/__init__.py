"""The PyVision text protocol: parsing model turns, rendering observations, building prompts."""

from pyvision_env.protocol.parsing import Turn, TurnKind, extract_boxed, extract_code, parse_turn
from pyvision_env.protocol.prompts import (
    DEFAULT_PROMPT_TYPE,
    ImageInfo,
    PromptBuilder,
    build_prompt,
    default_prompt_type,
    fill_template,
    frame_parts,
    load_prompt_templates,
    prompt_values,
)
from pyvision_env.protocol.render import (
    CHAT_FORMS,
    FORMAT_ERROR_MESSAGE,
    ChatForm,
    image_part,
    parts_images,
    parts_to_text,
    render_cell,
    render_format_error,
    text_part,
    truncate_middle,
)

__all__ = [
    "CHAT_FORMS",
    "DEFAULT_PROMPT_TYPE",
    "FORMAT_ERROR_MESSAGE",
    "ChatForm",
    "ImageInfo",
    "PromptBuilder",
    "Turn",
    "TurnKind",
    "build_prompt",
    "default_prompt_type",
    "extract_boxed",
    "extract_code",
    "fill_template",
    "frame_parts",
    "image_part",
    "load_prompt_templates",
    "parse_turn",
    "parts_images",
    "parts_to_text",
    "prompt_values",
    "render_cell",
    "render_format_error",
    "text_part",
    "truncate_middle",
]
