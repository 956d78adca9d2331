"""The episode runner: drives several envs with one agent, one batched agent call per turn."""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import gymnasium as gym

from agents.base import Agent, EpisodeContext
from pyvision_env import info as keys
from pyvision_env.protocol import parts_to_text

ENV_ERROR = "ENV_ERROR"  # end reason when the env itself raised: a bug to report, not the policy


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode, as written to the benchmark's JSONL file."""

    env_id: str
    agent: str
    episode: int
    seed: int
    task_id: str
    task_source: str
    answer_type: str
    question: str
    ground_truth: str
    predicted: str | None
    correct: bool
    reward: float
    reward_parts: dict[str, float]
    turns: int
    code_cells: int
    images: int
    visual_tokens: int
    end_reason: str
    wall_time: float
    error: str | None = None
    transcript: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Running:
    episode: int
    seed: int
    context: EpisodeContext
    started: float
    reward: float = 0.0


def run_episodes(
    make_env: Callable[[], gym.Env],
    agent: Agent,
    episodes: Sequence[tuple[int, int]],
    *,
    env_id: str = "",
    num_envs: int = 1,
) -> Iterator[EpisodeRecord]:
    """Play `episodes` ((episode index, seed) pairs) and yield each record as it finishes.

    `num_envs` envs run side by side; each turn the agent gets one call with every active
    episode, so episodes finish at different times and a freed env takes the next episode.
    An env that raises ends that episode with end reason ENV_ERROR; the run goes on.
    """
    queue = list(reversed(episodes))
    envs = [make_env() for _ in range(max(1, min(num_envs, len(episodes))))]
    running: dict[int, _Running] = {}
    try:
        for slot in range(len(envs)):
            yield from _start_next(envs, slot, queue, running, agent, env_id)
        while running:
            slots = sorted(running)
            actions = agent.act([running[slot].context for slot in slots])
            for slot, action in zip(slots, actions, strict=True):
                record = _advance(envs[slot], running[slot], action, agent, env_id)
                if record is not None:
                    del running[slot]
                    yield record
                    yield from _start_next(envs, slot, queue, running, agent, env_id)
    finally:
        for env in envs:
            env.close()


def _start_next(envs, slot, queue, running, agent, env_id) -> Iterator[EpisodeRecord]:
    """Reset `slot`'s env on the next queued episode; a reset that fails is recorded and skipped."""
    while queue:
        episode, seed = queue.pop()
        started = time.monotonic()
        try:
            observation, info = envs[slot].reset(seed=seed)
        except Exception as error:  # a broken task: record it, keep going
            yield _error_record(env_id, agent, episode, seed, started, error)
            continue
        context = EpisodeContext(slot, info[keys.MESSAGES], observation, info, info)
        running[slot] = _Running(episode, seed, context, started)
        return


def _advance(env, run: _Running, action: str, agent: Agent, env_id: str) -> EpisodeRecord | None:
    try:
        observation, reward, terminated, truncated, info = env.step(action)
    except Exception as error:
        return _error_record(env_id, agent, run.episode, run.seed, run.started, error,
                             run.context.reset_info)
    run.context.observation = observation
    run.context.info = info
    run.context.messages = info[keys.MESSAGES]
    if not (terminated or truncated):
        return None
    return _record(env, run, float(reward), info, agent, env_id)


def _record(env, run: _Running, reward: float, info, agent: Agent, env_id: str) -> EpisodeRecord:
    task = env.unwrapped.current_task
    return EpisodeRecord(
        env_id=env_id,
        agent=agent.name,
        episode=run.episode,
        seed=run.seed,
        task_id=task.id,
        task_source=task.source,
        answer_type=task.answer_type,
        question=task.question,
        ground_truth=task.answer,
        predicted=info[keys.ANSWER],
        correct=bool(info[keys.CORRECT]),
        reward=reward,
        reward_parts=info[keys.REWARD_PARTS],
        turns=info[keys.TURN],
        code_cells=info[keys.NUM_CODE_CELLS],
        images=info[keys.NUM_IMAGES],
        visual_tokens=info[keys.VISUAL_TOKENS],
        end_reason=info[keys.END_REASON],
        wall_time=time.monotonic() - run.started,
        transcript=[
            {"role": m["role"], "text": parts_to_text(m["content"])} for m in info[keys.MESSAGES]
        ],
    )


def _error_record(env_id, agent, episode, seed, started, error, reset_info=None) -> EpisodeRecord:
    reset_info = reset_info or {}
    return EpisodeRecord(
        env_id=env_id,
        agent=agent.name,
        episode=episode,
        seed=seed,
        task_id=reset_info.get(keys.TASK_ID, ""),
        task_source=reset_info.get(keys.TASK_SOURCE, ""),
        answer_type=reset_info.get(keys.ANSWER_TYPE, ""),
        question=reset_info.get(keys.QUESTION, ""),
        ground_truth="",
        predicted=None,
        correct=False,
        reward=0.0,
        reward_parts={"accuracy": 0.0, "tool": 0.0, "total": 0.0},
        turns=0,
        code_cells=0,
        images=0,
        visual_tokens=0,
        end_reason=ENV_ERROR,
        wall_time=time.monotonic() - started,
        error="".join(traceback.format_exception_only(type(error), error)).strip(),
    )
