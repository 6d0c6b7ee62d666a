"""`portraittalk bench`: where the time and memory of a generation go (bench/benchmark.py), and its sub-modes
`portraittalk bench curve` (speed against quality) and `portraittalk bench train` (training speed and memory)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["curve"]:  # speed against quality of step-reducing schedulers
        from .bench_curve import main as curve_main

        return curve_main(argv[1:])
    if argv[:1] == ["train"]:  # training speed and memory, 1 and N processes
        from .bench_train import main as train_main

        return train_main(argv[1:])
    from ..bench.benchmark import bench_main  # its argparse moves here once bench/benchmark.py is split

    return bench_main(argv)
