"""`portraittalk precompute`: a training config's latents, audio features, masks and embeddings, in shards
(training/precompute.py)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from ..training.precompute import precompute_main  # its argparse moves here after training/precompute.py's edits

    return precompute_main(argv)
