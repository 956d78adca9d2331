"""What a benchmark run is, kept as `run.json` next to its results so a rerun resumes only the same run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym

from pyvision_agents.results import RESULTS_FILE, write_text_atomic
from pyvision_env.tasks.keys import SEED_KEY_ENV, key_fingerprint, seed_key

MANIFEST_FILE = "run.json"
FORMAT = 1
# Agent options that change how a run executes, not what it measures: free to differ on a rerun,
# and never written down (an API key has no place in a results folder).
RUN_ONLY_OPTIONS = frozenset({"api_key", "max_concurrency", "timeout", "max_retries"})


class RunMismatch(ValueError):
    """The output folder holds results of another run; its message names what differs and the fix."""


@dataclass(frozen=True)
class RunManifest:
    """The settings that make a run's episodes comparable.

    Attributes:
        package_version: the installed pyvision-env version.
        seed: the seed of episode 0 (episode i uses seed + i).
        episodes: episodes per (env, agent) recorded so far (a rerun may add more).
        envs: env id -> {"options": the env keyword arguments, "data_file": identity or None};
            a data file's identity is {"path", "size", "sha256"} (a moved file with the same bytes
            is the same data).
        agents: agent name -> {"spec": its spec, "options": its options less `RUN_ONLY_OPTIONS`}.
        task_key: the fingerprint of the key that turns seeds into built-in tasks
            (`pyvision_env.tasks.keys`): the same seed is the same task only under the same key.
    """

    package_version: str
    seed: int
    episodes: int
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_key: str = ""

    @classmethod
    def describe(cls, *, seed: int, episodes: int, env_options: Mapping[str, Mapping[str, Any]],
                 agents: Mapping[str, tuple[str, Mapping[str, Any]]]) -> "RunManifest":
        """The manifest of a run: `env_options` maps env id -> the keyword arguments given for it,
        `agents` maps agent name -> (spec, options). The data file is the `data_path` given, else
        the env's registered one; it must exist."""
        envs = {}
        for env_id, options in env_options.items():
            data_path = options.get("data_path", gym.spec(env_id).kwargs.get("data_path"))
            envs[env_id] = {"options": _plain({k: v for k, v in options.items() if k != "data_path"}),
                            "data_file": data_file_identity(data_path)}
        described = {name: {"spec": spec, "options": _plain({k: v for k, v in options.items()
                                                               if k not in RUN_ONLY_OPTIONS})}
                     for name, (spec, options) in agents.items()}
        return cls(package_version(), seed, episodes, envs, described,
                   task_key=key_fingerprint(seed_key()))

    def differences(self, earlier: "RunManifest") -> list[str]:
        """What makes this run another run than `earlier` ([] when it may resume it).

        More episodes, more envs or more agents are the same run grown; a changed setting of
        anything both runs have is not.
        """
        found = []
        if self.package_version != earlier.package_version:
            found.append(f"pyvision-env version was {earlier.package_version}, now {self.package_version}")
        if self.task_key != earlier.task_key:
            found.append(f"the built-in task key was {earlier.task_key}, now {self.task_key} (the same "
                         f"seeds give other tasks; share one with ${SEED_KEY_ENV})")
        if self.seed != earlier.seed:
            found.append(f"--seed was {earlier.seed}, now {self.seed}")
        for env_id in sorted(self.envs.keys() & earlier.envs.keys()):
            found += _changes(f"env {env_id}", earlier.envs[env_id], self.envs[env_id])
        for name in sorted(self.agents.keys() & earlier.agents.keys()):
            found += _changes(f"agent {name}", earlier.agents[name], self.agents[name])
        return found

    def merged(self, earlier: "RunManifest") -> "RunManifest":
        """This run grown over `earlier`: every env and agent of both, the most episodes."""
        return replace(self, episodes=max(self.episodes, earlier.episodes),
                       envs={**earlier.envs, **self.envs}, agents={**earlier.agents, **self.agents})

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RunManifest":
        data = json.loads(text)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"manifest format is not {FORMAT}")
        return cls(**data)


def open_run(out_dir: str | Path, manifest: RunManifest) -> RunManifest:
    """Claim `out_dir` for the run `manifest` describes and write its `run.json`; return what was written.

    A folder holding the same run (or a smaller one: fewer episodes, envs or agents) is resumed,
    the manifest growing to cover both; one holding another run raises `RunMismatch` naming what
    differs, before anything is written.
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_FILE
    if path.exists():
        try:
            earlier = RunManifest.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError) as error:
            raise RunMismatch(f"{path} is not a manifest this version can read ({error}). "
                              f"Use --overwrite to replace the run in {out_dir}, or another --out") from None
        differences = manifest.differences(earlier)
        if differences:
            raise RunMismatch(f"{out_dir} holds another run: {'; '.join(differences)}. "
                              f"Use --overwrite to replace it, or another --out")
        manifest = manifest.merged(earlier)
    elif (out_dir / RESULTS_FILE).exists():
        raise RunMismatch(f"{out_dir} holds results without a {MANIFEST_FILE} (an older version wrote "
                          f"them), so they may be another run's. Use --overwrite to replace them, "
                          f"or another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, manifest.to_json())
    return manifest


def data_file_identity(path: Any) -> dict[str, Any] | None:
    """{"path", "size", "sha256"} of a data file; None when there is none (built-in tasks)."""
    if path is None:
        return None
    path = Path(path).resolve()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def package_version() -> str:
    try:
        return metadata.version("pyvision-env")
    except metadata.PackageNotFoundError:
        return "unknown"


def _changes(what: str, before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in sorted(before.keys() | now.keys()):
        old, new = before.get(key), now.get(key)
        if key == "data_file" and old and new:  # the bytes matter, not where they lie
            old, new = (old["size"], old["sha256"]), (new["size"], new["sha256"])
            if old != new:
                changes.append(f"{what}: data file {now[key]['path']} changed (size or content)")
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += _changes(f"{what} {key}", old, new)
        elif old != new:
            changes.append(f"{what}: {key} was {old!r}, now {new!r}")
    return changes


def _plain(value: Any) -> Any:
    """JSON data for `value` (objects such as a SandboxConfig by their repr), keys sorted."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))
