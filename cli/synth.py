"""`portraittalk synth`: SynthTalk clips (training/synthtalk.py)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from ..training.synthtalk import synth_main  # its argparse moves here once training/synthtalk.py is split

    return synth_main(argv)
