"""`PyVisionEnv`: the Gymnasium face of one agentic-vision episode (question, code turns, answer)."""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import gymnasium as gym
import numpy as np

from pyvision_env import info as keys
from pyvision_env.info import EndReason
from pyvision_env.media.images import load_image, to_array
from pyvision_env.media.tokens import PYVISION_RL_RULE, VisualTokenRule, count_visual_tokens
from pyvision_env.protocol import (
    FORMAT_ERROR_MESSAGE,
    ChatForm,
    ImageInfo,
    VideoInfo,
    build_prompt,
    load_prompt_templates,
    parse_turn,
    parts_images,
    parts_to_text,
    render_cell,
    render_format_error,
)
from pyvision_env.rewards import RewardConfig, RewardParts, compute_reward, grade
from pyvision_env.sandbox import CellResult, CellStatus, Sandbox, SandboxConfig, make_sandbox
from pyvision_env.spaces import TextSpace, observation_space
from pyvision_env.tasks.sources import DatasetTasks, TaskSource
from pyvision_env.tasks.task import Task

Observation = dict[str, Any]  # {"text": str, "images": tuple[np.ndarray, ...]}

MAX_TEXT = 1_000_000
MAX_IMAGE_SIDE = 65_535
CHARS_PER_TOKEN = 3.5  # text-token estimate used by the context budget
MAX_DRAWS = 20  # with strict=False, tasks whose media fail to load are skipped this many times


@dataclass(frozen=True)
class _Media:
    """An episode's media, loaded and checked at reset."""

    images: list[np.ndarray]
    videos: list[VideoInfo]
    frames: list[tuple[int, float, np.ndarray]]  # (index, seconds, RGB) shown in the prompt


# `info["exec"]` for a turn that ran no code: always a dict of the same keys, so vector envs
# can batch it.
_NO_EXEC: dict[str, Any] = {
    "status": "none", "duration": 0.0, "error": None, "state_lost": False, "num_figures": 0,
    "figures_dropped": False,
}


@dataclass
class _Episode:
    """Mutable state of the running episode."""

    task: Task
    messages: list[dict[str, Any]]
    num_input_images: int
    start_time: float
    turn: int = 0
    num_code_cells: int = 0
    num_figures: int = 0
    num_images: int = 0
    visual_tokens: int = 0
    text_chars: int = 0
    last_exec: dict[str, Any] = field(default_factory=lambda: dict(_NO_EXEC))
    answer: str | None = None
    correct: bool = False
    reward_parts: RewardParts = field(default_factory=lambda: RewardParts(0.0, 0.0, 0.0))
    end_reason: EndReason | None = None


class PyVisionEnv(gym.Env[Observation, str]):
    """A multimodal model answers a question about images or a video by writing Python.

    Action: the model's text for one turn. It holds either a code cell
    (``<code>```python ...```</code>``), which runs in a persistent sandbox, or the final answer
    (``<answer>\\boxed{...}</answer>``), which ends the episode.

    Observation: ``{"text": str, "images": tuple}``. After `reset` the text is the rendered prompt
    and the images are the task images (when shown); after a code turn the text is the
    ``<interpreter>`` block and the images are the figures the cell showed. Each image sits at an
    ``<image>`` placeholder in the text. `info` holds everything else: see `pyvision_env.info`.

    Video tasks show no frames up front (unless `initial_frames` > 0): the prompt gives the
    frame size, length in frames, average fps and duration, and the model pulls frames by code
    from `video_clue_0`, a `decord.VideoReader`-like object in the sandbox.

    Args:
        data_path: a PyVision data file (JSON/JSONL); None draws from the built-in task families.
        tasks: tasks to draw from instead of a file (e.g. a list built in code).
        families: built-in family names to draw from (None = all); ignored with data.
        difficulty: built-in family difficulty: "easy", "medium" or "hard".
        max_turns: model turns before the episode is truncated (PyVision evaluation: 30).
        max_images: images in the context (prompt images + figures) before truncation (32).
        image_in_prompt: show the images in the prompt (PyVision-Image) or give only their size
            (PyVision-RL's no-hint variant). The images are preloaded in the sandbox either way.
        initial_frames: for video tasks, this many uniformly spaced frames are shown in the
            prompt (0: none, PyVision-Video's on-demand setting; >0: the uniform baseline).
        on_error: "observe" feeds code errors and malformed turns back to the model;
            "terminate" ends the episode with ERROR_IN_ACTION, as PyVision-RL training did.
        cell_timeout: wall-clock seconds per code cell (PyVision: about 30).
        chat_form: "observation" (PyVision-RL: each observation is its own message with role
            "observation") or "inline" (PyVision: appended to the assistant message).
        max_output_chars: cap on a cell's stdout in the observation (head and tail kept);
            PyVision's loop used 400.
        prompt_template: a JSON file of prompt templates keyed by prompt type (e.g. PyVision's);
            None uses the templates shipped with the env.
        prompt_type: which template to use; None picks "image", "image_no_hint" or "video".
        reward: accuracy and tool-reward settings.
        token_rule: the visual-token estimate per image (Qwen2.5-VL rule; default: the pixel
            budget PyVision-RL trained with, 3136..2,000,000 pixels).
        max_context_tokens: truncate with OVER_LENGTH when the estimated context exceeds this.
        max_episode_seconds: truncate with EXCEED_TIME_BUDGET after this wall-clock time.
        sandbox: a sandbox backend name ("local", "docker"), or a callable that builds a
            `Sandbox` from a `SandboxConfig` (a custom backend).
        sandbox_config: sandbox limits; `cell_timeout` above overrides its timeout.
        strict: a malformed data row, or a task whose media cannot be read at reset, raises
            (True) or is skipped with a warning (False).
        render_mode: None or "ansi" (the transcript as text).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        data_path: str | Path | None = None,
        *,
        tasks: Sequence[Task] | None = None,
        families: Sequence[str] | None = None,
        difficulty: str = "medium",
        max_turns: int = 30,
        max_images: int = 32,
        image_in_prompt: bool = True,
        initial_frames: int = 0,
        on_error: Literal["observe", "terminate"] = "observe",
        cell_timeout: float = 30.0,
        chat_form: ChatForm = "observation",
        max_output_chars: int = 2000,
        prompt_template: str | Path | None = None,
        prompt_type: str | None = None,
        reward: RewardConfig | None = None,
        token_rule: VisualTokenRule | None = None,
        max_context_tokens: int | None = None,
        max_episode_seconds: float | None = None,
        sandbox: str | Callable[[SandboxConfig], Sandbox] = "local",
        sandbox_config: SandboxConfig | None = None,
        strict: bool = True,
        render_mode: str | None = None,
    ):
        _check_args(max_turns, max_images, initial_frames, on_error, chat_form, render_mode)
        self.task_source = _task_source(data_path, tasks, families, difficulty, strict)
        self.max_turns = max_turns
        self.max_images = max_images
        self.image_in_prompt = image_in_prompt
        self.initial_frames = initial_frames
        self.strict = strict
        self.on_error = on_error
        self.chat_form = chat_form
        self.max_output_chars = max_output_chars
        self.templates = load_prompt_templates(prompt_template)
        self.prompt_type = prompt_type
        self.reward_config = reward or RewardConfig()
        self.token_rule = token_rule or PYVISION_RL_RULE
        self.max_context_tokens = max_context_tokens
        self.max_episode_seconds = max_episode_seconds
        self.sandbox_config = replace(sandbox_config or SandboxConfig(), cell_timeout=cell_timeout)
        self.sandbox_name = sandbox
        self.render_mode = render_mode
        self.action_space = TextSpace(MAX_TEXT)
        self.observation_space = observation_space(MAX_TEXT, MAX_IMAGE_SIDE)
        self._sandbox: Sandbox | None = None
        self._episode: _Episode | None = None

    @property
    def current_task(self) -> Task | None:
        """The task of the current (or last) episode, ground truth included; None before reset."""
        return self._episode.task if self._episode else None

    # ------------------------------------------------------------------ Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode: pick a task, start a fresh sandbox with its media, render the prompt.

        `options` may name the task: {"task": Task}, {"task_id": str} or {"task_index": int}
        (dataset sources only). Otherwise the task is drawn with the env's seeded generator.
        """
        super().reset(seed=seed)
        self._episode = None
        task, media = self._pick_task_with_media(options or {})
        self._start_sandbox(media.images, task)
        prompt = self._prompt_parts(task, media)
        episode = _Episode(
            task=task,
            messages=[{"role": "user", "content": prompt}],
            num_input_images=len(media.images),
            start_time=time.monotonic(),
        )
        self._episode = episode
        self._account(episode, prompt)
        info = self._info()
        info.update({
            keys.TASK_SOURCE: task.source,
            keys.QUESTION: task.question,
            keys.CHOICES: list(task.choices),
            keys.ANSWER_TYPE: task.answer_type,
            keys.TASK_EXTRA: copy.deepcopy(dict(task.extra)),
        })
        return _observation(prompt), info

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Take the model's text for one turn; run its code or grade its answer."""
        episode = self._require_running()
        if not isinstance(action, str):
            raise TypeError(f"action must be the model's text (str), got {type(action).__name__}")
        episode.turn += 1
        self._add_assistant_text(action)
        turn = parse_turn(action)
        if turn.kind == "answer":
            episode.last_exec = dict(_NO_EXEC)
            return self._finish_with_answer(turn.answer)
        if turn.kind == "code":
            parts, status = self._run_cell(turn.code)
        else:
            parts, status = render_format_error(FORMAT_ERROR_MESSAGE, self.chat_form), None
            episode.last_exec = dict(_NO_EXEC)
        self._add_observation(parts)
        reason = self._end_reason_after(status)
        if reason is not None:
            return self._end(parts, reason)
        return _observation(parts), 0.0, False, False, self._info()

    def render(self) -> str | None:
        """With render_mode="ansi", the episode's transcript with `<image>` placeholders."""
        if self.render_mode != "ansi" or self._episode is None:
            return None
        return "\n".join(
            f"[{message['role']}]\n{parts_to_text(message['content'])}"
            for message in self._episode.messages
        )

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        super().close()

    # ------------------------------------------------------------------ episode pieces

    def _pick_task_with_media(self, options: dict[str, Any]) -> tuple[Task, _Media]:
        """Pick a task and load its media. A task whose media fail to load raises, naming the
        file; with strict=False a drawn (not requested) task is skipped with a warning instead."""
        requested = bool({"task", "task_id", "task_index"} & set(options))
        for _ in range(MAX_DRAWS):
            task = self._pick_task(options)
            try:
                return task, self._load_media(task)
            except (OSError, ValueError) as error:
                if self.strict or requested:
                    raise
                warnings.warn(f"skipping task {task.id!r}: {error}", stacklevel=3)
        raise RuntimeError(f"{MAX_DRAWS} tasks in a row had media that could not be loaded")

    def _load_media(self, task: Task) -> _Media:
        images = [to_array(load_image(source)) for source in task.images]
        videos: list[VideoInfo] = []
        frames: list[tuple[int, float, np.ndarray]] = []
        if task.videos:
            from pyvision_env.media.video import open_video

            for path in task.videos:
                with open_video(path, cache_bytes=0) as reader:
                    meta = reader.meta
                    videos.append(VideoInfo(meta.width, meta.height, meta.num_frames, meta.fps,
                                            meta.duration))
                    if self.initial_frames and not frames:
                        frames = _uniform_frames(reader, self.initial_frames)
        return _Media(images, videos, frames)

    def _pick_task(self, options: dict[str, Any]) -> Task:
        if "task" in options:
            task = options["task"]
            if not isinstance(task, Task):
                raise TypeError(f"options['task'] must be a Task, got {type(task).__name__}")
            return task
        if "task_id" in options:
            return self.task_source.from_id(options["task_id"])
        if "task_index" in options:
            if not isinstance(self.task_source, DatasetTasks):
                raise ValueError("options['task_index'] needs a dataset (data_path= or tasks=)")
            return self.task_source[int(options["task_index"])]
        return self.task_source.sample(self.np_random)

    def _start_sandbox(self, arrays: list[np.ndarray], task: Task) -> None:
        if self._sandbox is None:
            backend = self.sandbox_name
            self._sandbox = (make_sandbox(backend, self.sandbox_config) if isinstance(backend, str)
                             else backend(self.sandbox_config))
        self._sandbox.start(images=arrays, videos=[str(path) for path in task.videos])

    def _prompt_parts(self, task: Task, media: _Media) -> list[dict[str, Any]]:
        prompt_type = self.prompt_type or _default_prompt_type(task, self.image_in_prompt)
        try:
            template = self.templates[prompt_type]
        except KeyError:
            raise ValueError(
                f"prompt_type {prompt_type!r} is not in the prompt templates; "
                f"known: {sorted(self.templates)}"
            ) from None
        arrays = media.images
        infos = [ImageInfo(width=a.shape[1], height=a.shape[0]) for a in arrays]
        shown = list(arrays) if self.image_in_prompt else None  # fresh arrays every reset
        return _frame_parts(media.frames) + build_prompt(
            template, task.question, infos, shown, media.videos
        )

    def _run_cell(self, code: str) -> tuple[list[dict[str, Any]], CellStatus]:
        """Run one cell; return the observation parts and how the cell ended."""
        episode = self._episode
        assert episode is not None and self._sandbox is not None
        result = self._sandbox.run(code)
        episode.last_exec = _exec_record(result)
        if result.status is not CellStatus.SANDBOX_FAILURE:  # our failure is not the policy's cell
            episode.num_code_cells += 1
        room = max(self.max_images - episode.num_images, 0)
        if len(result.figures) > room:
            note = (f"{len(result.figures) - room} more figure(s) were dropped: the episode's "
                    f"image budget (max_images={self.max_images}) is used up")
            result = replace(result, figures=result.figures[:room], notes=(*result.notes, note))
            episode.last_exec.update(num_figures=room, figures_dropped=True)
        first_clue = episode.num_input_images + episode.num_figures
        episode.num_figures += len(result.figures)
        parts = render_cell(result, first_clue, max_output_chars=self.max_output_chars,
                            form=self.chat_form)
        return parts, result.status

    def _finish_with_answer(self, answer: str | None):
        episode = self._episode
        assert episode is not None
        verdict = grade(episode.task, answer)
        episode.answer = answer
        episode.correct = verdict.correct
        episode.reward_parts = compute_reward(
            verdict, episode.num_code_cells, self.reward_config, self.max_turns
        )
        episode.end_reason = EndReason.DONE
        self._close_episode()
        return _observation([]), episode.reward_parts.total, True, False, self._info()

    def _end(self, parts: list[dict[str, Any]], reason: EndReason):
        """End without an answer: reward 0. Only ERROR_IN_ACTION is a terminal state; every
        other reason is a truncation."""
        episode = self._episode
        assert episode is not None
        episode.end_reason = reason
        self._close_episode()
        terminated = reason is EndReason.ERROR_IN_ACTION
        return _observation(parts), 0.0, terminated, not terminated, self._info()

    def _close_episode(self) -> None:
        """Free the worker as soon as the episode is over; the next reset starts a fresh one."""
        if self._sandbox is not None:
            self._sandbox.close()

    def _end_reason_after(self, status: CellStatus | None) -> EndReason | None:
        """Why the episode ends after a turn that ran a cell (`status`) or was malformed (None)."""
        if status is CellStatus.SANDBOX_FAILURE:
            return EndReason.SANDBOX_FAILURE
        failed = status in (None, CellStatus.ERROR, CellStatus.TIMEOUT)
        if failed and self.on_error == "terminate":
            return EndReason.ERROR_IN_ACTION
        return self._budget_exceeded()

    def _budget_exceeded(self) -> EndReason | None:
        episode = self._episode
        assert episode is not None
        if episode.last_exec.get("figures_dropped"):
            return EndReason.EXCEED_MAX_IMAGES
        if self.max_context_tokens is not None:
            estimate = episode.visual_tokens + math.ceil(episode.text_chars / CHARS_PER_TOKEN)
            if estimate > self.max_context_tokens:
                return EndReason.OVER_LENGTH
        if self.max_episode_seconds is not None:
            if time.monotonic() - episode.start_time > self.max_episode_seconds:
                return EndReason.EXCEED_TIME_BUDGET
        if episode.turn >= self.max_turns:
            return EndReason.EXCEED_MAX_TURNS
        return None

    # ------------------------------------------------------------------ chat bookkeeping

    def _add_assistant_text(self, text: str) -> None:
        episode = self._episode
        assert episode is not None
        part = {"type": "text", "text": text}
        last = episode.messages[-1]
        if self.chat_form == "inline" and last["role"] == "assistant":
            last["content"].append(part)
        else:
            episode.messages.append({"role": "assistant", "content": [part]})
        episode.text_chars += len(text)

    def _add_observation(self, parts: list[dict[str, Any]]) -> None:
        episode = self._episode
        assert episode is not None
        if self.chat_form == "inline":
            episode.messages[-1]["content"].extend(parts)
        else:
            episode.messages.append({"role": "observation", "content": parts})
        self._account(episode, parts)

    def _account(self, episode: _Episode, parts: list[dict[str, Any]]) -> None:
        for part in parts:
            if part["type"] == "image":
                height, width = part["image"].shape[:2]
                episode.num_images += 1
                episode.visual_tokens += count_visual_tokens(height, width, self.token_rule)
            else:
                episode.text_chars += len(part["text"])

    def _require_running(self) -> _Episode:
        if self._episode is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._episode.end_reason is not None:
            raise gym.error.ResetNeeded(
                f"the episode is over ({self._episode.end_reason.value}); call reset()"
            )
        return self._episode

    def _info(self) -> dict[str, Any]:
        episode = self._episode
        assert episode is not None
        return {
            keys.MESSAGES: list(episode.messages),
            keys.TURN: episode.turn,
            keys.NUM_CODE_CELLS: episode.num_code_cells,
            keys.NUM_IMAGES: episode.num_images,
            keys.VISUAL_TOKENS: episode.visual_tokens,
            keys.EXEC: dict(episode.last_exec),
            keys.END_REASON: episode.end_reason.value if episode.end_reason else None,
            keys.ANSWER: episode.answer,
            keys.CORRECT: episode.correct,
            keys.REWARD_PARTS: episode.reward_parts.as_dict(),
            keys.TASK_ID: episode.task.id,
            keys.GROUND_TRUTH: episode.task.answer if episode.end_reason else None,
        }


def _observation(parts: list[dict[str, Any]]) -> Observation:
    return {"text": parts_to_text(parts), "images": tuple(parts_images(parts))}


def _default_prompt_type(task: Task, image_in_prompt: bool) -> str:
    if task.videos and not task.images:
        return "video"
    return "image" if image_in_prompt else "image_no_hint"


def _uniform_frames(reader, count: int) -> list[tuple[int, float, np.ndarray]]:
    """`count` uniformly spaced frames (segment centres, as uniform VLM sampling does)."""
    total = len(reader)
    indices = sorted({min(total - 1, int((i + 0.5) * total / count)) for i in range(count)})
    batch = reader.get_batch(indices).asnumpy()
    fps = reader.get_avg_fps()
    return [(index, index / fps, np.ascontiguousarray(frame)) for index, frame in zip(indices, batch)]


def _frame_parts(frames: list[tuple[int, float, np.ndarray]]) -> list[dict[str, Any]]:
    """Prompt parts for frames shown up front: each labelled with its index and time."""
    if not frames:
        return []
    parts: list[dict[str, Any]] = [{
        "type": "text",
        "text": f"{len(frames)} frames sampled uniformly from video_clue_0 "
                "(any other frame can be read by code):\n",
    }]
    for index, seconds, frame in frames:
        parts += [
            {"type": "text", "text": f"Frame {index} (t={seconds:.2f}s): "},
            {"type": "image", "image": frame},
            {"type": "text", "text": "\n"},
        ]
    parts.append({"type": "text", "text": "\n"})
    return parts


def _exec_record(result: CellResult) -> dict[str, Any]:
    return {
        "status": result.status.value,
        "duration": result.duration,
        "error": result.error.name if result.error else None,
        "state_lost": result.state_lost,
        "num_figures": len(result.figures),
        "figures_dropped": False,
    }


def _task_source(
    data_path: str | Path | None,
    tasks: Sequence[Task] | None,
    families: Sequence[str] | None,
    difficulty: str,
    strict: bool,
) -> TaskSource:
    if data_path is not None and tasks is not None:
        raise ValueError("give data_path= or tasks=, not both")
    if data_path is not None:
        return DatasetTasks.from_file(data_path, strict=strict)
    if tasks is not None:
        return DatasetTasks(tasks, name="tasks")
    from pyvision_env.tasks.builtin import BuiltinTasks

    return BuiltinTasks(families, difficulty=difficulty)


def _check_args(max_turns, max_images, initial_frames, on_error, chat_form, render_mode) -> None:
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    if initial_frames < 0:
        raise ValueError(f"initial_frames must be >= 0, got {initial_frames}")
    if max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    if on_error not in ("observe", "terminate"):
        raise ValueError(f"on_error must be 'observe' or 'terminate', got {on_error!r}")
    if chat_form not in ("observation", "inline"):
        raise ValueError(f"chat_form must be 'observation' or 'inline', got {chat_form!r}")
    if render_mode not in (None, *PyVisionEnv.metadata["render_modes"]):
        raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
