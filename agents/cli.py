"""The `pyvision-env` command: `list` the registered envs, `bench` agents on them, `view` the trajectories."""

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


def _bench(args: argparse.Namespace) -> int:
    try:
        from pyvision_agents.bench import bench, check_args, format_table
    except ImportError as error:  # agents/ is part of this distribution; say what is missing
        print(f"pyvision-env bench needs the agents package: {error}", file=sys.stderr)
        return 2
    env_kwargs = dict(args.env_opt)
    if args.difficulty:
        env_kwargs["difficulty"] = args.difficulty
    if args.data_path:
        env_kwargs["data_path"] = args.data_path
    agent_options = dict(args.agent_opt)
    if args.base_url:
        agent_options["base_url"] = args.base_url
    if args.api_key:
        agent_options["api_key"] = args.api_key
    try:
        check_args(args.env, args.agent, args.episodes, agent_options)
    except (ValueError, gym_errors()) as error:  # unknown env id or agent: say so, no traceback
        print(f"pyvision-env bench: {error}", file=sys.stderr)
        return 2
    try:
        summaries = bench(
            args.env, args.agent, args.episodes, args.out, seed=args.seed, num_envs=args.num_envs,
            env_kwargs=env_kwargs, agent_options=agent_options, progress=not args.no_progress,
            plots=not args.no_plots, viewer=not args.no_viewer, save_images=not args.no_images,
            num_env_workers=args.num_env_workers, ray_address=args.ray_address,
        )
    except ImportError as error:  # a model backend whose extra is not installed: the pip line
        print(f"pyvision-env bench: {error}", file=sys.stderr)
        return 2
    print(format_table(summaries))
    print(f"\nper-episode records: {args.out}/episodes.jsonl")
    if not args.no_viewer:
        print(f"trajectories: {args.out}/viewer.html  (pyvision-env view {args.out} rebuilds it)")
    return 0


def _view(args: argparse.Namespace) -> int:
    from pyvision_agents.viewer import write_viewer

    try:
        path = write_viewer(args.dir, args.output)
    except FileNotFoundError as error:
        print(f"pyvision-env view: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def gym_errors() -> type[Exception]:
    """Gymnasium's error for an unknown env id (it suggests the closest registered name)."""
    from gymnasium.error import Error

    return Error


def _key_value(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON when it parses (numbers, true/false, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyvision-env", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered env ids with a one-line description")
    bench = commands.add_parser(
        "bench", help="run agents on envs: leaderboard, plots, trajectory viewer (resumable)"
    )
    bench.add_argument("--env", nargs="+", default=["PyVisionImage-v0"], help="env ids")
    bench.add_argument(
        "--agent", nargs="+", default=["solver"],
        help="agents: solver, no-tool, openai:MODEL, transformers:PATH, vllm:PATH",
    )
    bench.add_argument("--episodes", type=int, default=20, help="episodes per (env, agent)")
    bench.add_argument("--out", default="runs/bench", help="output folder (resumable)")
    bench.add_argument("--seed", type=int, default=0, help="seed of episode 0; episode i uses seed+i")
    bench.add_argument("--num-envs", type=int, default=1,
                       help="envs run side by side (one batched model call per turn)")
    bench.add_argument("--num-env-workers", type=int, default=0,
                       help="host the envs in this many Ray actors (0: in this process)")
    bench.add_argument("--ray-address", default=None,
                       help="the Ray cluster for --num-env-workers (default: a local instance)")
    bench.add_argument("--difficulty", choices=("easy", "medium", "hard"), default=None,
                       help="built-in task difficulty")
    bench.add_argument("--data-path", default=None, help="a PyVision data file instead of built-ins")
    bench.add_argument("--env-opt", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="an env keyword argument, e.g. max_turns=10 or chat_form=inline (repeatable)")
    bench.add_argument("--agent-opt", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="a model-agent option, e.g. protocol=tools, temperature=0.7, "
                            "max_concurrency=32, device=cpu (repeatable)")
    bench.add_argument("--base-url", default=None, help="openai agents: the server's /v1 URL")
    bench.add_argument("--api-key", default=None, help="openai agents: the API key")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--no-viewer", action="store_true", help="skip viewer.html")
    bench.add_argument("--no-images", action="store_true", help="do not store episode images")
    view = commands.add_parser("view", help="write the HTML trajectory viewer of a bench folder")
    view.add_argument("dir", help="a folder written by `pyvision-env bench`")
    view.add_argument("--output", default=None, help="where to write it (default DIR/viewer.html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"list": _list, "bench": _bench, "view": _view}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
