"""Multi-turn episodes for GRPO: model turns and env steps as one token sequence with an observation mask.

One `Trajectory` per completion. The prompt is the env's first chat rendered by the processor's
chat template; the completion is every model turn (tokens exactly as sampled, mask 1) followed by
the chat-template text and images of the env's answer to it (mask 0, never trained on). Both chat
protocols of the agents are played: PyVision's tags and native `python` tool calls. Images that
code shows are tokenized with the processor, so their `<|image_pad|>` runs and pixel features
agree by construction; `image_token_mismatch` checks it before the trainer sees a batch.

Generation is batched over every running episode of a batch (one `generate` call per turn);
env resets and steps run concurrently in a thread pool, since `env.step` blocks on the sandbox.
The envs are local, or hosted by Ray actors (`num_env_workers` > 0, `pyvision_agents.ray_pool`).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pyvision_agents.chat import (
    CODE_STOP,
    PYTHON_TOOL,
    ModelReply,
    check_protocol,
    hf_messages,
    parse_tool_call_text,
    reply_to_action,
    to_model_messages,
)
from pyvision_agents.ray_pool import EnvLost, RayEnvPool
from pyvision_env import info as keys
from pyvision_env.info import EndReason

# End reasons the trainer gives on top of the env's `EndReason` values.
OVER_LENGTH = "OVER_LENGTH"  # the token sequence outgrew `max_context_tokens` (same name as the env's)
INVALID_OUTPUT = "INVALID_OUTPUT"  # the model emitted a vision placeholder token: always dropped

ZERO_WIDTH_SPACE = "\u200b"

_NOT_PREFIX_PRESERVING = (
    "the chat template does not render the chat prefix-preservingly (the text after a model turn "
    "must start with the text before it); use a template that renders each message on its own, "
    "as Qwen2.5-VL's does"
)


@dataclass(frozen=True)
class EpisodeStart:
    """Which episode to play: an env id, the seed its `reset` gets and, for a data file, the
    index of the task to play (None: the env draws one with the seed)."""

    env_id: str
    seed: int
    task_index: int | None = None


@dataclass(frozen=True)
class TurnRequest:
    """One running episode's context for the next model turn."""

    ids: list[int]
    images: list[Any]  # PIL images, in the order of the `<|image_pad|>` runs in `ids`
    pixel_values: Any  # torch tensor of every image's patches (None without images)
    image_grid_thw: Any  # torch tensor (num_images, 3) or None


@dataclass(frozen=True)
class TurnOutput:
    """What the model generated for one request: token ids and their sampling logprobs (or None)."""

    ids: list[int]
    logprobs: list[float] | None = None


GenerateFn = Callable[[list[TurnRequest]], list[TurnOutput]]


@dataclass
class Trajectory:
    """One played episode as training data plus the env's verdict on it.

    `tool_mask` has one entry per completion token: 1 for tokens the model sampled, 0 for
    observation and template tokens.
    """

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    tool_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    pixel_values: list[Any] = field(default_factory=list)  # one tensor per processor call
    image_grid_thw: list[Any] = field(default_factory=list)
    num_prompt_images: int = 0
    reward: float = 0.0
    reward_parts: dict[str, float] = field(default_factory=dict)
    end_reason: str | None = None
    correct: bool = False
    turns: int = 0
    num_code_cells: int = 0
    visual_tokens: int = 0

    @property
    def done(self) -> bool:
        return self.end_reason is not None

    @property
    def looked_at_image(self) -> bool:
        """Whether code showed the model at least one figure."""
        return len(self.images) > self.num_prompt_images

    @property
    def num_model_tokens(self) -> int:
        return sum(self.tool_mask)


@dataclass
class RolloutTimes:
    """Wall-clock seconds a batch spent generating and in the env (resets and steps)."""

    generation: float = 0.0
    env: float = 0.0


class ChatCodec:
    """Renders env chats with the processor's chat template and tokenizes text with its images.

    Args:
        processor: the model's processor (tokenizer, image processor, chat template).
        protocol: "tags" (PyVision's `<code>` tags, a turn stops at `</code>`) or "tools" (the
            model calls a `python` tool; its Hermes-style `<tool_call>` text is read as the cell).
    """

    def __init__(self, processor: Any, protocol: str = "tags") -> None:
        check_protocol(protocol)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.protocol = protocol
        self.merge_length = getattr(processor.image_processor, "merge_size", 2) ** 2
        names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        ids = [self.tokenizer.convert_tokens_to_ids(name) for name in names]
        self.image_pad_id = ids[0]
        self.vision_ids = frozenset(i for i in ids if i is not None and i != self.tokenizer.unk_token_id)
        self.specials = sorted({token.content for token in self.tokenizer.added_tokens_decoder.values()}
                               | set(self.tokenizer.all_special_tokens), key=len, reverse=True)
        self.closing = self._closing()

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
               ) -> tuple[str, list[Any]]:
        """The chat as the model's prompt text and its images as PIL."""
        from PIL import Image

        chat, arrays = hf_messages(to_model_messages(self.defused(messages), self.protocol))
        return self._template(chat, add_generation_prompt), [
            Image.fromarray(np.ascontiguousarray(a)) for a in arrays]

    def defused(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chat with special-token strings in env text (questions, code output) broken by a
        zero-width space, so that text a code cell prints can never become a control or image
        token. Assistant messages are left as the model wrote them (never re-tokenized)."""
        out = []
        for message in messages:
            if message["role"] != "assistant":
                message = {**message, "content": [
                    {**part, "text": self._defuse(part["text"])} if part["type"] == "text" else part
                    for part in message["content"]]}
            out.append(message)
        return out

    def _defuse(self, text: str) -> str:
        for token in self.specials:
            if token in text:
                text = text.replace(token, token[0] + ZERO_WIDTH_SPACE + token[1:])
        return text

    def _template(self, chat: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        tools = [PYTHON_TOOL] if self.protocol == "tools" else None
        return self.processor.apply_chat_template(chat, tokenize=False, tools=tools,
                                                  add_generation_prompt=add_generation_prompt)

    def _closing(self) -> str:
        """The text the template puts after an assistant message's content (Qwen: `<|im_end|>\n`)."""
        mark = "\x00end-of-content\x00"
        text = self._template([{"role": "user", "content": [{"type": "text", "text": "x"}]},
                               {"role": "assistant", "content": [{"type": "text", "text": mark}]}], False)
        return text[text.rindex(mark) + len(mark):]

    def action(self, text: str) -> str:
        """The env action for the model's text of one turn."""
        reply = parse_tool_call_text(text) if self.protocol == "tools" else ModelReply(text)
        return reply_to_action(reply, self.protocol)

    def observation_text(self, rendered: str, text: str, action: str,
                         messages: Sequence[dict[str, Any]]) -> tuple[str, str, list[Any]]:
        """What follows the model's turn `text` up to the next generation prompt, the new full
        rendering and all images so far.

        Tags: the env's chat renders the model's turn verbatim, so the new rendering must start
        with the old one plus the action. Tools: the template renders the tool call its own way,
        so the suffix is the template's closing of the assistant message plus everything the
        chat gained after it.
        """
        new_rendered, images = self.render(messages)
        if self.protocol == "tags":
            expected = rendered + action
            if not action.startswith(text) or not new_rendered.startswith(expected):
                raise ValueError(_NOT_PREFIX_PRESERVING)
            return action[len(text):] + new_rendered[len(expected):], new_rendered, images
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        closed, _ = self.render(messages[: last + 1], add_generation_prompt=False)
        if not new_rendered.startswith(closed) or not closed.endswith(self.closing):
            raise ValueError(_NOT_PREFIX_PRESERVING)
        return self.closing + new_rendered[len(closed):], new_rendered, images

    def encode(self, text: str, images: list[Any]) -> dict[str, Any]:
        """Token ids of `text` with each image's placeholder expanded, plus the image features."""
        out = self.processor(text=[text], images=images or None, return_tensors="pt")
        return {
            "ids": out["input_ids"][0].tolist(),
            "pixel_values": out.get("pixel_values"),
            "image_grid_thw": out.get("image_grid_thw"),
        }

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def cut_after_stop(self, ids: list[int], stop: str = CODE_STOP) -> list[int]:
        """`ids` up to the first token whose text completes `stop` (HF generation overshoots it).

        Binary search over prefixes: "the decoded prefix contains `stop`" only turns on once.
        """
        if stop not in self.decode(ids):
            return ids
        low, high = 1, len(ids)
        while low < high:
            middle = (low + high) // 2
            if stop in self.decode(ids[:middle]):
                high = middle
            else:
                low = middle + 1
        return ids[:low]


def image_token_mismatch(trajectory: Trajectory, codec: ChatCodec) -> str | None:
    """Why the trajectory's image tokens disagree with its image features, or None when they agree."""
    tokens = sum(1 for i in (*trajectory.prompt_ids, *trajectory.completion_ids) if i == codec.image_pad_id)
    features = sum(int(grid.prod(dim=-1).sum()) for grid in trajectory.image_grid_thw) // codec.merge_length
    if tokens != features or len(trajectory.images) != sum(len(g) for g in trajectory.image_grid_thw):
        return (f"{tokens} <|image_pad|> tokens but {features} image features over "
                f"{len(trajectory.images)} images")
    return None


class EpisodeRunner:
    """Plays a batch of episodes against a pool of envs, generation batched across episodes.

    The runner keeps, per env id, as many envs as the largest batch so far needed and reuses them
    by `reset`; the i-th start of an env id in a batch plays on env i, so no env serves two
    episodes at once.

    Args:
        codec: the processor wrapper (chat template, tokenization).
        make_env: builds one env for an env id. With `num_env_workers` it is pickled to the Ray
            actors (a `functools.partial` of `gymnasium.make`, or a lambda).
        num_workers: threads for concurrent env resets and steps.
        max_context_tokens: an episode whose prompt + completion outgrows this ends (OVER_LENGTH).
        eos_ids: token ids that end a model turn.
        num_env_workers: 0 plays on envs in this process; N > 0 on envs hosted by a `RayEnvPool`
            of up to N actors per env id. A batch that needs more envs of an id than its pool
            holds replaces the pool by a larger one. An actor lost during a reset or step ends
            the episode with SANDBOX_FAILURE; the pool replaces the actor for the next batch.
        ray_address: the Ray cluster ("auto", "ray://host:10001"); None starts or joins a local
            Ray instance.
    """

    def __init__(self, codec: ChatCodec, make_env: Callable[[str], Any], *, num_workers: int,
                 max_context_tokens: int, eos_ids: Sequence[int], num_env_workers: int = 0,
                 ray_address: str | None = None) -> None:
        self.codec = codec
        self.make_env = make_env
        self.max_context_tokens = max_context_tokens
        self.eos_ids = frozenset(eos_ids)
        self.num_env_workers = num_env_workers
        self.ray_address = ray_address
        self.executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="pyvision-env")
        self._pool: dict[str, list[Any]] = {}
        self.ray_pools: dict[str, RayEnvPool] = {}  # env id -> the pool hosting its envs

    def close(self) -> None:
        """Stop the worker threads and close every env (and its sandbox) and Ray pool."""
        self.executor.shutdown(wait=True)
        for envs in self._pool.values():
            for env in envs:
                env.close()  # a Ray pool's envs close with the pool, below
        self._pool.clear()
        for pool in self.ray_pools.values():
            pool.close()
        self.ray_pools.clear()

    def run(self, starts: Sequence[EpisodeStart], generate: GenerateFn) -> tuple[list[Trajectory], RolloutTimes]:
        """Play one episode per start to its end; trajectories come back in the order of `starts`."""
        envs = self._envs_for(starts)
        times = RolloutTimes()
        tic = time.perf_counter()
        states = list(self.executor.map(self._reset, envs, starts))
        times.env += time.perf_counter() - tic
        while running := [i for i, (trajectory, _) in enumerate(states) if not trajectory.done]:
            requests = [self._request(states[i][0]) for i in running]
            tic = time.perf_counter()
            outputs = generate(requests)
            times.generation += time.perf_counter() - tic
            if len(outputs) != len(requests):
                raise RuntimeError(f"generate returned {len(outputs)} turns for {len(requests)} requests")
            tic = time.perf_counter()
            updated = self.executor.map(self._step, [envs[i] for i in running],
                                        [states[i] for i in running], outputs)
            for i, state in zip(running, updated):
                states[i] = state
            times.env += time.perf_counter() - tic
        return [self._never_empty(trajectory) for trajectory, _ in states], times

    # ------------------------------------------------------------------ one episode

    def _envs_for(self, starts: Sequence[EpisodeStart]) -> list[Any]:
        """One env per start: the i-th start of an env id gets that id's env i."""
        for env_id, count in Counter(start.env_id for start in starts).items():
            if len(self._pool.get(env_id, ())) < count:
                self._grow(env_id, count)
        taken: Counter[str] = Counter()
        envs = []
        for start in starts:
            envs.append(self._pool[start.env_id][taken[start.env_id]])
            taken[start.env_id] += 1
        return envs

    def _grow(self, env_id: str, size: int) -> None:
        """Hold at least `size` envs of `env_id`: make the missing ones here, or replace the
        id's Ray pool by one of `size` slots."""
        if not self.num_env_workers:
            envs = self._pool.setdefault(env_id, [])
            envs.extend(self.make_env(env_id) for _ in range(size - len(envs)))
            return
        if env_id in self.ray_pools:
            del self._pool[env_id]
            self.ray_pools.pop(env_id).close()
        workers = min(self.num_env_workers, size)
        pool = RayEnvPool(functools.partial(self.make_env, env_id), num_workers=workers,
                          envs_per_worker=-(-size // workers), address=self.ray_address)
        self.ray_pools[env_id] = pool
        self._pool[env_id] = pool.envs()

    def _reset(self, env: Any, start: EpisodeStart) -> tuple[Trajectory, str]:
        options = {"task_index": start.task_index} if start.task_index is not None else None
        try:
            _, info = env.reset(seed=start.seed, options=options)
        except EnvLost:  # the Ray actor died twice: no prompt to play; dropped, never scored
            return self._lost_at_reset(), ""
        text, images = self.codec.render(info[keys.MESSAGES])
        encoded = self.codec.encode(text, images)
        trajectory = Trajectory(prompt_ids=encoded["ids"], images=list(images),
                                num_prompt_images=len(images))
        _add_features(trajectory, encoded)
        return trajectory, text

    def _pad_id(self) -> int:
        tokenizer = self.codec.tokenizer
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _lost_at_reset(self) -> Trajectory:
        """A SANDBOX_FAILURE trajectory without a prompt: one pad token stands for it."""
        return Trajectory(prompt_ids=[self._pad_id()], end_reason=EndReason.SANDBOX_FAILURE.value)

    def _never_empty(self, trajectory: Trajectory) -> Trajectory:
        """Give a trajectory with no completion (lost at reset, or output refused at its first
        token) one masked pad token: TRL builds its batch tensors from the token lists, and an
        empty first list would make them floats."""
        if not trajectory.completion_ids:
            trajectory.completion_ids, trajectory.tool_mask = [self._pad_id()], [0]
            if trajectory.logprobs is not None:
                trajectory.logprobs = [0.0]
        return trajectory

    def _request(self, trajectory: Trajectory) -> TurnRequest:
        import torch

        return TurnRequest(
            ids=trajectory.prompt_ids + trajectory.completion_ids,
            images=list(trajectory.images),
            pixel_values=torch.cat(trajectory.pixel_values) if trajectory.pixel_values else None,
            image_grid_thw=torch.cat(trajectory.image_grid_thw) if trajectory.image_grid_thw else None,
        )

    def _step(self, env: Any, state: tuple[Trajectory, str], output: TurnOutput) -> tuple[Trajectory, str]:
        trajectory, rendered = state
        ids = list(output.ids)
        if self.codec.protocol == "tags":
            ids = self.codec.cut_after_stop(ids)
        invalid = next((k for k, i in enumerate(ids) if i in self.codec.vision_ids), None)
        if invalid is not None:  # a placeholder without features would break the forward pass
            _add_model_tokens(trajectory, ids[:invalid], output.logprobs)
            trajectory.end_reason = INVALID_OUTPUT
            return trajectory, rendered
        _add_model_tokens(trajectory, ids, output.logprobs)
        text = self.codec.decode(ids)
        action = self.codec.action(text)
        try:
            _, reward, terminated, truncated, info = env.step(action)
        except EnvLost:  # the Ray actor holding the env died: infrastructure, not the policy
            trajectory.end_reason = EndReason.SANDBOX_FAILURE.value
            return trajectory, rendered
        _record_info(trajectory, info, reward)
        if terminated or truncated:
            return trajectory, rendered
        suffix, new_rendered, images = self.codec.observation_text(rendered, text, action, info[keys.MESSAGES])
        # a sampled end token that is the template's closing already closes the turn (another end
        # id, say <|endoftext|> where the template closes with <|im_end|>, does not)
        eos_text = self.codec.tokenizer.convert_ids_to_tokens(ids[-1]) if ids and ids[-1] in self.eos_ids else ""
        if eos_text and suffix.startswith(eos_text):
            suffix = suffix[len(eos_text):]
        encoded = self.codec.encode(suffix, images[len(trajectory.images):])
        trajectory.images.extend(images[len(trajectory.images):])
        _add_features(trajectory, encoded)
        trajectory.completion_ids += encoded["ids"]
        trajectory.tool_mask += [0] * len(encoded["ids"])
        if trajectory.logprobs is not None:
            trajectory.logprobs += [0.0] * len(encoded["ids"])
        if len(trajectory.prompt_ids) + len(trajectory.completion_ids) > self.max_context_tokens:
            trajectory.end_reason = OVER_LENGTH
        return trajectory, new_rendered


def _add_model_tokens(trajectory: Trajectory, ids: list[int], logprobs: list[float] | None) -> None:
    trajectory.completion_ids += ids
    trajectory.tool_mask += [1] * len(ids)
    if logprobs is None or trajectory.logprobs is None:
        trajectory.logprobs = None
    else:
        trajectory.logprobs += list(logprobs[: len(ids)])


def _add_features(trajectory: Trajectory, encoded: dict[str, Any]) -> None:
    if encoded["pixel_values"] is not None:
        trajectory.pixel_values.append(encoded["pixel_values"])
        trajectory.image_grid_thw.append(encoded["image_grid_thw"])


def _record_info(trajectory: Trajectory, info: dict[str, Any], reward: float) -> None:
    trajectory.turns = info[keys.TURN]
    trajectory.num_code_cells = info[keys.NUM_CODE_CELLS]
    trajectory.visual_tokens = info[keys.VISUAL_TOKENS]
    if info[keys.END_REASON] is not None:
        trajectory.end_reason = info[keys.END_REASON]
        trajectory.reward = float(reward)
        trajectory.reward_parts = dict(info[keys.REWARD_PARTS])
        trajectory.correct = bool(info[keys.CORRECT])
