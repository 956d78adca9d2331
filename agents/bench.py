"""The benchmark harness: agents x envs, resumable JSONL results, leaderboard, plots and viewer."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.manifest import MANIFEST_FILE, RunManifest, open_run
from pyvision_agents.plots import ACCURACY_PLOT, CODE_CELLS_PLOT, plot_accuracy_vs_visual_tokens, plot_code_cells
from pyvision_agents.registry import AGENTS, agent_name, check_agent, make_agent
from pyvision_agents.results import (
    IMAGES_DIR,
    RESULTS_FILE,
    ResultsFile,
    episode_key,
    latest_records,
    write_text_atomic,
)
from pyvision_agents.runner import run_episodes
from pyvision_agents.summary import UNSCORED, Summary, format_table, leaderboard, summarize
from pyvision_agents.viewer import VIEWER_FILE, write_viewer
from pyvision_env import EpisodeLimits

SUMMARY_FILE = "summary.json"
LEADERBOARD_FILE = "leaderboard.txt"
REPORT_FILES = (SUMMARY_FILE, LEADERBOARD_FILE, ACCURACY_PLOT, CODE_CELLS_PLOT, VIEWER_FILE)


def bench(
    env_ids: Sequence[str],
    agent_specs: Sequence[str],
    episodes: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_envs: int = 1,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
    viewer: bool = True,
    save_images: bool = True,
    num_env_workers: int = 0,
    ray_address: str | None = None,
) -> list[Summary]:
    """Run every agent on every env for `episodes` episodes (seeds `seed`, `seed+1`, ...).

    Each episode's record goes to `out_dir/episodes.jsonl` as it finishes, and `out_dir/run.json`
    says what the run is (see `pyvision_agents.manifest.RunManifest`). A rerun of the same run
    (or of the same run with more episodes, envs or agents) skips the episodes already recorded,
    says how many on stderr, and plays again those that ended in an infrastructure error
    (`UNSCORED`; the new record supersedes the old, which stays in the file). A model is loaded
    only if it has episodes left. A rerun with other settings raises `RunMismatch` naming what
    differs, unless `overwrite`, which first deletes the earlier run's files.
    Then `summary.json` and `leaderboard.txt`, the plots (`accuracy_vs_visual_tokens.png`,
    `code_cells_per_episode.png`) and `viewer.html` are (re)written from the records asked for.
    `agent_options` go to every model agent (see `pyvision_agents.registry.make_agent`); a `vllm`
    agent gets the envs' image budget as `max_images` unless given one. Bad arguments raise
    before anything is written (see `check_args`). Returns the summaries in leaderboard order.
    With `num_env_workers` > 0 the envs run in that many Ray actors (at `ray_address`, or a local
    Ray instance; see `pyvision_agents.ray_pool`).
    """
    names = check_args(env_ids, agent_specs, episodes, env_kwargs, agent_options)
    env_kwargs = dict(env_kwargs or {})
    options = {spec: _options_for(spec, agent_options, env_ids, env_kwargs) for spec in agent_specs}
    manifest = RunManifest.describe(
        seed=seed, episodes=episodes, env_options={env_id: env_kwargs for env_id in env_ids},
        agents={names[spec]: (spec, options[spec]) for spec in agent_specs},
    )
    if overwrite:
        clear_run(out_dir)
    open_run(out_dir, manifest)
    results = ResultsFile(out_dir, save_images=save_images)
    wanted = {(env_id, names[spec], i) for spec in agent_specs for env_id in env_ids for i in range(episodes)}
    done = {episode_key(r) for r in latest_records(results.records) if r["end_reason"] not in UNSCORED}
    _say_resumed(out_dir, done & wanted, {episode_key(r) for r in results.records} & wanted - done)
    for spec in agent_specs:
        todo = {
            env_id: [(i, seed + i) for i in range(episodes) if (env_id, names[spec], i) not in done]
            for env_id in env_ids
        }
        if not any(todo.values()):
            continue
        agent = make_agent(spec, options[spec])
        for env_id in env_ids:
            _run_pair(env_id, agent, todo[env_id], results, num_envs, env_kwargs, progress,
                      num_env_workers, ray_address)
    records = [r for r in latest_records(results.records) if episode_key(r) in wanted]
    summaries = leaderboard(summarize(records, e, names[a]) for a in agent_specs for e in env_ids)
    write_reports(out_dir, summaries, records, plots=plots, viewer=viewer)
    return summaries


class BadArguments(ValueError):
    """Arguments the benchmark cannot run with; the message says what is wrong and the fix."""


def check_args(env_ids: Sequence[str], agent_specs: Sequence[str], episodes: int,
               env_kwargs: Mapping[str, Any] | None = None,
               agent_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Fail fast, with a message that says the fix, on bad arguments; return each spec's agent name.

    Checks: at least one episode; known env ids (with Gymnasium's closest-name suggestion); env
    options each env takes and values it accepts (one env of each id is built and closed, so a
    bad data file fails here); known agents with distinct names and options their backend takes.
    Raises `BadArguments`.
    """
    if episodes < 1:
        raise BadArguments(f"--episodes must be at least 1, got {episodes}")
    try:
        for env_id in env_ids:
            _check_env(env_id, dict(env_kwargs or {}))
        for spec in agent_specs:
            check_agent(spec, _options_for(spec, agent_options, env_ids, dict(env_kwargs or {})))
        names = {spec: agent_name(spec, agent_options) for spec in agent_specs}
    except (ValueError, TypeError, gym.error.Error) as error:
        raise BadArguments(str(error)) from None
    repeated = [name for name, count in Counter(names[spec] for spec in agent_specs).items() if count > 1]
    if repeated:
        raise BadArguments(f"two agents would both be named {repeated[0]!r} in the results: "
                           f"give each agent once, and no shared name= option")
    return names


def clear_run(out_dir: str | Path) -> None:
    """Delete a run's files from `out_dir`: records, images, manifest, reports (nothing else)."""
    out_dir = Path(out_dir)
    for name in (RESULTS_FILE, MANIFEST_FILE, *REPORT_FILES):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)


def write_reports(out_dir: str | Path, summaries: Sequence[Summary], records: Sequence[dict[str, Any]],
                  *, plots: bool = True, viewer: bool = True) -> None:
    """Write summary.json, leaderboard.txt and (optionally) the plots and the viewer."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / SUMMARY_FILE, json.dumps([asdict(s) for s in summaries], indent=2) + "\n")
    write_text_atomic(out_dir / LEADERBOARD_FILE, format_table(summaries) + "\n")
    if plots:
        plot_accuracy_vs_visual_tokens(summaries, out_dir / ACCURACY_PLOT)
        plot_code_cells(records, out_dir / CODE_CELLS_PLOT)
    if viewer:
        write_viewer(out_dir)


def _options_for(spec, agent_options, env_ids, env_kwargs) -> dict[str, Any]:
    if spec in AGENTS:
        return {}
    options = dict(agent_options or {})
    if spec.startswith("vllm:"):
        budgets = [env_kwargs.get("max_images", gym.spec(e).kwargs.get("max_images", EpisodeLimits().max_images))
                   for e in env_ids]
        options.setdefault("max_images", max(budgets))
    return options


def _check_env(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Build one env of `env_id` with `env_kwargs`: its own error (an unknown option with the
    closest name, an ill-typed value, a bad data file) becomes one line."""
    gym.spec(env_id)  # raises with Gymnasium's closest-name suggestion
    try:
        gym.make(env_id, **env_kwargs).close()
    except (TypeError, ValueError) as error:  # Gymnasium re-raises the env's error with the kwargs
        cause = error.__cause__ if type(error.__cause__) is type(error) else error
        given = ", ".join(f"{k}={v!r}" for k, v in env_kwargs.items()) or "no options"
        raise BadArguments(f"{env_id} rejects {given}: {cause}") from None


def _say_resumed(out_dir, skipped: set, retried: set) -> None:
    if skipped or retried:
        print(f"resuming {out_dir}: skipping {len(skipped)} episode(s) already recorded, "
              f"playing {len(retried)} that ended in an error again", file=sys.stderr)


def _run_pair(env_id, agent, todo, results, num_envs, env_kwargs, progress, num_env_workers,
              ray_address) -> None:
    if not todo:
        return
    correct = scored = errors = 0
    make_env = partial(gym.make, env_id, **env_kwargs)
    with _progress_bar(len(todo), f"{agent.name} on {env_id}", progress) as bar:
        for record in run_episodes(make_env, agent, todo, env_id=env_id, num_envs=num_envs,
                                   num_env_workers=num_env_workers, ray_address=ray_address):
            results.append(record)
            if record.end_reason in UNSCORED:
                errors += 1
            else:
                scored += 1
                correct += record.correct
            accuracy = f"{correct / scored:.1%}" if scored else "-"
            bar.set_postfix(acc=accuracy, errors=errors, refresh=False)
            bar.update()


def _progress_bar(total: int, description: str, progress: bool):
    """A tqdm bar; none when `progress` is off or tqdm is not installed (the model-agent extras
    bring it; scripted baselines finish in seconds)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not progress:
        return _NoBar()
    return tqdm(total=total, desc=description, unit="ep", dynamic_ncols=True)


class _NoBar:
    """Stands in for a tqdm bar: the same calls, nothing drawn."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def set_postfix(self, **values):
        pass

    def update(self, n: int = 1):
        pass
