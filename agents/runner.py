"""The episode runner: drives several envs with one agent, one batched agent call per turn."""

from __future__ import annotations

import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence, Union

import gymnasium as gym
import numpy as np

from pyvision_agents.base import Agent, AgentFailure, EpisodeContext
from pyvision_agents.ray_pool import EnvLost, RayEnvPool
from pyvision_env import info as keys
from pyvision_env.info import EndReason

ENV_ERROR = "ENV_ERROR"      # end reason when the env itself raised: a bug to report, not the policy
AGENT_ERROR = "AGENT_ERROR"  # end reason when the agent could not produce a turn (endpoint down, ...)

EnvSource = Union[Callable[[], gym.Env], gym.vector.VectorEnv, RayEnvPool]


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode, as written to the benchmark's JSONL file.

    `transcript` is the chat: `{"role", "content": [{"type": "text", "text"} |
    {"type": "image", "image": k}]}` where `k` indexes `images`, the episode's images in order
    (arrays, kept out of `to_json`; the results file stores them as PNG files).
    """

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
    images_shown: int
    visual_tokens: int
    end_reason: str
    wall_time: float
    error: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    images: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, without the image arrays."""
        data = asdict(self)
        del data["images"]
        return data


@dataclass
class _Running:
    episode: int
    seed: int
    context: EpisodeContext
    started: float
    reward: float = 0.0


def run_episodes(
    envs: EnvSource,
    agent: Agent,
    episodes: Sequence[tuple[int, int]],
    *,
    env_id: str = "",
    num_envs: int = 1,
    num_env_workers: int = 0,
    ray_address: str | None = None,
) -> Iterator[EpisodeRecord]:
    """Play `episodes` ((episode index, seed) pairs) and yield each record as it finishes.

    `envs` is a function that makes one env (the runner makes `num_envs` of them and closes
    them at the end) or a synchronous vector env from `gymnasium.make_vec(...,
    vectorization_mode="sync")`, whose sub-envs are driven one by one (`num_envs` is then the
    vector's size; the caller closes it), or a `RayEnvPool` (all its slots are used; the caller
    closes it). Each turn the agent gets one call with every active episode; then the episodes'
    `step`s (and the `reset`s of the episodes that take a freed env) run at the same time, one
    thread per env, so the code cells of different episodes run concurrently in their sandboxes. Records are yielded in the order episodes finish; a freed
    env takes the next episode, which joins the next agent call.
    An env that raises ends that episode with end reason ENV_ERROR, an agent that returns an
    `AgentFailure` for it with AGENT_ERROR; the run goes on.

    With `num_env_workers` > 0 the `num_envs` envs live in a Ray pool of that many actors
    (`pyvision_agents.ray_pool`, on the cluster at `ray_address`, or a local Ray instance) and
    `envs` (a function) is called there; an episode whose actor died ends with SANDBOX_FAILURE.
    """
    queue = list(reversed(episodes))
    pool, close = _env_pool(envs, num_envs, len(episodes), num_env_workers, ray_address)
    running: dict[int, _Running] = {}
    threads = ThreadPoolExecutor(max_workers=len(pool), thread_name_prefix="pyvision-env")
    try:
        resets = set()
        for slot in range(len(pool)):
            if queue:
                resets.add(threads.submit(_reset, slot, pool[slot], queue.pop(), agent, env_id))
        yield from _turn(threads, resets, pool, queue, running, agent, env_id)
        while running:
            slots = sorted(running)
            actions = agent.act([running[slot].context for slot in slots])
            if len(actions) != len(slots):
                raise RuntimeError(
                    f"agent {agent.name!r} returned {len(actions)} actions for {len(slots)} episodes"
                )
            jobs = {threads.submit(_advance, slot, pool[slot], running[slot], action, agent, env_id)
                    for slot, action in zip(slots, actions)}
            yield from _turn(threads, jobs, pool, queue, running, agent, env_id)
    finally:
        threads.shutdown(wait=True, cancel_futures=True)
        close()


def _turn(threads, jobs, pool, queue, running, agent, env_id) -> Iterator[EpisodeRecord]:
    """Wait for this turn's steps and resets as they finish: yield each finished episode's record,
    and start the next queued episode on the env it freed."""
    while jobs:
        done, jobs = wait(jobs, return_when=FIRST_COMPLETED)
        for job in done:
            slot, outcome = job.result()
            if isinstance(outcome, _Running):  # started, or still going: it joins the next call
                running[slot] = outcome
                continue
            running.pop(slot, None)
            yield outcome
            if queue:
                jobs.add(threads.submit(_reset, slot, pool[slot], queue.pop(), agent, env_id))


def _env_pool(envs: EnvSource, num_envs: int, num_episodes: int, num_env_workers: int,
              ray_address: str | None) -> tuple[list[gym.Env], Callable[[], None]]:
    """The envs to play in, and what closes them at the end."""
    if isinstance(envs, gym.vector.VectorEnv):
        sub_envs = getattr(envs, "envs", None)
        if sub_envs is None:
            raise TypeError(
                f"the runner drives each sub-env on its own schedule, which needs a synchronous "
                f"vector env; got {type(envs).__name__}. Use gymnasium.make_vec(..., "
                f"vectorization_mode='sync') or pass a function that makes one env"
            )
        if num_env_workers:
            raise TypeError("num_env_workers needs a function that makes one env, not a vector env")
        return list(sub_envs), lambda: None
    if isinstance(envs, RayEnvPool):
        return envs.envs(), lambda: None
    size = max(1, min(num_envs, num_episodes))
    if num_env_workers:
        workers = min(num_env_workers, size)
        remote = RayEnvPool(envs, num_workers=workers, envs_per_worker=-(-size // workers),
                            address=ray_address)
        return remote.envs()[:size], remote.close
    local = [envs() for _ in range(size)]

    def close_all() -> None:
        for env in local:
            env.close()

    return local, close_all


def _reset(slot, env, episode: tuple[int, int], agent: Agent, env_id: str):
    """Reset `env` on `episode`: (slot, the running episode), or (slot, its error record) when
    the reset raised (a broken task: recorded, and the run goes on)."""
    index, seed = episode
    started = time.monotonic()
    try:
        observation, info = env.reset(seed=seed)
    except Exception as error:
        return slot, _error_record(env_id, agent, index, seed, started, ENV_ERROR, _describe(error))
    context = EpisodeContext(slot, info[keys.MESSAGES], observation, info, info)
    return slot, _Running(index, seed, context, started)


def _advance(slot, env, run: _Running, action, agent: Agent, env_id: str):
    """Play one turn: (slot, `run` updated) while the episode goes on, (slot, its record) once over."""
    if isinstance(action, AgentFailure):
        return slot, _record(run, 0.0, run.context.info, agent, env_id,
                             end_reason=AGENT_ERROR, error=action.message)
    try:
        observation, reward, terminated, truncated, info = env.step(action)
    except EnvLost as error:  # the Ray actor holding the env died: infrastructure, not the policy
        return slot, _error_record(env_id, agent, run.episode, run.seed, run.started,
                                   EndReason.SANDBOX_FAILURE.value, str(error), run.context.reset_info)
    except Exception as error:
        return slot, _error_record(env_id, agent, run.episode, run.seed, run.started, ENV_ERROR,
                                   _describe(error), run.context.reset_info)
    run.context.observation = observation
    run.context.info = info
    run.context.messages = info[keys.MESSAGES]
    if not (terminated or truncated):
        return slot, run
    return slot, _record(run, float(reward), info, agent, env_id)


def _record(run: _Running, reward: float, info, agent: Agent, env_id: str, *,
            end_reason: str | None = None, error: str | None = None) -> EpisodeRecord:
    task = run.context.reset_info
    transcript, images = transcript_of(info[keys.MESSAGES])
    return EpisodeRecord(
        env_id=env_id,
        agent=agent.name,
        episode=run.episode,
        seed=run.seed,
        task_id=task[keys.TASK_ID],
        task_source=task[keys.TASK_SOURCE],
        answer_type=task[keys.ANSWER_TYPE],
        question=task[keys.QUESTION],
        ground_truth=info[keys.GROUND_TRUTH] or "",
        predicted=info[keys.ANSWER],
        correct=bool(info[keys.CORRECT]),
        reward=reward,
        reward_parts=info[keys.REWARD_PARTS],
        turns=info[keys.TURN],
        code_cells=info[keys.NUM_CODE_CELLS],
        images_shown=info[keys.NUM_IMAGES],
        visual_tokens=info[keys.VISUAL_TOKENS],
        end_reason=end_reason or info[keys.END_REASON],
        wall_time=time.monotonic() - run.started,
        error=error or info.get(keys.JUDGE_ERROR),
        transcript=transcript,
        images=tuple(images),
    )


def transcript_of(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The chat as JSON-ready data (images replaced by their index) and the images in order."""
    transcript, images = [], []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "image": len(images)})
                images.append(part["image"])
            else:
                content.append({"type": "text", "text": part["text"]})
        transcript.append({"role": message["role"], "content": content})
    return transcript, images


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def _error_record(env_id, agent, episode, seed, started, end_reason, message,
                  reset_info=None) -> EpisodeRecord:
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
        images_shown=0,
        visual_tokens=0,
        end_reason=end_reason,
        wall_time=time.monotonic() - started,
        error=message,
    )
