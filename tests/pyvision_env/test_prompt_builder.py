"""`PromptBuilder`: template choice, frames shown up front, images shown or only described."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyvision_env.media.episode import EpisodeMedia, Frame
from pyvision_env.media.video import VideoMeta
from pyvision_env.protocol import PromptBuilder, default_prompt_type, parts_to_text

IMAGE = np.zeros((30, 40, 3), dtype=np.uint8)
VIDEO = VideoMeta(width=64, height=48, num_frames=40, fps=10.0, duration=4.0)


@pytest.mark.parametrize(
    "images, videos, shown, expected",
    [(True, False, True, "image"), (True, False, False, "image_no_hint"),
     (False, True, True, "video"), (True, True, True, "image")],
)
def test_default_prompt_type(images, videos, shown, expected):
    assert default_prompt_type(has_images=images, has_videos=videos,
                               image_in_prompt=shown) == expected


def test_image_prompt_shows_the_image_then_the_instruction():
    parts = PromptBuilder.load().build("THE QUESTION", EpisodeMedia(images=(IMAGE,)))
    assert parts[1]["image"] is IMAGE
    text = parts_to_text(parts)
    assert text.startswith("<image_clue_0><image></image_clue_0>") and "THE QUESTION" in text


def test_no_hint_prompt_gives_only_the_size():
    parts = PromptBuilder.load(image_in_prompt=False).build("Q", EpisodeMedia(images=(IMAGE,)))
    assert all(part["type"] == "text" for part in parts)
    assert "40" in parts_to_text(parts) and "30" in parts_to_text(parts)


def test_video_prompt_puts_initial_frames_first_with_index_and_time():
    frames = (Frame(5, 0.5, IMAGE), Frame(15, 1.5, IMAGE))
    parts = PromptBuilder.load().build("Q", EpisodeMedia(videos=(VIDEO,), frames=frames))
    text = parts_to_text(parts)
    assert text.startswith("2 frames sampled uniformly from video_clue_0")
    assert "Frame 5 (t=0.50s): <image>" in text and "Frame 15 (t=1.50s): <image>" in text
    assert text.index("Frame 15") < text.index("Video Length: 40")


def test_a_template_file_and_type_are_used_and_checked(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"mine": "Answer {query} on a {width}x{height} image"}))
    builder = PromptBuilder.load(path, "mine")
    assert parts_to_text(builder.build("Q?", EpisodeMedia(images=(IMAGE,)))).endswith(
        "Answer Q? on a 40x30 image")
    with pytest.raises(ValueError, match=r"prompt_type 'image' .* pass one of \['mine'\]"):
        PromptBuilder.load(path).build("Q", EpisodeMedia(images=(IMAGE,)))
    with pytest.raises(ValueError, match=r"pass one of \['mine'\]"):
        PromptBuilder.load(path, "other")
