"""SFT export: an agent's episodes on any registered env as a chat dataset with images for TRL's `SFTTrainer`."""

from __future__ import annotations

import io
import json
import shutil
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.registry import make_agent
from pyvision_agents.runner import EpisodeRecord, run_episodes
from pyvision_env.info import EndReason

MANIFEST_FILE = "export.json"
SHARD_ROWS = 256  # rows held in memory before they go to disk
ROLES = ("user", "assistant", "observation")
# Episodes a policy ended by itself; the others (ENV_ERROR, AGENT_ERROR, SANDBOX_FAILURE,
# JUDGE_FAILURE) are infrastructure failures and never exported.
POLICY_END_REASONS = frozenset(reason.value for reason in EndReason) - {
    EndReason.SANDBOX_FAILURE.value, EndReason.JUDGE_FAILURE.value
}


@dataclass(frozen=True)
class ExportStats:
    """What an export did.

    Attributes:
        path: the dataset folder (`datasets.load_from_disk(path)` reads it).
        episodes: episodes run.
        written: rows written.
        skipped_incorrect: episodes left out because they were not correct (`only_correct`).
        skipped_failed: episodes ended by an infrastructure failure (env, agent, sandbox, judge),
            or not run because the agent raised.
        skipped_bad: episodes whose chat could not become a training row (see `episode_row`).
        errors: the first few failure messages, for the log.
    """

    path: Path
    episodes: int
    written: int
    skipped_incorrect: int = 0
    skipped_failed: int = 0
    skipped_bad: int = 0
    errors: tuple[str, ...] = field(default=())


def episode_row(record: EpisodeRecord, observation_role: str = "observation") -> dict[str, Any]:
    """One training row: `messages` (content parts, `{"type": "image"}` placeholders) and
    `images` (PNG-encoded, in placeholder order), plus the episode's identity and outcome.

    The env's roles are kept: `user` (the prompt), `assistant` (the policy's turns, the only
    ones trained on) and `observation` (interpreter output, PyVision-RL form), renamed to
    `observation_role` (e.g. "user" for a stock TRL collator, which accepts only
    system/user/assistant/tool). Messages after the last assistant turn (the last observation
    of a truncated episode) are dropped, with their images: nothing would be trained on them.

    Raises:
        ValueError: the chat is not a trainable episode: an unknown role, an image inside an
            assistant turn (the env's inline chat form), or no assistant turn.
    """
    messages = []
    for message in record.transcript:
        role = message["role"]
        if role not in ROLES:
            raise ValueError(f"unexpected role {role!r} in episode {record.episode}")
        parts = [{"type": "image"} if part["type"] == "image" else {"type": "text", "text": part["text"]}
                 for part in message["content"]]
        if role == "assistant" and any(part["type"] == "image" for part in parts):
            raise ValueError("an assistant turn holds interpreter images: export from an env with "
                             "chat_form='observation', so observations are not trained on")
        messages.append({"role": observation_role if role == "observation" else role, "content": parts})
    while messages and messages[-1]["role"] != "assistant":  # a truncated episode's last observation
        messages.pop()
    if not messages:
        raise ValueError(f"episode {record.episode} has no assistant turn")
    images = record.images[:sum(part["type"] == "image" for m in messages for part in m["content"])]
    return {
        "messages": messages,
        "images": [{"bytes": _png(image), "path": None} for image in images],
        "env_id": record.env_id,
        "agent": record.agent,
        "episode": record.episode,
        "seed": record.seed,
        "task_id": record.task_id,
        "correct": record.correct,
        "reward": record.reward,
        "end_reason": record.end_reason,
    }


def export_sft(
    env_id: str,
    out_dir: str | Path,
    *,
    agent: str = "solver",
    episodes: int = 100,
    seed: int = 0,
    num_envs: int = 1,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_options: Mapping[str, Any] | None = None,
    only_correct: bool = True,
    observation_role: str = "observation",
    overwrite: bool = False,
) -> ExportStats:
    """Run `agent` for `episodes` episodes (seeds `seed`, `seed+1`, ...) on `env_id` and write the
    kept ones as a Hugging Face dataset folder at `out_dir` (see `episode_row` for a row).

    Kept: episodes the policy ended itself (not env/agent/sandbox/judge failures) and, with
    `only_correct`, answered correctly. A failing episode or a row that cannot be built is
    skipped and counted, never fatal; an agent that raises stops the run, and the rows so far are
    still written. Rows go to disk in shards of `SHARD_ROWS` as episodes finish (memory stays
    bounded), and the dataset is assembled under a temporary name and moved into place, so a
    killed export leaves no half dataset and a failed one leaves the old `out_dir` whole. The env
    must use `chat_form="observation"` (the default), so interpreter output sits in its own
    messages, outside the loss.

    Raises:
        ValueError: bad arguments, or no episode was kept (nothing is written then).
        FileExistsError: `out_dir` exists and `overwrite` is False.
        ImportError: `datasets` is not installed.
    """
    out_dir = Path(out_dir)
    env_kwargs = dict(env_kwargs or {})
    if env_kwargs.get("chat_form", "observation") != "observation":
        raise ValueError("SFT export needs chat_form='observation': with the inline form the "
                         "interpreter output sits inside assistant turns and would be trained on")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists: choose another output folder or pass overwrite=True")
    try:
        import datasets  # noqa: F401
    except ImportError as error:
        raise ImportError("the SFT export writes a Hugging Face dataset: pip install 'pyvision-env[train]'") from error
    policy = make_agent(agent, agent_options)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shards = _Shards(tmp / "shards")
        counts, errors = _collect(env_id, policy, episodes, seed, num_envs, env_kwargs, only_correct,
                                  observation_role, shards.add)
        stats = ExportStats(out_dir, episodes, shards.rows, errors=tuple(errors[:10]), **counts)
        if not shards.rows:
            raise ValueError(f"no episode of {agent!r} on {env_id} was kept, nothing written: {stats}")
        manifest = {"env_id": env_id, "agent": agent, "seed": seed, "only_correct": only_correct,
                    "observation_role": observation_role, "env_kwargs": env_kwargs,
                    **{k: v for k, v in asdict(stats).items() if k != "path"}}
        _publish(shards, tmp / "dataset", out_dir, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _collect(env_id, policy, episodes, seed, num_envs, env_kwargs, only_correct, observation_role, keep):
    """Run the episodes, pass each kept row to `keep`; return the skip counts and error messages."""
    counts = {"skipped_incorrect": 0, "skipped_failed": 0, "skipped_bad": 0}
    errors: list[str] = []
    seen = 0
    try:
        for record in run_episodes(lambda: gym.make(env_id, **env_kwargs), policy,
                                   [(i, seed + i) for i in range(episodes)], env_id=env_id,
                                   num_envs=num_envs):
            seen += 1
            if record.end_reason not in POLICY_END_REASONS:
                counts["skipped_failed"] += 1
                errors.append(f"episode {record.episode}: {record.end_reason}: {record.error}")
            elif only_correct and not record.correct:
                counts["skipped_incorrect"] += 1
            else:
                try:
                    row = episode_row(record, observation_role)
                except ValueError as error:
                    counts["skipped_bad"] += 1
                    errors.append(f"episode {record.episode}: {error}")
                    continue
                keep(row)
    except Exception as error:  # an agent (or env factory) that raises: keep what was collected
        counts["skipped_failed"] += episodes - seen
        errors.append("run stopped: " + "".join(traceback.format_exception_only(type(error), error)).strip())
    return counts, errors


class _Shards:
    """Rows saved to disk in shards of `SHARD_ROWS` as they come."""

    def __init__(self, folder: Path):
        self.folder, self.pending, self.paths, self.rows = folder, [], [], 0

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        self.rows += 1
        if len(self.pending) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        from datasets import Dataset

        if self.pending:
            path = self.folder / f"{len(self.paths):05d}"
            Dataset.from_list(self.pending, features=_features()).save_to_disk(str(path))
            self.paths.append(path)
            self.pending = []


def _publish(shards: _Shards, staged: Path, out_dir: Path, manifest: dict[str, Any]) -> None:
    """Join the shards into one dataset folder at `staged`, then move it to `out_dir`."""
    from datasets import concatenate_datasets, load_from_disk

    shards.flush()
    concatenate_datasets([load_from_disk(str(path)) for path in shards.paths]).save_to_disk(str(staged))
    (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if out_dir.exists():  # overwrite: the old folder goes only once the new one is complete
        old = staged.with_name("old")
        out_dir.rename(old)
        staged.rename(out_dir)
    else:
        staged.rename(out_dir)


def _features():
    from datasets import Features, Image, List, Value

    return Features({
        "messages": List({"role": Value("string"),
                          "content": List({"type": Value("string"), "text": Value("string")})}),
        "images": List(Image()),
        "env_id": Value("string"),
        "agent": Value("string"),
        "episode": Value("int64"),
        "seed": Value("int64"),
        "task_id": Value("string"),
        "correct": Value("bool"),
        "reward": Value("float64"),
        "end_reason": Value("string"),
    })


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
