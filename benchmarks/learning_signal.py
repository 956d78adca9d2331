"""Learning signal on CPU: SFT warm start, then GRPO through the real trainer, held-out greedy evals.

Offline and CPU only. A tiny Qwen2.5-VL is built from a config with a byte-level BPE trained on the
spot on the SFT export's text, pre-tokenized by lines with every run of digits apart: a code line
the solver always writes is one token or a few (the 70-line cell is ~230 tokens, which a tiny model
can write and a CPU can generate), and the `5` of `ANSWER: 5` in the cell's output is the same token
as the `5` of `\\boxed{5}`, so the answer is a copy the model can learn. A merge must occur
`--min-frequency` (32) times: with 2, each of the 36 colour-and-shape questions became one token of
its own, seen in 1/36 of the prompts, and the shape to write was a per-question lookup that 50 GRPO
steps moved little (docs/training.md); with 32 the question splits into a colour and a shape token.

1. `export_sft` writes the built-in `solver`'s correct episodes of the chosen families (easy).
2. `train_sft` trains the tiny model on them, saving checkpoints; each is played greedily on probe
   seeds (disjoint from training and evaluation seeds). The SFT start is the first checkpoint that
   follows the protocol (a code cell, then an answer) on at least `--min-protocol` of the probe
   episodes with an accuracy in `--start-accuracy` [LOW, HIGH): right sometimes, not always (else
   the protocol-following checkpoint whose accuracy is nearest the middle of that range).
3. For each configuration and seed, GRPO from that checkpoint through `pyvision_train.run.train`
   (the same path as `pyvision-train --config`; the generated config is saved as YAML), with a
   checkpoint every `--eval-every` steps; every checkpoint is then played greedily on held-out
   seeds (disjoint from training seeds): accuracy, code cells per episode, zero-tool share.

Configurations (same SFT start): `main` (tool reward 0.1, oversampling 2x, filtering, ranking),
`no_tool_reward` (env reward = accuracy only), `no_filter` (FilterConfig all off: no oversampling,
every policy end reason kept, tied groups kept, no ranking).

    python benchmarks/learning_signal.py --seeds 0 1 2 --configs main no_tool_reward no_filter

Writes `<out>/learning_signal.json` and `<out>/learning_signal.png`, prints a table. Runs go to
`--work` (model, export, SFT and GRPO folders; reused when present).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

ENV_ID = "PyVisionImage-v0"
EVAL_SEED = 1_000_000  # held-out evaluation seeds start here
PROBE_SEED = 2_000_000  # seeds used to pick the SFT checkpoint (not the evaluation seeds)
TRAIN_SEED = 0  # GRPO training prompts: seeds TRAIN_SEED ... (SFT export seeds too)
CONFIGS = ("main", "no_tool_reward", "no_filter")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


@dataclass(frozen=True)
class EvalResult:
    """Greedy play of a checkpoint on held-out seeds."""

    step: int
    episodes: int
    accuracy: float
    protocol: float  # share of episodes that ran a code cell and then gave an answer (as the SFT data does)
    code_cells: float  # mean executed code cells per episode
    zero_tool_share: float  # share of episodes without a code cell
    reward: float


# ---------------------------------------------------------------------- model


def build_model(folder: Path, corpus: Sequence[str], vocab_size: int, hidden: int, layers: int,
                min_frequency: int) -> Path:
    """A random tiny Qwen2.5-VL whose BPE is trained on `corpus`, pre-tokenized by lines, with
    Qwen2.5-VL's own chat template (so SFT gets TRL's training variant of it, as the real model would)."""
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    from pyvision_train.tiny_model import build_tiny_qwen

    return build_tiny_qwen(folder, corpus=corpus, vocab_size=vocab_size, min_frequency=min_frequency, by_lines=True,
                           split_numbers=True, hidden=hidden, layers=layers, heads=4, vision_depth=1,
                           chat_template=qwen2_5_vl_chat_template)


def export_corpus(dataset_dir: Path) -> list[str]:
    """Every text part of the export's chats, as the chat template renders its role headers."""
    from datasets import load_from_disk

    texts = []
    for messages in load_from_disk(str(dataset_dir))["messages"]:
        for message in messages:
            texts.append(f"<|im_start|>{message['role']}\n")
            texts.extend(part["text"] for part in message["content"] if part["type"] == "text")
    return texts


# ---------------------------------------------------------------------- evaluation


def evaluate(model_dir: Path, seeds: Sequence[int], env_kwargs: dict[str, Any], max_new_tokens: int,
             step: int = 0) -> EvalResult:
    """Play one greedy episode per seed with the checkpoint at `model_dir` (the trainer's episode runner)."""
    trajectories, _ = play_greedy(model_dir, seeds, env_kwargs, max_new_tokens)
    n = len(trajectories)
    return EvalResult(
        step=step, episodes=n,
        accuracy=sum(t.correct for t in trajectories) / n,
        protocol=sum(t.end_reason == "DONE" and t.num_code_cells > 0 for t in trajectories) / n,
        code_cells=sum(t.num_code_cells for t in trajectories) / n,
        zero_tool_share=sum(t.num_code_cells == 0 for t in trajectories) / n,
        reward=sum(t.reward for t in trajectories) / n,
    )


def play_greedy(model_dir: Path, seeds: Sequence[int], env_kwargs: dict[str, Any], max_new_tokens: int):
    """The trajectories of one greedy episode per seed, and the codec that tokenized them."""
    import gymnasium as gym
    import torch
    from pyvision_train.rollout import (
        ChatCodec,
        EpisodeRunner,
        EpisodeStart,
        TurnOutput,
    )
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import pyvision_env  # noqa: F401

    processor = AutoProcessor.from_pretrained(str(model_dir), padding_side="left", local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32,
                                                        local_files_only=True).eval()
    codec = ChatCodec(processor, "tags")
    tokenizer = codec.tokenizer
    eos = tokenizer.eos_token_id

    def generate(requests):
        width = max(len(r.ids) for r in requests)
        ids = torch.full((len(requests), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, request in enumerate(requests):
            ids[row, width - len(request.ids):] = torch.tensor(request.ids)
            mask[row, width - len(request.ids):] = 1
        inputs = {"input_ids": ids, "attention_mask": mask,
                  "mm_token_type_ids": (ids == codec.image_pad_id).long()}
        pixels = [r.pixel_values for r in requests if r.pixel_values is not None]
        if pixels:
            inputs["pixel_values"] = torch.cat(pixels)
            inputs["image_grid_thw"] = torch.cat([r.image_grid_thw for r in requests if r.image_grid_thw is not None])
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id, suppress_tokens=sorted(codec.vision_ids))
        turns = []
        for row in out[:, width:].tolist():
            cut = row.index(eos) + 1 if eos in row else len(row)
            turns.append(TurnOutput([i for i in row[:cut] if i != tokenizer.pad_token_id], None))
        return turns

    runner = EpisodeRunner(codec, lambda env_id: gym.make(env_id, **env_kwargs), num_workers=2,
                           max_context_tokens=4096, eos_ids=[eos])
    try:
        trajectories, _ = runner.run([EpisodeStart(ENV_ID, seed) for seed in seeds], generate)
    finally:
        runner.close()
    return trajectories, codec


def skill_split(model_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """`count_marks` accuracy split by skill on the held-out seeds: the share of episodes whose
    cell names the question's shape, and whose `\\boxed{}` holds the count the cell printed."""
    import re

    seeds = range(EVAL_SEED, EVAL_SEED + args.eval_episodes)
    trajectories, codec = play_greedy(model_dir, seeds, env_kwargs(args), args.max_new_tokens)
    shape = copied = 0
    for t in trajectories:
        asked = re.search(r"How many \w+ (circle|square|triangle)s", codec.tokenizer.decode(t.prompt_ids))
        text = codec.tokenizer.decode(t.completion_ids)
        written = re.search(r"'shape': '(\w+)'", text)
        printed, boxed = re.search(r"ANSWER: (\d+)", text), re.findall(r"\\boxed\{([^}]*)\}", text)
        shape += bool(asked and written and asked.group(1) == written.group(1))
        copied += bool(printed and boxed and boxed[-1].strip() == printed.group(1))
    n = len(trajectories)
    return {"accuracy": sum(t.correct for t in trajectories) / n, "shape_right": shape / n, "count_copied": copied / n}


# ---------------------------------------------------------------------- stages


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"families": list(args.families), "difficulty": "easy", "max_turns": args.max_turns,
            "sandbox": "local", "on_error": "observe"}


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    """Export, tokenizer + tiny model, SFT with checkpoints, the probe; return the SFT start."""
    from pyvision_agents.sft_export import export_sft
    from pyvision_train.sft import train_sft

    info: dict[str, Any] = {}
    data = work / "sft-data"
    if not data.exists():
        tic = time.perf_counter()
        stats = export_sft(ENV_ID, data, episodes=args.export_episodes, seed=TRAIN_SEED, env_kwargs=env_kwargs(args))
        info["export_seconds"] = time.perf_counter() - tic
        print(f"export: {stats.written} rows of {stats.episodes} episodes", flush=True)
    base = work / "base"
    if not (base / "config.json").exists():
        build_model(base, export_corpus(data), args.vocab_size, args.hidden, args.layers, args.min_frequency)
    info["export"] = json.loads((data / "export.json").read_text())
    sft_dir = work / "sft"
    trained_before = (sft_dir / "sft.json").exists()
    tic = time.perf_counter()
    train_sft(base, data, sft_dir, max_steps=args.sft_steps, learning_rate=args.sft_lr, batch_size=args.sft_batch,
              freeze_vision_tower=True, seed=0,
              trainer_args={"save_strategy": "steps", "save_steps": args.sft_probe_every, "save_only_model": True,
                            "lr_scheduler_type": "constant", "warmup_steps": 0})
    if not trained_before:
        info["sft_seconds"] = time.perf_counter() - tic
    info["sft_losses"] = json.loads((sft_dir / "sft.json").read_text())["losses"]
    probes = probe_sft(args, sft_dir)
    if not probes:
        raise SystemExit(f"no SFT checkpoint in {sft_dir}: --sft-probe-every must divide --sft-steps")
    low, high = args.start_accuracy
    following = [p for p in probes if p.protocol >= args.min_protocol] or probes
    fits = [p for p in following if low <= p.accuracy < high]
    chosen = fits[0] if fits else min(following, key=lambda p: abs(p.accuracy - (low + high) / 2))
    info["sft_probe"] = [asdict(p) for p in probes]
    info["sft_start_step"] = chosen.step
    info["sft_start_met_rule"] = bool(fits)
    return sft_dir / f"checkpoint-{chosen.step}", info


def probe_sft(args: argparse.Namespace, sft_dir: Path) -> list[EvalResult]:
    """Every SFT checkpoint played greedily on the probe seeds (cached in `sft_dir/probe.json`)."""
    cache = sft_dir / "probe.json"
    if cache.exists():
        return [EvalResult(**r) for r in json.loads(cache.read_text())]
    probe_seeds = range(PROBE_SEED, PROBE_SEED + args.probe_episodes)
    probes = []
    for checkpoint in sorted(sft_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(checkpoint.name.split("-")[1])
        result = evaluate(checkpoint, probe_seeds, env_kwargs(args), args.max_new_tokens, step)
        probes.append(result)
        print(f"SFT probe step {step}: protocol {result.protocol:.2f} accuracy {result.accuracy:.2f} "
              f"cells {result.code_cells:.2f}", flush=True)
    cache.write_text(json.dumps([asdict(p) for p in probes], indent=1) + "\n")
    return probes


def grpo_config(args: argparse.Namespace, start: Path, run_dir: Path, name: str, seed: int) -> dict[str, Any]:
    """The `pyvision-train` config of one GRPO run."""
    filters = {"oversample": 2.0, "drop_tied_groups": True, "rank_by_std": True}
    if name == "no_filter":
        filters = {"oversample": 1.0, "drop_tied_groups": False, "rank_by_std": False,
                   "keep_end_reasons": ["DONE", "EXCEED_MAX_TURNS", "ERROR_IN_ACTION", "OVER_LENGTH",
                                        "EXCEED_MAX_IMAGES", "EXCEED_TIME_BUDGET"]}
    kw = env_kwargs(args)
    return {
        "output_dir": str(run_dir),
        "model": {"path": str(start), "dtype": "float32", "freeze_vision_tower": True},
        "env": {"id": ENV_ID, "train_max_turns": args.max_turns, "eval_max_turns": args.max_turns,
                "on_error": "observe", "tool_reward": 0.1, "use_tool_reward": name != "no_tool_reward",
                "sandbox": "local", "kwargs": {"families": kw["families"], "difficulty": kw["difficulty"]}},
        "data": {"train_prompts": args.train_prompts, "eval_prompts": 0, "seed": TRAIN_SEED},
        "rollout": {"protocol": "tags", "num_workers": 2, "max_context_tokens": 4096},
        "filter": filters,
        "grpo": {"use_cpu": True, "bf16": False, "learning_rate": args.lr, "num_generations": args.group,
                 "per_device_train_batch_size": args.group * args.groups_per_step,
                 "gradient_accumulation_steps": 1, "max_completion_length": args.max_new_tokens,
                 "temperature": args.temperature, "beta": args.beta, "max_steps": args.steps, "logging_steps": 1,
                 "save_strategy": "steps", "save_steps": args.eval_every, "save_total_limit": None,
                 "save_only_model": False, "lr_scheduler_type": "constant", "warmup_steps": 0,
                 "gradient_checkpointing": False, "report_to": [], "seed": seed},
    }


def run_grpo(args: argparse.Namespace, start: Path, work: Path, name: str, seed: int,
             start_eval: EvalResult) -> dict[str, Any]:
    import yaml
    from pyvision_train.config import from_dict
    from pyvision_train.run import train

    run_dir = work / f"grpo-{name}-s{seed}"
    raw = grpo_config(args, start, run_dir, name, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    tic = time.perf_counter()
    summary = train(from_dict(raw))
    train_seconds = time.perf_counter() - tic
    eval_seeds = range(EVAL_SEED, EVAL_SEED + args.eval_episodes)
    curve = [start_eval]
    tic = time.perf_counter()
    for checkpoint in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(checkpoint.name.split("-")[1])
        curve.append(evaluate(checkpoint, eval_seeds, env_kwargs(args), args.max_new_tokens, step))
        print(f"  {name} seed {seed} step {step}: accuracy {curve[-1].accuracy:.3f} "
              f"cells {curve[-1].code_cells:.2f} zero-tool {curve[-1].zero_tool_share:.2f}", flush=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"config": name, "seed": seed, "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - tic, "global_step": summary["global_step"],
            "curve": [asdict(r) for r in curve],
            "train_metrics": [{k: m[k] for k in ("step", "pyvision/correct/share", "pyvision/reward/total",
                                                 "pyvision/code_cells/mean", "pyvision/filter/batch_fill", "loss")
                               if k in m} for m in metrics]}


# ---------------------------------------------------------------------- report


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Held-out curves (accuracy, code cells, zero-tool share) and the training correct share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"main": "tab:blue", "no_tool_reward": "tab:orange", "no_filter": "tab:green"}
    styles = {"main": "-", "no_tool_reward": "--", "no_filter": ":"}
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    for run in runs:
        style = {"color": colours.get(run["config"]), "linestyle": styles.get(run["config"]), "alpha": 0.8,
                 "label": f"{run['config']} s{run['seed']}"}
        steps = [p["step"] for p in run["curve"]]
        for ax, key in zip(axes, ("accuracy", "code_cells", "zero_tool_share")):
            ax.plot(steps, [p[key] for p in run["curve"]], marker="o", **style)
        shares = [m.get("pyvision/correct/share", 0.0) for m in run["train_metrics"] if "pyvision/correct/share" in m]
        window = 5
        smooth = [sum(shares[max(0, i - window + 1): i + 1]) / len(shares[max(0, i - window + 1): i + 1])
                  for i in range(len(shares))]
        axes[3].plot(range(1, len(smooth) + 1), smooth, **style)
    titles = ("held-out accuracy (greedy)", "code cells / episode (held-out)", "zero-tool share (held-out)",
              "training correct share (sampled, 5-step mean)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("GRPO step (0 = SFT start)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(runs: list[dict[str, Any]]) -> str:
    lines = [(f"{'config':<15}{'seed':>5}{'acc@0':>8}{'acc@end':>9}{'delta':>8}{'cells@0':>9}{'cells@end':>10}"
              f"{'0tool@0':>9}{'0tool@end':>10}{'train_s':>9}")]
    for run in runs:
        first, last = run["curve"][0], run["curve"][-1]
        lines.append(f"{run['config']:<15}{run['seed']:>5}{first['accuracy']:>8.3f}{last['accuracy']:>9.3f}"
                     f"{last['accuracy'] - first['accuracy']:>+8.3f}{first['code_cells']:>9.2f}"
                     f"{last['code_cells']:>10.2f}{first['zero_tool_share']:>9.2f}{last['zero_tool_share']:>10.2f}"
                     f"{run['train_seconds']:>9.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=50, help="GRPO steps per run")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--families", nargs="+", default=["count_marks"])
    parser.add_argument("--work", type=Path, default=Path("runs/learning_signal"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_signal"))
    parser.add_argument("--export-episodes", type=int, default=512)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--min-frequency", type=int, default=32,
                        help="a BPE merge must occur this often in the export's text (see the module docstring)")
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--sft-probe-every", type=int, default=50)
    parser.add_argument("--sft-lr", type=float, default=5e-3)
    parser.add_argument("--sft-batch", type=int, default=8)
    parser.add_argument("--probe-episodes", type=int, default=32)
    parser.add_argument("--min-protocol", type=float, default=0.8)
    parser.add_argument("--start-accuracy", type=float, nargs=2, default=[0.3, 0.7], metavar=("LOW", "HIGH"),
                        help="the SFT start is the first probed checkpoint with LOW <= accuracy < HIGH")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=300, help="tokens per model turn")
    parser.add_argument("--train-prompts", type=int, default=512)
    parser.add_argument("--group", type=int, default=4, help="GRPO group size (num_generations)")
    parser.add_argument("--groups-per-step", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4, help="GRPO learning rate (1e-3 destroyed the SFT policy within 10 steps)")
    parser.add_argument("--temperature", type=float, default=0.6, help="GRPO sampling temperature")
    parser.add_argument("--beta", type=float, default=0.0, help="GRPO KL coefficient against the SFT start")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--replot", action="store_true", help="redraw the PNG and table from the JSON in --out")
    parser.add_argument("--skills", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="only print each checkpoint's held-out accuracy split by skill (count_marks)")
    args = parser.parse_args(argv)
    if args.skills:
        for checkpoint in args.skills:
            print(checkpoint, json.dumps(skill_split(checkpoint, args)), flush=True)
        return 0
    if args.replot:
        runs = json.loads((args.out / "learning_signal.json").read_text())["runs"]
        plot(runs, args.out / "learning_signal.png")
        print(table(runs))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    start, info = prepare(args, args.work)
    info["prepare_seconds"] = time.perf_counter() - tic
    cache = args.work / f"start-eval-{start.name}-{args.eval_episodes}.json"
    if cache.exists():
        start_eval = EvalResult(**json.loads(cache.read_text()))
    else:
        start_eval = evaluate(start, range(EVAL_SEED, EVAL_SEED + args.eval_episodes), env_kwargs(args),
                              args.max_new_tokens)
        cache.write_text(json.dumps(asdict(start_eval)) + "\n")
    print(f"SFT start {start.name}: held-out protocol {start_eval.protocol:.3f} accuracy {start_eval.accuracy:.3f}",
          flush=True)
    command = "python benchmarks/learning_signal.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sft = {**info, "start": str(start), "held_out": asdict(start_eval)}
    for name in args.configs:
        for seed in args.seeds:
            run = run_grpo(args, start, args.work, name, seed, start_eval)
            runs = save(args.out, sft, command, run)
            print(table(runs), flush=True)
    return 0


def save(out: Path, sft: dict[str, Any], command: str, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Add `run` to `<out>/learning_signal.json` (runs of other invocations on the same SFT start are
    kept, so configurations can run in separate processes: the read-merge-write holds a lock and
    replaces the file whole), redraw the PNG, return every run."""
    import fcntl
    import os

    path = out / "learning_signal.json"
    folder = os.open(out, os.O_RDONLY)  # the lock: flock on the folder itself, no file left behind
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        report = {"commands": [], "sft": sft, "runs": []}
        if path.exists():
            earlier = json.loads(path.read_text())
            if earlier["sft"]["start"] == sft["start"]:
                report = {**earlier, "sft": {**earlier["sft"], **sft}}
        report["runs"] = [r for r in report["runs"] if (r["config"], r["seed"]) != (run["config"], run["seed"])]
        report["runs"] = sorted(report["runs"] + [run], key=lambda r: (CONFIGS.index(r["config"]), r["seed"]))
        if command not in report["commands"]:
            report["commands"].append(command)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(report, indent=1) + "\n")
        partial.replace(path)
        plot(report["runs"], out / "learning_signal.png")
    finally:
        os.close(folder)  # releases the lock
    return report["runs"]


if __name__ == "__main__":
    raise SystemExit(main())
