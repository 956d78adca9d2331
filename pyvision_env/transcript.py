"""The chat of one episode in either chat form, and what it counts: turns, cells, images, tokens."""

from __future__ import annotations

import math
from typing import Any, Sequence

from pyvision_env.media.tokens import PYVISION_RL_RULE, VisualTokenRule, count_visual_tokens
from pyvision_env.protocol.render import ChatForm, parts_to_text

Part = dict[str, Any]  # {"type": "text", "text": str} or {"type": "image", "image": ndarray}
Message = dict[str, Any]  # {"role": str, "content": list[Part]}

CHARS_PER_TOKEN = 3.5  # the text-token estimate of `context_tokens`


class Transcript:
    """The messages of one episode, from the prompt on, and their counters.

    In the "observation" form (PyVision-RL) each model turn is an assistant message and each
    observation a message of role "observation". In the "inline" form (PyVision) observations
    continue the assistant's message, and the next turn's text is appended to it too.

    Attributes:
        chat_form: "observation" or "inline".
        num_input_images: images in the sandbox from the start (`image_clue_0..n-1`).
        turns: model turns added.
        num_code_cells: cells the policy ran (counted by the env via `count_cell`).
        num_figures: figures returned by cells, so far.
        num_images: images in the context (prompt images and frames, then figures).
        visual_tokens: the token estimate of those images under `token_rule`.
        text_chars: characters of text in the context.

    >>> chat = Transcript([{"type": "text", "text": "Q?"}], chat_form="inline")
    >>> chat.add_action("<code>...</code>")
    >>> chat.add_observation([{"type": "text", "text": "<interpreter>1</interpreter>"}])
    >>> [message["role"] for message in chat.snapshot()], chat.turns, chat.text_chars
    (['user', 'assistant'], 1, 46)
    """

    def __init__(
        self,
        prompt: Sequence[Part],
        *,
        chat_form: ChatForm = "observation",
        num_input_images: int = 0,
        token_rule: VisualTokenRule = PYVISION_RL_RULE,
    ) -> None:
        self.chat_form = chat_form
        self.num_input_images = num_input_images
        self.token_rule = token_rule
        self.turns = 0
        self.num_code_cells = 0
        self.num_figures = 0
        self.num_images = 0
        self.visual_tokens = 0
        self.text_chars = 0
        self._messages: list[Message] = [{"role": "user", "content": list(prompt)}]
        self._count(prompt)

    @property
    def next_clue(self) -> int:
        """The number of the next figure (`image_clue_k`): the images already in the runtime."""
        return self.num_input_images + self.num_figures

    @property
    def context_tokens(self) -> int:
        """Estimated context length: visual tokens + text characters / `CHARS_PER_TOKEN`."""
        return self.visual_tokens + math.ceil(self.text_chars / CHARS_PER_TOKEN)

    def image_room(self, max_images: int) -> int:
        """How many more images fit under `max_images`."""
        return max(max_images - self.num_images, 0)

    def add_action(self, text: str) -> None:
        """Add the model's text for one turn."""
        self.turns += 1
        part = {"type": "text", "text": text}
        last = self._messages[-1]
        if self.chat_form == "inline" and last["role"] == "assistant":
            last["content"].append(part)
        else:
            self._messages.append({"role": "assistant", "content": [part]})
        self.text_chars += len(text)

    def add_observation(self, parts: Sequence[Part]) -> None:
        """Add what the turn produced; its images count as figures."""
        if self.chat_form == "inline":
            self._messages[-1]["content"].extend(parts)
        else:
            self._messages.append({"role": "observation", "content": list(parts)})
        self.num_figures += self._count(parts)

    def count_cell(self) -> None:
        """Count one code cell the policy ran."""
        self.num_code_cells += 1

    def snapshot(self) -> list[Message]:
        """The messages as new lists and dicts: later turns never change a snapshot taken now.

        Image arrays are shared, not copied (nothing here writes to them).
        """
        return [
            {**message, "content": [dict(part) for part in message["content"]]}
            for message in self._messages
        ]

    def to_text(self) -> str:
        """The transcript as text, one `[role]` header per message, `<image>` for images."""
        return "\n".join(
            f"[{message['role']}]\n{parts_to_text(message['content'])}"
            for message in self._messages
        )

    def _count(self, parts: Sequence[Part]) -> int:
        """Add the parts' text and images to the counters; return the number of images."""
        images = 0
        for part in parts:
            if part["type"] == "image":
                height, width = part["image"].shape[:2]
                images += 1
                self.visual_tokens += count_visual_tokens(height, width, self.token_rule)
            else:
                self.text_chars += len(part["text"])
        self.num_images += images
        return images
