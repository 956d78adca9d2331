"""The `pyvision-env` command: `list` the registered envs, `bench` agents on them."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _list(args: argparse.Namespace) -> int:
    from pyvision_env.registration import descriptions

    table = descriptions()
    width = max(map(len, table))
    for env_id, description in table.items():
        print(f"{env_id.ljust(width)}  {description}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        from agents.bench import bench, format_table
    except ImportError as error:  # agents/ is part of this distribution; say what is missing
        print(f"pyvision-env bench needs the agents package: {error}", file=sys.stderr)
        return 2
    env_kwargs = {}
    if args.difficulty:
        env_kwargs["difficulty"] = args.difficulty
    if args.data_path:
        env_kwargs["data_path"] = args.data_path
    summaries = bench(
        args.env, args.agent, args.episodes, args.out, seed=args.seed, num_envs=args.num_envs,
        env_kwargs=env_kwargs, progress=not args.no_progress,
    )
    print(format_table(summaries))
    print(f"\nper-episode records: {args.out}/episodes.jsonl")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyvision-env", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered env ids with a one-line description")
    bench = commands.add_parser("bench", help="run agents on envs and print a results table")
    bench.add_argument("--env", nargs="+", default=["PyVisionImage-v0"], help="env ids")
    bench.add_argument("--agent", nargs="+", default=["solver"], help="agent names")
    bench.add_argument("--episodes", type=int, default=20, help="episodes per (env, agent)")
    bench.add_argument("--out", default="runs/bench", help="output folder (resumable)")
    bench.add_argument("--seed", type=int, default=0, help="seed of episode 0; episode i uses seed+i")
    bench.add_argument("--num-envs", type=int, default=1, help="envs run side by side")
    bench.add_argument("--difficulty", choices=("easy", "medium", "hard"), default=None,
                       help="built-in task difficulty")
    bench.add_argument("--data-path", default=None, help="a PyVision data file instead of built-ins")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"list": _list, "bench": _bench}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
