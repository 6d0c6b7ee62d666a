"""`portraittalk train`: the two training stages (training/train.py) from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.files.weights import ModelFileError
from ..training import train as training
from ..training.sources import ROLES, SourceError, parse_sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk train", description=training.__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="training config JSON (or a shipped name: demo, tiny_smoke)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (checkpoints, logs, the model)")
    parser.add_argument("--data", type=Path, default=None,
                        help="clip data set (portraittalk synth / preprocess); default: make SynthTalk clips")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    parser.add_argument("--steps", default=None, help="override steps per stage, e.g. '1:200,2:50'")
    parser.add_argument("--log-every", type=int, default=25, help="steps per line of train_log.jsonl")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps per checkpoint")
    parser.add_argument("--precomputed", type=Path, default=None,
                        help="shards of `portraittalk precompute` for this config and data (steps then never encode)")
    parser.add_argument("--source", action="append", metavar="ROLE=PATH",
                        help="a file of a full-size recipe (hallo_text, sd15), e.g. checkpoint=v1-5.safetensors; "
                             "roles: " + ", ".join(ROLES))
    args = parser.parse_args(argv)
    config = training.load_train_config(args.config)
    steps = {int(k): int(v) for k, v in (x.split(":") for x in args.steps.split(","))} if args.steps else None
    try:
        sources = parse_sources(args.source)
        if sources and not config.get("init"):
            raise SourceError(f"{args.config}: --source is for the full-size recipes (configs with 'init')")
        path = training.train(config, args.out, args.data, resume=not args.no_resume, max_steps=steps,
                              log_every=args.log_every, checkpoint_every=args.checkpoint_every, sources=sources,
                              precomputed_dir=args.precomputed)
    except (SourceError, ModelFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
