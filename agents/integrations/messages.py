"""A message-level face of any registered env: `reset() -> messages`, `step(text) -> new messages`."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
from PIL import Image

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_env import info as keys

ImageType = Literal["pil", "array"]


class MessageStep(NamedTuple):
    """What `MessageEnv.step` returns: unpacks as `(messages, reward, done, info)`.

    Attributes:
        messages: the messages the env added after the model's turn (the observation message;
            empty when the episode ended with an answer).
        reward: the env's reward for the turn (the episode's reward on its last turn, else 0).
        done: the episode is over (terminated or truncated; `info["end_reason"]` says why).
        info: the env's `info` (see `pyvision_env.info`).
    """

    messages: list[dict[str, Any]]
    reward: float
    done: bool
    info: dict[str, Any]


class MessageEnv:
    """One env seen as a chat: the caller sends the model's text, gets back chat messages.

    Messages are in the HF/OpenAI multimodal format, `{"role", "content": [{"type": "text",
    "text"} | {"type": "image", "image"}]}`, images as PIL images (or the env's uint8 arrays with
    `image_type="array"`). Each observation is its own message (the env's `chat_form` must be
    "observation"), with role "observation" as PyVision-RL trained, or `observation_role` (e.g.
    "user" for a template that renders only the usual roles).

    Example:
        >>> env = MessageEnv("PyVisionImage-v0", difficulty="easy")
        >>> [message["role"] for message in env.reset(seed=0)]
        ['user']
        >>> new, reward, done, info = env.step("<code>\\n```python\\nprint(1 + 1)\\n```\\n</code>")
        >>> new[0]["role"], new[0]["content"][0]["text"], done
        ('observation', '<interpreter>Text Result:\\n2</interpreter>\\n', False)
        >>> env.step("<answer>\\n\\\\boxed{A}\\n</answer>").done
        True
        >>> env.close()
    """

    def __init__(self, env: str | gym.Env = "PyVisionImage-v0", *, observation_role: str | None = None,
                 image_type: ImageType = "pil", **env_kwargs: Any) -> None:
        if image_type not in ("pil", "array"):
            raise ValueError(f"image_type must be 'pil' or 'array', got {image_type!r}")
        if isinstance(env, str):
            if env_kwargs.get("chat_form", "observation") != "observation":
                raise ValueError("MessageEnv needs chat_form='observation' (each observation its own "
                                 f"message); got chat_form={env_kwargs['chat_form']!r}")
            env = gym.make(env, **{**env_kwargs, "chat_form": "observation"})
        elif env_kwargs:
            raise TypeError("env keyword arguments go with an env id, not with an env instance")
        self.env = env
        self.observation_role = observation_role
        self.image_type = image_type
        self.messages: list[dict[str, Any]] = []
        self.reset_info: dict[str, Any] = {}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Start an episode; return its first messages (the user prompt with the task's images)."""
        _, info = self.env.reset(seed=seed, options=options)
        self.reset_info = info
        self.messages = [self._convert(message) for message in info[keys.MESSAGES]]
        return list(self.messages)

    def step(self, text: str) -> MessageStep:
        """Take the model's text for one turn; return the messages the env answered with."""
        before = len(self.messages)
        _, reward, terminated, truncated, info = self.env.step(text)
        done = bool(terminated or truncated)
        chat = info[keys.MESSAGES]
        if chat[before]["role"] != "assistant" or (not done and len(chat) == before + 1):
            raise RuntimeError("MessageEnv needs the env's chat_form='observation': the observation "
                               "was not a message of its own")
        new = [self._convert(message) for message in chat[before + 1:]]
        self.messages += [self._convert(chat[before]), *new]
        return MessageStep(new, float(reward), done, info)

    def close(self) -> None:
        self.env.close()

    def _convert(self, message: dict[str, Any]) -> dict[str, Any]:
        role = message["role"]
        if role == "observation" and self.observation_role:
            role = self.observation_role
        return {"role": role, "content": [self._part(part) for part in message["content"]]}

    def _part(self, part: dict[str, Any]) -> dict[str, Any]:
        if part["type"] != "image" or self.image_type == "array":
            return dict(part)
        return {"type": "image", "image": Image.fromarray(np.asarray(part["image"]))}


def images_of(messages: list[dict[str, Any]]) -> list[Any]:
    """The images of `messages`, in order."""
    return [part["image"] for message in messages for part in message["content"]
            if part["type"] == "image"]


def vagen_observation(messages: list[dict[str, Any]], placeholder: str = "<image>") -> dict[str, Any]:
    """VAGEN's observation shape for `messages`: `{"obs_str", "multi_modal_input": {placeholder:
    [images]}}`, with `placeholder` where each image sits in the text."""
    text = "".join(part["text"] if part["type"] == "text" else placeholder
                   for message in messages for part in message["content"])
    return {"obs_str": text, "multi_modal_input": {placeholder: images_of(messages)}}
