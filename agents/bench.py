"""The benchmark harness: agents x envs, resumable JSONL results, leaderboard, plots and viewer."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym
from tqdm import tqdm

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.plots import ACCURACY_PLOT, CODE_CELLS_PLOT, plot_accuracy_vs_visual_tokens, plot_code_cells
from pyvision_agents.registry import AGENTS, agent_name, make_agent
from pyvision_agents.results import ResultsFile, write_text_atomic
from pyvision_agents.runner import run_episodes
from pyvision_agents.summary import UNSCORED, Summary, format_table, leaderboard, summarize
from pyvision_agents.viewer import write_viewer

SUMMARY_FILE = "summary.json"
LEADERBOARD_FILE = "leaderboard.txt"
DEFAULT_MAX_IMAGES = 32  # PyVisionEnv's default image budget


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
    progress: bool = True,
    plots: bool = True,
    viewer: bool = True,
    save_images: bool = True,
    num_env_workers: int = 0,
    ray_address: str | None = None,
) -> list[Summary]:
    """Run every agent on every env for `episodes` episodes (seeds `seed`, `seed+1`, ...).

    Each episode's record goes to `out_dir/episodes.jsonl` as it finishes; a rerun with the same
    arguments skips the episodes already there (a model is loaded only if it has episodes left).
    With `num_env_workers` > 0 the envs run in that many Ray actors (at `ray_address`, or a local
    Ray instance; see `pyvision_agents.ray_pool`). Then `summary.json` and `leaderboard.txt`, the plots (`accuracy_vs_visual_tokens.png`,
    `code_cells_per_episode.png`) and `viewer.html` are (re)written from all the records.
    `agent_options` go to every model agent (see `pyvision_agents.registry.make_agent`); a `vllm` agent
    gets the envs' image budget as `max_images` unless given one. Returns the summaries in
    leaderboard order.
    """
    names = check_args(env_ids, agent_specs, episodes, agent_options)
    env_kwargs = dict(env_kwargs or {})
    results = ResultsFile(out_dir, save_images=save_images)
    done = results.done()
    for spec in agent_specs:
        todo = {
            env_id: [(i, seed + i) for i in range(episodes) if (env_id, names[spec], i) not in done]
            for env_id in env_ids
        }
        if not any(todo.values()):
            continue
        agent = make_agent(spec, _options_for(spec, agent_options, env_ids, env_kwargs))
        for env_id in env_ids:
            _run_pair(env_id, agent, todo[env_id], results, num_envs, env_kwargs, progress,
                      num_env_workers, ray_address)
    summaries = leaderboard(summarize(results.records, e, names[a]) for a in agent_specs for e in env_ids)
    write_reports(out_dir, summaries, results.records, plots=plots, viewer=viewer)
    return summaries


def check_args(env_ids: Sequence[str], agent_specs: Sequence[str], episodes: int,
               agent_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Fail fast on bad arguments (unknown env ids or agents); return each spec's agent name."""
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    for env_id in env_ids:
        gym.spec(env_id)  # raises with Gymnasium's closest-name suggestion
    return {spec: agent_name(spec, agent_options) for spec in agent_specs}


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
        budgets = [env_kwargs.get("max_images", gym.spec(e).kwargs.get("max_images", DEFAULT_MAX_IMAGES))
                   for e in env_ids]
        options.setdefault("max_images", max(budgets))
    return options


def _run_pair(env_id, agent, todo, results, num_envs, env_kwargs, progress, num_env_workers,
              ray_address) -> None:
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"{agent.name} on {env_id}", disable=not progress,
               unit="ep", dynamic_ncols=True)
    correct = scored = errors = 0
    make_env = lambda: gym.make(env_id, **env_kwargs)  # noqa: E731
    with bar:
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
