"""`portraittalk bench`: where the time and memory of a generation go (bench/benchmark.py), and its sub-modes
`portraittalk bench curve` (speed against quality) and `portraittalk bench train` (training speed and memory)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["curve"]:  # speed against quality of step-reducing schedulers
        from .bench_curve import main as curve_main

        return curve_main(argv[1:])
    if argv[:1] == ["train"]:  # training speed and memory, 1 and N processes
        from .bench_train import main as train_main

        return train_main(argv[1:])
    return _benchmark(argv)


def _benchmark(argv: list[str]) -> int:
    from ..bench.benchmark import (PACKAGE, SCHEMA, environment, import_times, plan, run_case, run_in_subprocess,
                                   summarise, table, worker)

    command = parser()
    args = command.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    check_args(command, args)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    result = {"schema": SCHEMA, "environment": environment(), "runs": []}
    if not args.no_import_time:
        result["import"] = import_times(PACKAGE)
    for spec in [spec for _ in range(max(1, args.rounds)) for spec in plan(args)]:
        say(f"[bench] {spec['config']} {spec['size']}px {spec['frames']} frames ({spec['role']}) ...")
        run = run_case(spec) if args.in_process else run_in_subprocess(spec)
        result["runs"].append(run)
        f = run["sampling"]
        say(f"[bench]   sampling {f['seconds']:.2f} s, {f['per_frame_step_s'] * 1e3:.2f} ms/frame/step, overhead "
            f"{f['overhead_ratio']:.3f} (CPU time {f['overhead_ratio_cpu']:.3f}), peak RSS {run['memory']['peak_rss_mb']} MB")
    result["environment"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    imp = result.get("import", [None])[0]
    result["summary"] = summarise(result["runs"], imp)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        say(f"[bench] wrote {args.json}")
    return 0


def parser() -> argparse.ArgumentParser:
    from ..bench import benchmark

    p = argparse.ArgumentParser(prog="portraittalk bench", description=benchmark.__doc__.split("\n\n")[0],
                                epilog="Figures, not pass/fail tests: timings vary with the machine and its load.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", default=["tiny", "sd15"], help="model families (default: tiny sd15)")
    p.add_argument("--size", type=int, nargs="+", default=None,
                   help="image sizes per config (default: tiny 64; sd15 128 on a CPU, 512 on a GPU)")
    p.add_argument("--frames", type=int, default=None,
                   help="base number of frames (default: tiny 48; sd15 4 on a CPU, 16 on a GPU)")
    p.add_argument("--scale", type=int, nargs="*", default=None,
                   help="multiples of --frames to run, for the scaling in video length (default: 1 2 4 for tiny, 1 for sd15)")
    p.add_argument("--seconds", type=float, nargs="*", default=None,
                   help="audio durations to run with the tiny config, for memory against length (default: 6 60)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's; sd15 on a CPU: 2)")
    p.add_argument("--scheduler", choices=["ddim", "euler", "dpmpp_2m"], default=None,
                   help="default: the config's (ddim)")
    p.add_argument("--prompt", default="a face with glasses", help="'' for no prompt (one text condition)")
    p.add_argument("--text-guidance", type=float, default=None, help="default: the config's")
    p.add_argument("--audio-guidance", type=float, default=None, help="default: the config's")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--overlap", type=int, default=None)
    p.add_argument("--references", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile AnimateNet's UNet (optionally a mode, e.g. max-autotune)")
    p.add_argument("--offload", action="store_true",
                   help="diffusers' block-level group offloading of AnimateNet and IdentityNet (models/sampling/offload.py)")
    p.add_argument("--offload-blocks", type=int, default=1, metavar="N", help="UNet blocks per offloaded group")
    p.add_argument("--memory-cap-gb", type=float, default=None, metavar="GB",
                   help="CUDA only: cap this process's GPU memory (torch.cuda.set_per_process_memory_fraction)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=5, help="bare-forward repeats (median)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the whole plan this many times, interleaved, and compare medians (steadier on a "
                        "shared machine, where one run's speed can drift by 10%%)")
    p.add_argument("--no-warmup", action="store_true", help="skip the one-window warm-up generation")
    p.add_argument("--no-flop-count", action="store_true", help="skip the FlopCounterMode cross-check")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU (GPUs in a table)")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="torch.profiler over each measured generation; op tables go to DIR (timings then include "
                        "the profiler's cost)")
    p.add_argument("--no-import-time", action="store_true")
    p.add_argument("--in-process", action="store_true",
                   help="run every case in this process (faster; memory figures then mix between runs)")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def check_args(parser, args) -> None:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.memory_cap_gb is not None:
        if not device.startswith("cuda"):
            parser.error(f"--memory-cap-gb {args.memory_cap_gb:g} needs --device cuda (it caps CUDA's allocator); "
                         f"the device here is {device}")
        if args.memory_cap_gb <= 0:
            parser.error(f"--memory-cap-gb must be above 0, got {args.memory_cap_gb:g}")
    if args.offload_blocks < 1:
        parser.error(f"--offload-blocks must be at least 1, got {args.offload_blocks}")
