"""`portraittalk convert`: other projects' weights → PortraitTalk model files.

    portraittalk convert hallo net.pth hallo_net.portraittalk.safetensors [--text-from sd15.safetensors] [--dtype fp16]
"""

from __future__ import annotations

import argparse
import sys

from ..models.dtypes import DTYPE_NAMES, torch_dtype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk convert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    hallo = sub.add_parser("hallo", help="Hallo's net.pth (fudan-generative-vision/hallo) → one .safetensors file")
    hallo.add_argument("source", help="Hallo's net.pth (fp16 or fp32); read with torch.load(weights_only=True)")
    hallo.add_argument("out", help="the PortraitTalk .safetensors file to write (put it in models/portraittalk)")
    hallo.add_argument("--text-from", default=None,
                       help="an SD-1.5 single-file checkpoint whose cross-attention K/V become the text stream "
                            "(optional; without it λ_text stays 0)")
    hallo.add_argument("--dtype", choices=sorted([*DTYPE_NAMES, "keep"]), default="keep",
                       help="cast floating tensors (default: keep)")
    args = parser.parse_args(argv)
    from ..models.files.hallo import convert_hallo
    from ..models.files.weights import ModelFileError

    dtype = None if args.dtype == "keep" else torch_dtype(args.dtype)
    return write_and_report(lambda: convert_hallo(args.source, args.out, text_from=args.text_from, dtype=dtype),
                            args.out, (ModelFileError, FileNotFoundError))


def write_and_report(write, out, errors: tuple[type[Exception], ...]) -> int:
    """Run `write()` (which writes `out` and returns a report): its summary on success, or the bad input
    file's error as one line on stderr and exit code 2."""
    try:
        report = write()
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
