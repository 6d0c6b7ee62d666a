"""`portraittalk precompute`: a training config's latents, audio features, masks and embeddings, in shards
(training/precompute.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from ..training import precompute as module
    from ..training.precompute import fingerprint, precompute
    from ..training.sources import ROLES, SourceError, parse_sources
    from ..training.train import load_train_config, starting_model

    parser = argparse.ArgumentParser(prog="portraittalk precompute", description=module.__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the training config the shards are for (e.g. sd15)")
    parser.add_argument("--data", required=True, type=Path, help="clip data set (portraittalk synth / preprocess)")
    parser.add_argument("--out", type=Path, default=None, help="default: DATA/precomputed/<config name>")
    parser.add_argument("--source", action="append", metavar="ROLE=PATH", help="roles: " + ", ".join(ROLES))
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--shard-clips", type=int, default=32, help="clips per shard file")
    args = parser.parse_args(argv)
    config = load_train_config(args.config)
    out = args.out or args.data / "precomputed" / Path(args.config).stem
    try:
        sources = parse_sources(args.source)
        start, model_config, paths = starting_model(config, out / "work", sources, print)
    except (SourceError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    precompute(args.data, out, start.components, start.audio_encoder,
               radius=int(model_config["audio"]["window_radius"]),
               at_frame_rate=bool(model_config["audio"].get("interpolate_before_encoder")),
               identity_embedder=start.identity_embedder, fingerprint_value=fingerprint(model_config, paths),
               dtype=getattr(torch, args.dtype), shard_clips=args.shard_clips, sources=paths)
    print(out)
    return 0
