"""The SynthTalk data set writer: numbered clips in the training layout, resumable and the same for any number of
worker processes, and the `portraittalk synth` command."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ...models.audio_contract import SAMPLE_RATE
from ..layout import write_clip, write_index
from .clips import make_clip
from .constants import FPS, SYNTHTALK_VERSION
from .identities import caption_vocabulary, make_identity
from .speech import tts_available

SPLITS = {"train": 0, "test": 1}


def clip_seeds(seed: int, index: int, split: str = "train") -> tuple[list[int], int]:
    """(clip seed entropy, identity seed) of clip `index`. Identity seeds are even for the
    train split and odd for the test split, so the splits never share a person."""
    code = SPLITS[split]
    return [int(seed), code, int(index)], 2 * (int(seed) * 1_000_003 + int(index)) + code


def _clip_id(index: int) -> str:
    return f"clip_{index:05d}"


def _settings(seconds, size, seed, tts_fraction, split, fps, sample_rate) -> dict:
    return {"version": SYNTHTALK_VERSION, "seconds": float(seconds), "size": int(size), "seed": int(seed),
            "tts_fraction": float(tts_fraction), "split": split, "fps": fps, "sample_rate": int(sample_rate)}


def _clip_complete(out_dir: Path, clip_id: str, settings: dict) -> bool:
    meta_path = out_dir / "clips" / clip_id / "meta.json"
    if not meta_path.is_file():
        return False
    found = json.loads(meta_path.read_text()).get("synthtalk_settings")
    if found != settings:
        raise ValueError(f"{meta_path} was made with {found}, not {settings}; use another directory or overwrite=True")
    return True


def _make_and_write(job: tuple) -> str:
    out_dir, index, settings = job
    clip_seed, identity_seed = clip_seeds(settings["seed"], index, settings["split"])
    rng = np.random.default_rng(clip_seed + [0x77])
    use_tts = bool(rng.random() < settings["tts_fraction"])
    clip = make_clip(clip_seed, settings["seconds"], settings["size"], identity=make_identity(identity_seed),
                     tts=use_tts, fps=settings["fps"], sample_rate=settings["sample_rate"])
    clip.meta.update({"synthtalk_settings": settings, "clip_seed": clip_seed, "identity_seed": identity_seed})
    # Write into a scratch directory, then rename: a clip directory exists only when complete.
    clip_id = _clip_id(index)
    scratch = Path(out_dir) / ".partial" / f"{clip_id}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    write_clip(scratch, clip_id, clip)
    final = Path(out_dir) / "clips" / clip_id
    shutil.rmtree(final, ignore_errors=True)
    os.replace(scratch / "clips" / clip_id, final)
    shutil.rmtree(scratch, ignore_errors=True)
    return clip_id


def write_dataset(out_dir: str | os.PathLike, num_clips: int, seconds: float, size: int = 64, seed: int = 0,
                  tts_fraction: float = 0.0, workers: int = 1, split: str = "train", *, fps: float = FPS,
                  sample_rate: int = SAMPLE_RATE, overwrite: bool = False, progress: bool = False) -> Path:
    """Write `num_clips` SynthTalk clips in the training/layout.py layout plus dataset.json.

    Resumable: clips already complete (made with the same settings) are kept as they are.
    `workers` > 1 generates clips in that many processes; the result does not depend on it.
    Returns the path of dataset.json."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, not {split!r}")
    out = Path(out_dir)
    if overwrite:
        shutil.rmtree(out / "clips", ignore_errors=True)
        (out / "dataset.json").unlink(missing_ok=True)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    settings = _settings(seconds, size, seed, tts_fraction, split, fps, sample_rate)
    todo = [i for i in range(num_clips) if not _clip_complete(out, _clip_id(i), settings)]
    if tts_fraction > 0 and not tts_available():
        warnings.warn("espeak-ng not found: SynthTalk uses synthetic speech for every clip", stacklevel=2)
    jobs = [(str(out), i, settings) for i in todo]
    start, done = time.monotonic(), 0

    def report(clip_id):
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == len(jobs)):
            print(f"synthtalk: {done}/{len(jobs)} clips written ({time.monotonic() - start:.1f} s)", file=sys.stderr)

    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the caller may hold torch or other threaded state that fork copies badly.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for clip_id in pool.map(_make_and_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                report(clip_id)
    else:
        for job in jobs:
            report(_make_and_write(job))
    shutil.rmtree(out / ".partial", ignore_errors=True)
    clip_ids = [_clip_id(i) for i in range(num_clips)]  # clips of an earlier, larger run stay unlisted
    return write_index(out, clip_ids, fps=fps, sample_rate=sample_rate, size=size, source="synthtalk",
                       extra={"split": split, "synthtalk": settings, "caption_vocabulary": caption_vocabulary(),
                              "tts_available": tts_available()})
