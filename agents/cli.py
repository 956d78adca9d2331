"""The `pyvision-env` command: `list` envs, `bench` agents on them, `view` trajectories, `check-data` a data
file, `export-sft` an agent's episodes as an SFT dataset."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def _list(args: argparse.Namespace) -> int:
    from pyvision_env.registration import descriptions

    table = descriptions()
    width = max(map(len, table))
    for env_id, description in table.items():
        print(f"{env_id.ljust(width)}  {description}")
    return 0


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env keyword arguments of `--env-opt`, `--difficulty` and `--data-path`."""
    env_kwargs = dict(args.env_opt)
    if args.difficulty:
        env_kwargs["difficulty"] = args.difficulty
    if args.data_path:
        env_kwargs["data_path"] = args.data_path
    return env_kwargs


def _bench(args: argparse.Namespace) -> int:
    """Run the benchmark; 2 for bad arguments (one line, no traceback), 1 when a group only errored."""
    from pyvision_agents.bench import BadArguments, bench, format_table
    from pyvision_agents.manifest import RunMismatch

    env_kwargs = _env_kwargs(args)
    agent_options = dict(args.agent_opt)
    if args.base_url:
        agent_options["base_url"] = args.base_url
    if args.api_key:
        agent_options["api_key"] = args.api_key
    try:
        summaries = bench(
            args.env, args.agent, args.episodes, args.out, seed=args.seed, num_envs=args.num_envs,
            env_kwargs=env_kwargs, agent_options=agent_options, overwrite=args.overwrite,
            progress=not args.no_progress, plots=not args.no_plots, viewer=not args.no_viewer,
            save_images=not args.no_images,
            num_env_workers=args.num_env_workers, ray_address=args.ray_address,
        )
    except (BadArguments, RunMismatch, ImportError) as error:
        # bad arguments, another run in --out, a model backend whose extra is missing (the pip line)
        print(f"pyvision-env bench: {_one_line(error)}", file=sys.stderr)
        return 2
    print(format_table(summaries))
    print(f"\nper-episode records: {args.out}/episodes.jsonl")
    if not args.no_viewer:
        print(f"trajectories: {args.out}/viewer.html  (pyvision-env view {args.out} rebuilds it)")
    failed = [s for s in summaries if s.failed]
    for summary in failed:
        print(f"pyvision-env bench: every episode of {summary.agent} on {summary.env_id} failed "
              f"({summary.errors} errors); most common: {summary.top_error}", file=sys.stderr)
    return 1 if failed else 0


def _view(args: argparse.Namespace) -> int:
    from pyvision_agents.viewer import write_viewer

    try:
        path = write_viewer(args.dir, args.output)
    except FileNotFoundError as error:
        print(f"pyvision-env view: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _export_sft(args: argparse.Namespace) -> int:
    from gymnasium.error import Error as GymError

    from pyvision_agents.sft_export import export_sft

    env_kwargs = _env_kwargs(args)
    try:
        stats = export_sft(
            args.env, args.out, agent=args.agent, episodes=args.episodes, seed=args.seed,
            num_envs=args.num_envs, env_kwargs=env_kwargs, agent_options=dict(args.agent_opt),
            only_correct=not args.all_episodes, observation_role=args.observation_role,
            overwrite=args.overwrite,
        )
    except (ValueError, TypeError, ImportError, FileExistsError, GymError) as error:
        print(f"pyvision-env export-sft: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"{stats.written} of {stats.episodes} episodes written to {stats.path} "
          f"(skipped: {stats.skipped_incorrect} incorrect, {stats.skipped_failed} failed, "
          f"{stats.skipped_bad} bad)")
    for message in stats.errors:
        print(f"  {message}", file=sys.stderr)
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _check_data(args: argparse.Namespace) -> int:
    from pyvision_env.tasks.check import check_data
    from pyvision_env.tasks.loaders import DatasetError

    try:
        bad = check_data(args.file)
    except (DatasetError, ImportError) as error:
        print(f"pyvision-env check-data: {error}", file=sys.stderr)
        return 2
    for row in bad:
        print(row)
    print(f"{args.file}: {len(bad)} bad row(s)" if bad
          else f"{args.file}: no bad rows (every image and every video frame decodes)")
    return 1 if bad else 0


def _key_value(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON when it parses (numbers, true/false, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the empty ones (None, a flag's False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _add_episode_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that play episodes: seeds, envs side by side, the env's tasks and
    options (read back by `_env_kwargs`), and model-agent options."""
    parser.add_argument("--seed", type=int, default=0, help="seed of episode 0; episode i uses seed+i")
    parser.add_argument("--num-envs", type=int, default=1,
                        help="envs run side by side (one batched model call per turn)")
    parser.add_argument("--difficulty", choices=("easy", "medium", "hard"), default=None,
                        help="built-in task difficulty (default: the env's own)")
    parser.add_argument("--data-path", default=None, help="a PyVision data file instead of built-ins")
    parser.add_argument("--env-opt", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an env keyword argument, e.g. max_turns=10 or on_error=terminate (repeatable)")
    parser.add_argument("--agent-opt", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a model-agent option, e.g. protocol=tools, temperature=0.7, "
                             "max_concurrency=32, device=cpu (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyvision-env", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered env ids with a one-line description")
    bench = commands.add_parser(
        "bench", help="run agents on envs: leaderboard, plots, trajectory viewer (resumable)",
        description="Run agents on envs. A rerun into the same --out resumes the same run (more "
                    "--episodes, envs or agents may be added; episodes that errored are played "
                    "again); other settings stop with what differs.",
        formatter_class=_HelpFormatter,
    )
    bench.add_argument("--env", nargs="+", default=["PyVisionImage-v0"], help="env ids")
    bench.add_argument(
        "--agent", nargs="+", default=["solver"],
        help="agents: solver, no-tool, openai:MODEL, transformers:PATH, vllm:PATH",
    )
    bench.add_argument("--episodes", type=int, default=20, help="episodes per (env, agent)")
    bench.add_argument("--out", default="runs/bench", help="output folder (resumable)")
    bench.add_argument("--overwrite", action="store_true",
                       help="delete the run already in --out (records, images, reports) and start anew")
    _add_episode_options(bench)
    bench.add_argument("--num-env-workers", type=int, default=0,
                       help="host the envs in this many Ray actors (0: in this process)")
    bench.add_argument("--ray-address", default=None,
                       help="the Ray cluster for --num-env-workers (default: a local instance)")
    bench.add_argument("--base-url", default=None, help="openai agents: the server's /v1 URL")
    bench.add_argument("--api-key", default=None, help="openai agents: the API key")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar (the bar needs tqdm)")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--no-viewer", action="store_true", help="skip viewer.html")
    bench.add_argument("--no-images", action="store_true", help="do not store episode images")
    view = commands.add_parser("view", help="write the HTML trajectory viewer of a bench folder",
                               formatter_class=_HelpFormatter)
    view.add_argument("dir", help="a folder written by `pyvision-env bench`")
    view.add_argument("--output", default=None, help="where to write it (default DIR/viewer.html)")
    check = commands.add_parser("check-data", help="decode every image and video frame of a data file; list bad rows")
    check.add_argument("file", help="a PyVision data file (JSON or JSONL)")
    sft = commands.add_parser(
        "export-sft", help="write an agent's episodes as a chat dataset with images for TRL's SFTTrainer",
        formatter_class=_HelpFormatter,
    )
    sft.add_argument("--env", default="PyVisionImage-v0", help="env id")
    sft.add_argument("--agent", default="solver",
                     help="solver, no-tool, openai:MODEL, transformers:PATH, vllm:PATH")
    sft.add_argument("--episodes", type=int, default=100, help="episodes to run")
    sft.add_argument("--out", required=True, help="dataset folder to write (datasets.load_from_disk reads it)")
    _add_episode_options(sft)
    sft.add_argument("--all-episodes", action="store_true",
                     help="keep incorrect episodes too (infrastructure failures are always dropped)")
    sft.add_argument("--observation-role", default="observation",
                     help="role of interpreter messages: observation (PyVision-RL form) or e.g. user")
    sft.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"list": _list, "bench": _bench, "view": _view, "check-data": _check_data,
                "export-sft": _export_sft}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
