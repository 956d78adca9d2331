"""`PyVisionEnv`: the Gymnasium face of one agentic-vision episode (question, code turns, answer)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from pyvision_env import info as keys
from pyvision_env.config import (
    ConfigError,
    EpisodeLimits,
    ProtocolOptions,
    build_configs,
    check_components,
    sandbox_settings,
)
from pyvision_env.info import NO_EXEC, EndReason, ExecRecord
from pyvision_env.media.episode import EpisodeMedia, load_media
from pyvision_env.media.tokens import PYVISION_RL_RULE, VisualTokenRule
from pyvision_env.protocol import (
    FORMAT_ERROR_MESSAGE,
    PromptBuilder,
    parse_turn,
    parts_images,
    parts_to_text,
    render_cell,
    render_format_error,
)
from pyvision_env.rewards import RewardConfig, RewardParts, compute_reward
from pyvision_env.rewards.judge import grade_answer
from pyvision_env.sandbox import CellResult, CellStatus, Sandbox, SandboxConfig, make_sandbox
from pyvision_env.spaces import TextSpace, observation_space
from pyvision_env.tasks.sources import DatasetTasks, TaskSource
from pyvision_env.tasks.task import Task, TaskView
from pyvision_env.transcript import Part, Transcript

Observation = dict[str, Any]  # {"text": str, "images": tuple[np.ndarray, ...]}
StepResult = tuple[Observation, float, bool, bool, dict[str, Any]]

MAX_TEXT = 1_000_000
MAX_IMAGE_SIDE = 65_535
MAX_DRAWS = 20  # with strict=False, tasks whose media fail to load are skipped this many times
_FAILED_BY_POLICY = (None, CellStatus.ERROR, CellStatus.TIMEOUT)  # None: a malformed turn


@dataclass
class _Episode:
    """The running (or last) episode: its task, its chat, and how it ended."""

    task: Task
    chat: Transcript
    sandbox: Sandbox
    start_time: float
    last_exec: ExecRecord = NO_EXEC
    answer: str | None = None
    correct: bool = False
    reward_parts: RewardParts = field(default_factory=lambda: RewardParts(0.0, 0.0, 0.0))
    end_reason: EndReason | None = None
    judge_error: str | None = None


class PyVisionEnv(gym.Env[Observation, str]):
    """A multimodal model answers a question about images or a video by writing Python.

    Action: the model's text for one turn. It holds either a code cell
    (``<code>```python ...```</code>``), which runs in a persistent sandbox, or the final answer
    (``<answer>\\boxed{...}</answer>``), which ends the episode.

    Observation: ``{"text": str, "images": tuple}``. After `reset` the text is the rendered prompt
    and the images are the task images (when shown; a video prompt gives only the video's
    metadata unless `initial_frames` > 0); after a code turn the text is the ``<interpreter>``
    block and the images are the figures the cell showed. Each image sits at an ``<image>``
    placeholder in the text. `info` holds everything else (`pyvision_env.info`): the reset `info`
    describes the task without its answer (`TaskView.from_info`), the final one has the answer.

    Args:
        data_path: a PyVision data file (JSON/JSONL); None draws from the built-in task families.
        tasks: tasks to draw from instead of a file (e.g. a list built in code).
        families: built-in family names to draw from (None = all); ignored with data.
        difficulty: built-in family difficulty: "easy", "medium" or "hard".
        strict: a malformed data row, or a task whose media cannot be read at reset, raises
            (True) or is skipped with a warning (False).
        limits: turn, image, context and time budgets (`EpisodeLimits`).
        protocol: chat form, error handling, prompt (`ProtocolOptions`).
        reward: accuracy and tool-reward settings.
        token_rule: the visual-token estimate per image (default: the Qwen2.5-VL pixel budget
            PyVision-RL trained with, 3136..2,000,000 pixels).
        sandbox: a backend name ("local", "docker"), or a callable that builds a `Sandbox`
            from a `SandboxConfig` (a custom backend).
        sandbox_config: sandbox limits (default `SandboxConfig()`).
        cell_timeout: wall-clock seconds per code cell; when given, it replaces
            `sandbox_config.cell_timeout` (30 s by default; PyVision: about 30).
        render_mode: None or "ansi" (the transcript as text).
        **options: any field of `EpisodeLimits` or `ProtocolOptions` as a flat keyword
            (``max_turns=5``, ``chat_form="inline"``); it overrides that field of `limits` /
            `protocol`.

    Raises:
        ConfigError: an unknown or ill-typed option; the message says what to change.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        data_path: str | Path | None = None,
        *,
        tasks: Sequence[Task] | None = None,
        families: Sequence[str] | None = None,
        difficulty: str = "medium",
        strict: bool = True,
        limits: EpisodeLimits | None = None,
        protocol: ProtocolOptions | None = None,
        reward: RewardConfig | None = None,
        token_rule: VisualTokenRule | None = None,
        sandbox: str | Callable[[SandboxConfig], Sandbox] = "local",
        sandbox_config: SandboxConfig | None = None,
        cell_timeout: float | None = None,
        render_mode: str | None = None,
        **options: Any,
    ):
        self.limits, self.protocol = build_configs(limits, protocol, options)
        check_components(reward=reward, token_rule=token_rule, sandbox=sandbox,
                         render_mode=render_mode)
        self.prompts = PromptBuilder.load(self.protocol.prompt_template, self.protocol.prompt_type,
                                          self.protocol.image_in_prompt)
        self.task_source = _task_source(data_path, tasks, families, difficulty, strict)
        self.strict = strict
        self.reward_config = reward or RewardConfig()
        self.token_rule = token_rule or PYVISION_RL_RULE
        self.sandbox_config = sandbox_settings(sandbox_config, cell_timeout)
        self.sandbox_backend = sandbox
        self.render_mode = render_mode
        self.action_space = TextSpace(MAX_TEXT)
        self.observation_space = observation_space(MAX_TEXT, MAX_IMAGE_SIDE)
        self._sandbox: Sandbox | None = None
        self._episode: _Episode | None = None
        self._closed = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode: pick a task, start a fresh sandbox with its media, render the prompt.

        `options` may name the task: {"task": Task}, {"task_id": str} or {"task_index": int}
        (dataset sources only). Otherwise the task is drawn with the env's seeded generator.
        """
        super().reset(seed=seed)
        self._episode, self._closed = None, False
        task, media = _draw_task(self.task_source, options or {}, self.np_random,
                                 strict=self.strict, initial_frames=self.protocol.initial_frames)
        sandbox = self._start_sandbox(task, media)
        prompt = self.prompts.build(task.question, media)
        chat = Transcript(prompt, chat_form=self.protocol.chat_form,
                          num_input_images=len(media.images), token_rule=self.token_rule)
        self._episode = _Episode(task, chat, sandbox, start_time=time.monotonic())
        return _observation(prompt), {**_info(self._episode), **TaskView.of(task).as_info()}

    def step(self, action: str) -> StepResult:
        """Take the model's text for one turn; run its code or grade its answer."""
        episode = self._running_episode()
        if not isinstance(action, str):
            raise TypeError(f"action must be the model's text (str), got {type(action).__name__}")
        episode.chat.add_action(action)
        turn = parse_turn(action)
        if turn.kind == "answer":
            return self._finish_with_answer(episode, turn.answer)
        status: CellStatus | None = None
        if turn.kind == "code":
            result = self._run_cell(episode, turn.code)
            status = result.status
            parts = render_cell(result, episode.chat.next_clue, form=self.protocol.chat_form,
                                max_output_chars=self.protocol.max_output_chars)
        else:
            episode.last_exec = NO_EXEC
            parts = render_format_error(FORMAT_ERROR_MESSAGE, self.protocol.chat_form)
        episode.chat.add_observation(parts)
        episode.end_reason = self._end_reason_after(episode, status)
        if episode.end_reason is not None:
            self._release_sandbox()
        terminated = episode.end_reason is EndReason.ERROR_IN_ACTION  # the only terminal failure
        truncated = episode.end_reason is not None and not terminated
        return _observation(parts), 0.0, terminated, truncated, _info(episode)

    def render(self) -> str | None:
        """With render_mode="ansi", the episode's transcript with `<image>` placeholders."""
        if self.render_mode != "ansi" or self._episode is None:
            return None
        return self._episode.chat.to_text()

    def close(self) -> None:
        """Stop the sandbox. `step` then raises until the next `reset`."""
        self._release_sandbox()
        self._sandbox, self._closed = None, True
        super().close()

    def _running_episode(self) -> _Episode:
        """The episode `step` may act on; a Gymnasium error saying what to call otherwise."""
        if self._closed:
            raise gym.error.ClosedEnvironmentError(
                "step() on a closed env; call reset() to start a new episode")
        if self._episode is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._episode.end_reason is not None:
            raise gym.error.ResetNeeded(
                f"the episode is over ({self._episode.end_reason.value}); call reset()")
        return self._episode

    def _start_sandbox(self, task: Task, media: EpisodeMedia) -> Sandbox:
        """Start the env's sandbox (built on first use) with the episode's media preloaded."""
        if self._sandbox is None:
            self._sandbox = _build_sandbox(self.sandbox_backend, self.sandbox_config)
        self._sandbox.start(images=list(media.images), videos=[str(p) for p in task.videos])
        return self._sandbox

    def _run_cell(self, episode: _Episode, code: str) -> CellResult:
        """Run one cell; keep the figures that fit under `max_images`; record how it ran."""
        result = episode.sandbox.run(code)
        if result.status is not CellStatus.SANDBOX_FAILURE:  # our failure is not the policy's cell
            episode.chat.count_cell()
        room = episode.chat.image_room(self.limits.max_images)
        dropped = len(result.figures) > room
        if dropped:
            note = (f"{len(result.figures) - room} more figure(s) were dropped: the episode's "
                    f"image budget (max_images={self.limits.max_images}) is used up")
            result = replace(result, figures=result.figures[:room], notes=(*result.notes, note))
        episode.last_exec = _exec_record(result, figures_dropped=dropped)
        return result

    def _finish_with_answer(self, episode: _Episode, answer: str | None) -> StepResult:
        verdict = grade_answer(episode.task, answer, self.reward_config.judge)
        episode.answer, episode.correct = answer, verdict.correct
        episode.reward_parts = compute_reward(verdict, episode.chat.num_code_cells,
                                              self.reward_config, self.limits.max_turns)
        episode.last_exec, episode.judge_error = NO_EXEC, verdict.judge_error
        episode.end_reason = EndReason.JUDGE_FAILURE if verdict.judge_error else EndReason.DONE
        self._release_sandbox()
        return _observation([]), episode.reward_parts.total, True, False, _info(episode)

    def _end_reason_after(self, episode: _Episode, status: CellStatus | None) -> EndReason | None:
        """Why the episode ends after a turn that ran a cell (`status`) or was malformed (None)."""
        if status is CellStatus.SANDBOX_FAILURE:
            return EndReason.SANDBOX_FAILURE
        if status in _FAILED_BY_POLICY and self.protocol.on_error == "terminate":
            return EndReason.ERROR_IN_ACTION
        return self.limits.exceeded(
            turns=episode.chat.turns,
            context_tokens=episode.chat.context_tokens,
            seconds=time.monotonic() - episode.start_time,
            figures_dropped=episode.last_exec.figures_dropped,
        )

    def _release_sandbox(self) -> None:
        """Free the worker as soon as an episode is over; the next reset starts a fresh one."""
        if self._sandbox is not None:
            self._sandbox.close()


def _observation(parts: list[Part]) -> Observation:
    return {"text": parts_to_text(parts), "images": tuple(parts_images(parts))}


def _build_sandbox(backend: str | Callable[[SandboxConfig], Sandbox],
                   config: SandboxConfig) -> Sandbox:
    return make_sandbox(backend, config) if isinstance(backend, str) else backend(config)


def _exec_record(result: CellResult, *, figures_dropped: bool) -> ExecRecord:
    return ExecRecord(
        status=result.status.value,
        duration=result.duration,
        error=result.error.name if result.error else None,
        state_lost=result.state_lost,
        num_figures=len(result.figures),
        figures_dropped=figures_dropped,
    )


def _info(episode: _Episode) -> dict[str, Any]:
    """The `info` of the episode's current state, formatted last from its typed state."""
    chat = episode.chat
    return {
        keys.MESSAGES: chat.snapshot(),
        keys.TURN: chat.turns,
        keys.NUM_CODE_CELLS: chat.num_code_cells,
        keys.NUM_IMAGES: chat.num_images,
        keys.VISUAL_TOKENS: chat.visual_tokens,
        keys.EXEC: episode.last_exec.as_dict(),
        keys.END_REASON: episode.end_reason.value if episode.end_reason else None,
        keys.ANSWER: episode.answer,
        keys.CORRECT: episode.correct,
        keys.REWARD_PARTS: episode.reward_parts.as_dict(),
        keys.TASK_ID: episode.task.id,
        keys.GROUND_TRUTH: episode.task.answer if episode.end_reason else None,
        keys.JUDGE_ERROR: episode.judge_error,
    }


def _draw_task(
    source: TaskSource, options: dict[str, Any], rng: np.random.Generator, *, strict: bool,
    initial_frames: int,
) -> tuple[Task, EpisodeMedia]:
    """Pick a task and load its media. A task whose media fail to load raises, naming the
    file; with strict=False a drawn (not requested) task is skipped with a warning instead."""
    requested = bool({"task", "task_id", "task_index"} & set(options))
    for _ in range(MAX_DRAWS):
        task = _pick_task(source, options, rng)
        try:
            return task, load_media(task.images, task.videos, initial_frames=initial_frames)
        except (OSError, ValueError) as error:
            if strict or requested:
                raise
            warnings.warn(f"skipping task {task.id!r}: {error}", stacklevel=3)
    raise RuntimeError(f"{MAX_DRAWS} tasks in a row had media that could not be loaded")


def _pick_task(source: TaskSource, options: dict[str, Any], rng: np.random.Generator) -> Task:
    """The task `options` names ("task", "task_id", "task_index"), else one drawn with `rng`."""
    if "task" in options:
        task = options["task"]
        if not isinstance(task, Task):
            raise TypeError(f"options['task'] must be a Task, got {type(task).__name__}")
        return task
    if "task_id" in options:
        return source.from_id(options["task_id"])
    if "task_index" in options:
        if not isinstance(source, DatasetTasks):
            raise ValueError("options['task_index'] needs a dataset (data_path= or tasks=)")
        return source[int(options["task_index"])]
    return source.sample(rng)


def _task_source(
    data_path: str | Path | None,
    tasks: Sequence[Task] | None,
    families: Sequence[str] | None,
    difficulty: str,
    strict: bool,
) -> TaskSource:
    if data_path is not None and tasks is not None:
        raise ConfigError("give data_path= or tasks=, not both")
    if isinstance(families, str):
        raise ConfigError(f"families must be a list of family names, got the string "
                          f"{families!r}; pass families=[{families!r}]")
    if tasks is not None:
        tasks = [] if isinstance(tasks, (str, bytes)) else list(tasks)
        if not tasks or not all(isinstance(task, Task) for task in tasks):
            raise ConfigError("tasks must be a non-empty list of pyvision_env.Task records; "
                              "for a data file pass data_path= instead")
    if not isinstance(strict, bool):
        raise ConfigError(f"strict must be true or false, got {strict!r}")
    if data_path is not None:
        return DatasetTasks.from_file(data_path, strict=strict)
    if tasks is not None:
        return DatasetTasks(tasks, name="tasks")
    from pyvision_env.tasks.builtin import BuiltinTasks

    return BuiltinTasks(families, difficulty=difficulty)
