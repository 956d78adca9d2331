"""The transcript: both chat forms, the counters, and snapshots that later turns never change."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pyvision_env.media.tokens import PYVISION_RL_RULE, count_visual_tokens
from pyvision_env.transcript import CHARS_PER_TOKEN, Transcript


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def image(height: int = 56, width: int = 84) -> dict:
    return {"type": "image", "image": np.zeros((height, width, 3), dtype=np.uint8)}


def structure(messages: list[dict]) -> list:
    """Roles, texts and image identities: what a snapshot must keep."""
    return [(m["role"], [p.get("text", id(p.get("image"))) for p in m["content"]]) for m in messages]


def test_observation_form_gives_each_observation_its_own_message():
    chat = Transcript([text("<image_clue_0>"), image(), text("Q")], num_input_images=1)
    chat.add_action("code 1")
    chat.add_observation([text("<interpreter>"), image(28, 28), text("</interpreter>")])
    chat.add_action("code 2")
    chat.add_observation([text("<interpreter>ok</interpreter>")])
    assert [m["role"] for m in chat.snapshot()] == [
        "user", "assistant", "observation", "assistant", "observation"]
    assert (chat.turns, chat.num_images, chat.num_figures, chat.next_clue) == (2, 2, 1, 2)


def test_inline_form_continues_the_assistant_message():
    chat = Transcript([text("Q")], chat_form="inline")
    chat.add_action("a1")
    chat.add_observation([text("o1")])
    chat.add_action("a2")
    chat.add_observation([text("o2")])
    (user, assistant) = chat.snapshot()
    assert user["role"] == "user" and assistant["role"] == "assistant"
    assert [part["text"] for part in assistant["content"]] == ["a1", "o1", "a2", "o2"]
    assert chat.turns == 2


def test_counters_add_up_text_and_visual_tokens():
    chat = Transcript([text("abc"), image(56, 84)])
    chat.add_action("12345")
    chat.add_observation([image(280, 280), text("xy")])
    tokens = (count_visual_tokens(56, 84, PYVISION_RL_RULE)
              + count_visual_tokens(280, 280, PYVISION_RL_RULE))
    assert chat.text_chars == 10 and chat.visual_tokens == tokens
    assert chat.context_tokens == tokens + int(np.ceil(10 / CHARS_PER_TOKEN))
    assert chat.image_room(3) == 1 and chat.image_room(1) == 0


def test_prompt_images_are_not_figures_and_clues_start_after_the_inputs():
    chat = Transcript([text("Q")], num_input_images=2)  # images in the sandbox, not the prompt
    assert (chat.num_images, chat.next_clue) == (0, 2)
    chat.add_action("a")
    chat.add_observation([image()])
    assert (chat.num_images, chat.num_figures, chat.next_clue) == (1, 1, 3)


@pytest.mark.parametrize("form", ["observation", "inline"])
def test_a_snapshot_never_changes_after_later_turns(form):
    chat = Transcript([text("Q"), image()], chat_form=form)
    chat.add_action("a1")
    chat.add_observation([text("o1")])
    snapshot = chat.snapshot()
    before = structure(snapshot)
    chat.add_action("a2")
    chat.add_observation([text("o2"), image()])
    assert structure(snapshot) == before
    assert structure(chat.snapshot())[: len(before) - 1] == before[:-1]
    assert structure(chat.snapshot()) != before


@pytest.mark.parametrize("form", ["observation", "inline"])
def test_changing_a_snapshot_does_not_change_the_transcript(form):
    chat = Transcript([text("Q")], chat_form=form)
    chat.add_action("a1")
    before = copy.deepcopy(chat.snapshot())
    snapshot = chat.snapshot()
    snapshot[-1]["content"].append(text("injected"))
    snapshot[0]["content"][0]["text"] = "changed"
    snapshot.append({"role": "user", "content": []})
    assert chat.snapshot() == before


def test_a_snapshot_shares_image_arrays():
    prompt_image = image()
    chat = Transcript([prompt_image])
    assert chat.snapshot()[0]["content"][0]["image"] is prompt_image["image"]


def test_to_text_puts_a_placeholder_for_each_image():
    chat = Transcript([text("Q "), image()])
    chat.add_action("look")
    assert chat.to_text() == "[user]\nQ <image>\n[assistant]\nlook"
