"""`portraittalk bench curve`: speed against quality of step-reducing schedulers (bench/speed_quality.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..bench import speed_quality


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk bench curve", description=speed_quality.__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model file or folder (default: the bundled demo)")
    parser.add_argument("--settings", nargs="+", default=list(speed_quality.DEFAULT_SETTINGS),
                        help="scheduler[+karras]:steps, the first is the baseline (default: %(default)s)")
    parser.add_argument("--clips", type=int, default=4, help="held-out SynthTalk clips per setting")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 gives steadier timings)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    try:
        settings = [speed_quality.Setting.parse(s) for s in args.settings]
    except ValueError as err:
        parser.error(str(err))
    import torch

    from ..models import PortraitTalkPipeline
    from ..models.sampling.sampler import SCHEDULERS

    unknown = sorted({s.scheduler for s in settings} - set(SCHEDULERS))
    if unknown:
        parser.error(f"unknown scheduler {', '.join(unknown)}; choose from {', '.join(SCHEDULERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = PortraitTalkPipeline.from_pretrained(args.model)
    clips = speed_quality.held_out_clips(args.clips, args.seconds, pipeline.size)
    pipeline([np.zeros((pipeline.size, pipeline.size, 3), np.uint8)], clips[0].audio[:8000], 16000,
             num_inference_steps=1)  # warm-up: the first call pays for lazy initialisation
    rows = []
    for setting in settings:
        rows.append(speed_quality.measure(pipeline, setting, clips))
        r = rows[-1]
        print(f"[curve] {r['setting']}: {r['seconds_per_frame'] * 1e3:.1f} ms/frame, ADFD {r['adfd']:.3f}, "
              f"lip r {r['lip_sync_r']:.3f}", flush=True)
    print(speed_quality.table(rows))
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "clips": args.clips, "seconds": args.seconds,
                                         "rows": rows}, indent=1))
    return 0
