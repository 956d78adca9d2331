"""One episode as token ids: prompt ids, response ids with a mask (1 = generated), and its images.

The shape token-level RL trainers take (verl's `AgentLoopOutput`, OpenRLHF's observation tokens):
the model's tokens are kept exactly as generated, the env's observations are rendered with the
processor's chat template and tokenized with their images (mask 0).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from pyvision_agents.integrations.messages import MessageEnv, images_of
from pyvision_env import info as keys

# generate(token ids so far, images so far) -> (new token ids, their log-probs or None)
Generate = Callable[[list[int], list[Any]], Awaitable[tuple[Sequence[int], Sequence[float] | None]]]


@dataclass(frozen=True)
class TokenTrajectory:
    """One finished episode in tokens.

    Attributes:
        prompt_ids: the rendered first user message and the generation prompt.
        response_ids: every token after the prompt: the model's and the env's, in order.
        response_mask: 1 for a token the model generated, 0 for an env token.
        response_logprobs: the model's log-prob of each generated token, 0.0 for env tokens (None
            when `generate` gave none).
        images: every image of the episode in the order its placeholder appears (prompt, then
            figures), as the processor must see them.
        reward: the env's reward for the episode (0 when cut by the token budget).
        num_turns: model turns taken.
        end_reason: the env's end reason, or "OVER_LENGTH" when the token budget ran out first.
        info: the env's last `info`.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    response_logprobs: list[float] | None
    images: list[Any]
    reward: float
    num_turns: int
    end_reason: str
    info: dict[str, Any] = field(repr=False)


def render_continuation(processor: Any, chat: list[dict[str, Any]], action: str,
                        new: list[dict[str, Any]]) -> str:
    """The chat-template text that follows the model's `action` (appended to `chat`) when the env
    answers with the messages `new`: the end of the assistant turn, `new`, the generation prompt."""
    turn = {"role": "assistant", "content": [{"type": "text", "text": action}]}
    closed = processor.apply_chat_template([*chat, turn], tokenize=False)
    after = processor.apply_chat_template([*chat, turn, *new], tokenize=False, add_generation_prompt=True)
    end = closed.rfind(action) + len(action)
    if end < len(action) or not after.startswith(closed):
        raise ValueError("the chat template does not render a conversation as a prefix of its "
                         "continuation; a token-level rollout needs one that does (e.g. Qwen's)")
    return closed[end:] + after[len(closed):]


def _ids(processor: Any, text: str, images: list[Any]) -> list[int]:
    encoded = processor(text=[text], images=images or None, add_special_tokens=False)
    return [int(token) for token in encoded["input_ids"][0]]


async def rollout_tokens(env: MessageEnv, processor: Any, generate: Generate, *,
                         max_response_tokens: int, seed: int | None = None,
                         options: dict[str, Any] | None = None) -> TokenTrajectory:
    """Play one episode of `env` with `generate`, in tokens.

    `processor` is the model's (HF) processor: its chat template renders the messages, and it
    expands each image placeholder for the images it is given. Env calls run in a worker thread, so
    many rollouts can share one event loop. The episode is cut when the response reaches
    `max_response_tokens` (end reason OVER_LENGTH, reward 0): a turn's tokens are cut to fit (and
    that half turn is not played), an observation that would not leave room for another turn is
    left out whole (its image placeholders and `images` stay aligned).
    """
    chat = await asyncio.to_thread(env.reset, seed, options)
    images = images_of(chat)
    prompt_ids = _ids(processor, processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                      images)
    tokenizer = getattr(processor, "tokenizer", processor)
    response: list[int] = []
    mask: list[int] = []
    logprobs: list[float] | None = []
    turns, reward, end_reason, info = 0, 0.0, keys.EndReason.OVER_LENGTH.value, env.reset_info
    while len(response) < max_response_tokens:
        ids, probs = await generate(prompt_ids + response, images)
        room = max_response_tokens - len(response)
        response += list(ids)[:room]
        mask += [1] * min(len(ids), room)
        logprobs = None if probs is None or logprobs is None else logprobs + list(probs)[:room]
        turns += 1
        if len(ids) > room:
            break  # the turn was cut: the env never sees half a turn
        ids = list(ids)
        closed_by_model = bool(ids) and ids[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(ids[:-1] if closed_by_model else ids, skip_special_tokens=False)
        new, step_reward, done, info = await asyncio.to_thread(env.step, text)
        if done:
            reward, end_reason = step_reward, info[keys.END_REASON]
            break
        continuation = render_continuation(processor, chat, text, new)
        eos_text = tokenizer.decode([tokenizer.eos_token_id]) if closed_by_model else ""
        if eos_text and continuation.startswith(eos_text):  # the model closed its turn already
            continuation = continuation[len(eos_text):]
        env_ids = _ids(processor, continuation, images_of(new))
        if len(response) + len(env_ids) >= max_response_tokens:
            break  # no room for the observation and another turn: cut here, images stay aligned
        chat = env.messages
        images = images + images_of(new)
        response += env_ids
        mask += [0] * len(env_ids)
        if logprobs is not None:
            logprobs += [0.0] * len(env_ids)
    return TokenTrajectory(prompt_ids, response, mask, logprobs, images, reward, turns, end_reason, info)
