"""`portraittalk bench train`: the speed and peak memory of training, per stage, with 1 and N processes.

    portraittalk bench train                                   tiny_smoke, 1 and 2 processes, on this machine
    portraittalk bench train --config sd15 --data clips/ --precision bf16 --gradient-checkpointing \\
        --processes 1 8 --steps 20 --json bench_train.json
    portraittalk bench train --accelerate-config training/accelerate/fsdp_full_shard.yaml --processes 8 ...
    portraittalk bench train ... -- --some-train-option value   (after `--`: passed to `portraittalk train`)

Each count of processes is a fresh run of `portraittalk train` (1 process: plain Python; N: `torchrun
--standalone`, or `accelerate launch --config_file` when given) with every stage cut to `--steps` steps and
a log line per step. The figures come from the run's `train_log.jsonl`:

- s/step: (seconds at the last step − seconds at the last warm-up step) / steps after warm-up. The first
  `--warmup` steps of each stage (graph set-up, allocator and cache warm-up) are left out.
- samples/s: a *sample* is one target frame of one row: a step trains on global rows × frames of them,
  global rows = the stage's `rows` (per process) × processes. So N processes train on N× the rows.
- peak memory: the max over ranks of the stage's peak, warm-up included: the process RSS high-water mark on
  the CPU, `torch.cuda.max_memory_allocated` on a GPU (the train log's `peak_rss_mb`, `peak_cuda_mb`).

On the CPU the runs get `ACCELERATE_USE_CPU=true` (Accelerate's MULTI_CPU over gloo) and `--threads` torch
threads per process. The log line per step adds one small all-reduce per step to N-process runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TRAIN_MODULE = ["-m", "comfyui_portraittalk.training", "train"]


def stage_figures(records: list[dict], rows: dict[int, int], frames: dict[int, int], processes: int,
                  warmup: int) -> list[dict]:
    """Per stage, from a run's train-log records (one per step): s/step and samples/s after warm-up, peak MiB.

    `rows` and `frames` map a stage to its per-process rows and frames per row."""
    by_stage: dict[int, dict[int, dict]] = {}
    for record in records:
        by_stage.setdefault(int(record["stage"]), {})[int(record["step"])] = record
    figures = []
    for stage, steps in sorted(by_stage.items()):
        last = max(steps)
        if warmup not in steps or last <= warmup:
            raise ValueError(f"stage {stage}: the log needs a line at step {warmup} (the last warm-up step) and "
                             f"after it (it has steps {sorted(steps)}): run more steps or log every step")
        timed = last - warmup
        per_step = (steps[last]["seconds"] - steps[warmup]["seconds"]) / timed
        samples = rows[stage] * processes * frames[stage]
        peaks = {key: max(r[key] for r in steps.values() if r.get(key) is not None)
                 for key in ("peak_rss_mb", "peak_cuda_mb") if any(r.get(key) is not None for r in steps.values())}
        figures.append({"stage": stage, "processes": processes, "global_rows": rows[stage] * processes,
                        "frames": frames[stage], "samples_per_step": samples, "timed_steps": timed,
                        "seconds_per_step": per_step, "samples_per_second": samples / per_step if per_step > 0 else None,
                        **peaks})
    return figures


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def launch_command(processes: int, config: Path, out: Path, data: Path, steps: str, accelerate_config: Path | None,
                   extra: list[str]) -> list[str]:
    train = [*TRAIN_MODULE, "--config", str(config), "--out", str(out), "--data", str(data), "--steps", steps,
             "--log-every", "1", "--checkpoint-every", str(10**9), "--no-resume", *extra]
    if accelerate_config is not None:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
                "--num_processes", str(processes), *train]
    if processes == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *train]


def run_env(device: str, threads: int | None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"  # without it, N CPU processes each run alone (DistributedType.NO)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def table(config_name: str, device: str, warmup: int, figures: list[dict]) -> str:
    cuda = any("peak_cuda_mb" in f for f in figures)
    lines = [f"training benchmark: {config_name} on {device}; the first {warmup} steps of each stage are warm-up, "
             "not timed",
             "a sample = one target frame of one row; a step = global rows × frames samples; "
             "peak memory = max over ranks",
             f"{'processes':>9} {'stage':>5} {'rows×frames':>11} {'steps':>5} {'s/step':>8} {'samples/s':>9} "
             f"{'peak RSS MiB':>12}" + (f" {'peak CUDA MiB':>13}" if cuda else "")]
    for f in figures:
        lines.append(f"{f['processes']:>9} {f['stage']:>5} {f['global_rows']:>5}×{f['frames']:<5} "
                     f"{f['timed_steps']:>5} {f['seconds_per_step']:>8.3f} {f['samples_per_second']:>9.2f} "
                     f"{f.get('peak_rss_mb', '-'):>12}" + (f" {f.get('peak_cuda_mb', '-'):>13}" if cuda else ""))
    return "\n".join(lines)
