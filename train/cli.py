"""The `pyvision-train` command: train from a YAML config, `plot` a run, build a `tiny-model`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

USAGE = """pyvision-train --config FILE [--set section.field=value ...]
       pyvision-train plot RUN [--out PNG]
       pyvision-train tiny-model OUT"""


def _train(argv: Sequence[str]) -> int:
    from pyvision_train.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="pyvision-train", usage=USAGE,
                                     description="GRPO on TRL against a pyvision env.")
    parser.add_argument("--config", required=True, help="a YAML run config (see train/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set grpo.learning_rate=1e-6 (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        config.grpo_config()  # check the grpo section before loading a model
    except ConfigError as error:
        print(f"pyvision-train: {error}", file=sys.stderr)
        return 2
    from pyvision_train.run import train

    print(json.dumps(train(config)))
    return 0


def _plot(argv: Sequence[str]) -> int:
    from pyvision_train.plots import plot_run

    parser = argparse.ArgumentParser(prog="pyvision-train plot", description="PNG curves of a run.")
    parser.add_argument("run", help="the run's output_dir")
    parser.add_argument("--out", default=None, help="PNG path (default RUN/curves.png)")
    args = parser.parse_args(argv)
    try:
        print(plot_run(args.run, args.out))
    except (FileNotFoundError, ValueError) as error:
        print(f"pyvision-train plot: {error}", file=sys.stderr)
        return 2
    return 0


def _tiny_model(argv: Sequence[str]) -> int:
    from pathlib import Path

    from pyvision_train.tiny_model import build_tiny_qwen

    parser = argparse.ArgumentParser(prog="pyvision-train tiny-model",
                                     description="Build a tiny random Qwen2.5-VL offline (for smoke runs).")
    parser.add_argument("out", help="folder to write the model into")
    args = parser.parse_args(argv)
    print(build_tiny_qwen(Path(args.out)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"plot": _plot, "tiny-model": _tiny_model}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return _train(argv)


if __name__ == "__main__":
    sys.exit(main())
