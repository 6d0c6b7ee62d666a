"""``portraittalk eval``: measure one video from the command line; ``portraittalk eval synthtalk`` runs the
SynthTalk protocol (cli/eval_synthtalk.py)."""

from __future__ import annotations

import argparse
import json
import sys

from ..evaluation.evaluate import DEFAULT_METRICS, METRICS, evaluate, summary_row


def build_parser(prog: str = "portraittalk eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Measure a talking-face video: ADFD, LMD, CSIM, "
                                "Sync-C/D, FID, FVD. Nothing is downloaded: model weights are local files.")
    p.add_argument("--video", required=True, help="generated video file")
    p.add_argument("--audio", help="audio file (default: the video's own audio stream)")
    p.add_argument("--reference", help="reference image for CSIM")
    p.add_argument("--ground-truth", help="real video for LMD, FID, FVD and ADFD's spatial part")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated, from {','.join(METRICS)} (default: %(default)s)")
    p.add_argument("--backend", default="auto", choices=("auto", "mediapipe", "colour", "fallback"),
                   help="face analyser; 'colour' for SynthTalk videos (default: %(default)s)")
    p.add_argument("--face-model", help="face_landmarker.task for the mediapipe backend")
    p.add_argument("--syncnet", help="SyncNet weights (syncnet_python's syncnet_v2.model) for 'sync'")
    p.add_argument("--inception", help="torchvision Inception-v3 weights (.safetensors/.pth) for 'fid'")
    p.add_argument("--i3d", help="I3D weights (pytorch-i3d layout, .safetensors/.pt) for 'fvd'")
    p.add_argument("--json", help="write the full result here")
    p.add_argument("--plot", help="write a PNG of mouth aperture against the audio envelope here")
    p.add_argument("--cache-dir", help="cache face analyses here")
    p.add_argument("--device", default="cpu", help="torch device for the network metrics")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["synthtalk"]:  # does a model really work? held-out SynthTalk and real speech
        from .eval_synthtalk import main as synthtalk_main

        return synthtalk_main(argv[1:])
    args = build_parser().parse_args(argv)
    from ..media import read_audio, read_image, read_video

    video = read_video(args.video)
    if args.audio:
        audio, sr = read_audio(args.audio)
    elif video.audio is not None and len(video.audio):
        audio, sr = video.audio, video.sample_rate
    else:
        print(f"error: {args.video} has no audio stream; pass --audio", file=sys.stderr)
        return 2
    reference = read_image(args.reference) if args.reference else None
    ground_truth = read_video(args.ground_truth).frames if args.ground_truth else None
    weights = {k: v for k, v in (("syncnet", args.syncnet), ("inception", args.inception), ("i3d", args.i3d)) if v}
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    result = evaluate(video.frames, audio, sr, video.fps, reference=reference, ground_truth=ground_truth,
                      metrics=metrics, backend=args.backend, weights=weights, cache_dir=args.cache_dir,
                      face_model_path=args.face_model, device=args.device)
    if args.plot:
        from PIL import Image

        from ..evaluation.plot import plot_mouth_vs_audio
        Image.fromarray(plot_mouth_vs_audio(result)).save(args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    for key, value in summary_row(result).items():
        print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    for name, m in result["metrics"].items():
        if "skipped" in m:
            print(f"{name:>14}: skipped ({m['skipped']})")
    for note in result["metrics"].get("adfd", {}).get("notes", []):
        print(f"note: {note}")
    return 0
