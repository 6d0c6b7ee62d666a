"""`portraittalk synth`: SynthTalk clips (training/synthtalk/)."""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    """`portraittalk synth OUT_DIR --clips N --seconds S --size 64 --seed 0 --tts-fraction 0.2 --workers 2
    --split train`. Returns the exit status."""
    from ..training.layout import read_index
    from ..training.synthtalk.writer import SPLITS, write_dataset

    p = argparse.ArgumentParser(prog="portraittalk synth", description="Generate the SynthTalk data set.")
    p.add_argument("out_dir")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tts-fraction", type=float, default=0.0,
                   help="share of clips spoken by espeak-ng (synthetic speech where it is not installed)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--split", choices=list(SPLITS), default="train")
    p.add_argument("--overwrite", action="store_true", help="delete existing clips first")
    args = p.parse_args(argv)
    start = time.monotonic()
    index = write_dataset(args.out_dir, args.clips, args.seconds, size=args.size, seed=args.seed,
                          tts_fraction=args.tts_fraction, workers=args.workers, split=args.split,
                          overwrite=args.overwrite, progress=True)
    n = len(read_index(args.out_dir)["clips"])
    print(f"synthtalk: {n} clips in {index.parent} ({time.monotonic() - start:.1f} s)")
    return 0
