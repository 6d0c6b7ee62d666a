"""`portraittalk bench train`: training speed and memory with 1 and N processes (training/bench.py)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..training import bench as training_bench


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="portraittalk bench train", description=training_bench.__doc__.splitlines()[0],
                                epilog="Arguments after `--` go to `portraittalk train` unchanged.")
    p.add_argument("--config", default="tiny_smoke", help="training config: a shipped name or a JSON file")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to run, in turn")
    p.add_argument("--steps", type=int, default=8, help="steps per stage (warm-up included)")
    p.add_argument("--warmup", type=int, default=2, help="steps per stage left out of the timing")
    p.add_argument("--data", type=Path, default=None, help="clip data set; default: the config's SynthTalk clips")
    p.add_argument("--precision", choices=["no", "fp16", "bf16"], default=None, help="override the config's")
    p.add_argument("--gradient-checkpointing", action="store_true", help="turn it on (else the config's setting)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (CPU default: 1)")
    p.add_argument("--accelerate-config", type=Path, default=None,
                   help="launch with `accelerate launch --config_file` (e.g. training/accelerate/*.yaml)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_train"), help="work folder (runs, data, config)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.steps <= args.warmup:
        raise SystemExit(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    from ..training.train import ensure_data, load_train_config

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = load_train_config(args.config)
    if args.precision:
        config["precision"] = args.precision
    if args.gradient_checkpointing:
        config["gradient_checkpointing"] = True
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = args.out / "config.json"
    config_path.write_text(json.dumps(config, indent=1))
    say = lambda message: print(f"[bench train] {message}", file=sys.stderr, flush=True)  # noqa: E731
    data = ensure_data(config, args.data, args.out, say)  # made once, outside the timed runs
    stages = [int(s["stage"]) for s in config["stages"]]
    steps = ",".join(f"{s}:{args.steps}" for s in stages)
    rows = {int(s["stage"]): int(s["rows"]) for s in config["stages"]}
    frames = {int(s["stage"]): int(s["frames"]) for s in config["stages"]}
    threads = args.threads or (1 if device == "cpu" else None)
    figures, runs = [], []
    for processes in args.processes:
        out = args.out / f"run_{processes}p"
        shutil.rmtree(out, ignore_errors=True)  # a fresh log, no checkpoint to resume from
        command = training_bench.launch_command(processes, config_path, out, data, steps, args.accelerate_config, extra)
        say(f"{processes} process(es): {' '.join(command)}")
        result = subprocess.run(command, env=training_bench.run_env(device, threads), capture_output=True, text=True,
                                timeout=args.timeout)
        if result.returncode != 0:
            say(f"the {processes}-process run failed (rc {result.returncode}):\n{result.stdout[-3000:]}"
                f"{result.stderr[-3000:]}")
            return 1
        joined = re.search(r"(\d+) process\(es\), DistributedType\.(\w+)", result.stdout)
        if not joined or int(joined.group(1)) != processes:  # e.g. a launcher that started one process
            say(f"asked for {processes} process(es), the run reports {joined.group(0) if joined else 'nothing'}")
            return 1
        log = training_bench.read_log(out / "train_log.jsonl")
        found = training_bench.stage_figures(log, rows, frames, processes, args.warmup)
        figures += found
        runs.append({"processes": processes, "distributed_type": joined.group(2), "command": command,
                     "figures": found})
    name = Path(args.config).stem if str(args.config).endswith(".json") else str(args.config)
    print(training_bench.table(name, device, args.warmup, figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": config, "device": device, "threads": threads, "warmup": args.warmup,
                                         "steps": args.steps, "runs": runs}, indent=1))
        say(f"wrote {args.json}")
    return 0
