"""Batch evaluation of a folder of generated videos, written as CSV and Markdown tables.

Layout: every video in ``results_dir`` (mp4, mkv, webm, mov, avi, gif) is one entry.
For a video ``NAME.mp4``:

* the audio is ``NAME.wav`` when present, else the video's own audio stream;
* the reference is ``NAME.png`` or ``NAME.jpg`` when present, else ``reference``;
* the ground truth is the video of the same stem in ``ground_truth_dir``, if given.

Writes ``metrics.csv``, ``metrics.md`` (headline numbers, one row per video and a mean
row) and ``metrics.json`` (every full result) to ``out_dir`` (default: ``results_dir``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from .evaluate import DEFAULT_METRICS, evaluate, summary_row
from ..media import VIDEO_EXTENSIONS, read_audio, read_image, read_video


def evaluate_folder(results_dir, ground_truth_dir=None, reference=None, metrics=DEFAULT_METRICS,
                    backend: str = "auto", out_dir=None, **evaluate_options) -> list[dict]:
    """Evaluate every video in ``results_dir``; returns the table rows (one per video)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {str(results_dir)!r}")
    videos = sorted(p for p in results_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise ValueError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {str(results_dir)!r}")
    ref_image = read_image(reference) if isinstance(reference, (str, os.PathLike)) else reference
    rows, full = [], {}
    for path in videos:
        video = read_video(path)
        audio, sr = _audio_for(path, video)
        ref = _sibling_image(path)
        ref = read_image(ref) if ref is not None else ref_image
        gt = None
        if ground_truth_dir is not None:
            gt_path = _same_stem(Path(ground_truth_dir), path.stem)
            gt = read_video(gt_path).frames if gt_path is not None else None
        result = evaluate(video.frames, audio, sr, video.fps, reference=ref, ground_truth=gt,
                          metrics=metrics, backend=backend, **evaluate_options)
        result.pop("series", None)
        full[path.name] = result
        rows.append({"video": path.name, **summary_row(result)})
    out = Path(out_dir) if out_dir is not None else results_dir
    out.mkdir(parents=True, exist_ok=True)
    write_tables(rows, out)
    (out / "metrics.json").write_text(json.dumps(full, indent=1))
    return rows


def write_tables(rows: list[dict], out_dir) -> None:
    """``metrics.csv`` and ``metrics.md`` with a final mean row."""
    out_dir = Path(out_dir)
    columns = ["video"] + sorted({k for r in rows for k in r if k != "video"}, key=_column_order)
    mean_row = {"video": "mean"}
    for c in columns[1:]:
        vals = [r[c] for r in rows if isinstance(r.get(c), (int, float))]
        if vals:
            mean_row[c] = float(np.mean(vals))
    table = rows + [mean_row]
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in table:
            w.writerow({c: _fmt(r.get(c)) for c in columns})
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in table]
    (out_dir / "metrics.md").write_text("\n".join(lines) + "\n")


_ORDER = ["frames", "adfd", "adfd_spatial", "adfd_temporal", "adfd_jitter", "adfd_lag", "lmd", "csim",
          "sync_c", "sync_d", "fid", "fvd"]


def _column_order(c: str):
    return (_ORDER.index(c) if c in _ORDER else len(_ORDER), c)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _audio_for(path: Path, video):
    wav = path.with_suffix(".wav")
    if wav.is_file():
        return read_audio(wav)
    if video.audio is None or len(video.audio) == 0:
        raise ValueError(f"{str(path)!r} has no audio stream and there is no {wav.name} beside it")
    return video.audio, video.sample_rate


def _sibling_image(path: Path):
    for ext in (".png", ".jpg", ".jpeg"):
        p = path.with_suffix(ext)
        if p.is_file():
            return p
    return None


def _same_stem(folder: Path, stem: str):
    for p in sorted(folder.glob(stem + ".*")):
        if p.suffix.lower() in VIDEO_EXTENSIONS:
            return p
    return None
