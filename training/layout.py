"""The on-disk layout of a training set, shared by SynthTalk and by preprocessing of real videos.

```
DATASET/
  dataset.json            {"format": "portraittalk-clips", "version": 1, "fps": 25, "sample_rate": 16000,
                           "size": 64, "clips": ["clip_00000", ...], "source": "synthtalk" | "preprocess"}
  clips/<clip_id>/
    frames.npy            uint8 [F, H, W, 3]   (small sizes; memory-mapped when read)
      or frames.mp4       the same frames as video (large sizes)
    audio.wav             16 kHz mono PCM-16, covering at least F / fps seconds
    masks.npz             face: uint8 [F, H, W] in {0, 255}; lip: uint8 [F, H, W] in {0, 255}
    meta.json             {"caption": str, "attributes": {...}, "frames": F,
                           "per_frame": {"mouth_height": [...], "mouth_width": [...], "blink": [...]}, ...}
  captions.json           optional, from `portraittalk caption` and editable by hand:
                           {"clips": {"<clip_id>": {"caption": str, ...}}, ...}
```
Only `frames.*`, `audio.wav` and `masks.npz` are required; `meta.json` holds what the source knows. Where
`captions.json` has an entry for a clip, its caption wins over meta.json's (`read_clip`).
"""

from __future__ import annotations

import functools
import json
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

FORMAT = "portraittalk-clips"
VERSION = 1
CAPTIONS_FILE = "captions.json"  # written by `portraittalk caption` (training/caption.py)


@dataclass
class Clip:
    """One clip in memory. Arrays are numpy; nothing here needs torch."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    audio: np.ndarray  # float32 [T] in -1..1 at `sample_rate`
    face_mask: np.ndarray  # uint8 [F, H, W], 0 or 255
    lip_mask: np.ndarray  # uint8 [F, H, W], 0 or 255
    meta: dict = field(default_factory=dict)
    fps: float = 25.0
    sample_rate: int = 16000

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def caption(self) -> str:
        return str(self.meta.get("caption", ""))


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as PCM-16 (clipped to -1..1)."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a PCM-16 WAV written by `write_wav` (mono float32, sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, found {8 * w.getsampwidth()}-bit samples")
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return pcm, rate


FRAMES_FORMATS = ("npy", "mp4")


def write_frames_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Frames uint8 [F, H, W, 3] as a near-lossless H.264 video (4:4:4, so colour edges such as the
    lips stay sharp; any size, odd ones included)."""
    from ..media import CLIP_FRAMES, write_mp4  # PyAV: only real-data clips need a video encoder

    write_mp4(path, np.asarray(frames, np.uint8), fps, settings=CLIP_FRAMES)


def write_clip(dataset_dir: str | os.PathLike, clip_id: str, clip: Clip, *, frames_format: str = "npy") -> Path:
    """Write one clip under DATASET/clips/<clip_id>/, frames as frames.npy (`frames_format="npy"`) or
    frames.mp4 (`"mp4"`: far smaller for large crops, but decoded whole when read)."""
    if frames_format not in FRAMES_FORMATS:
        raise ValueError(f"frames_format must be one of {FRAMES_FORMATS}, not {frames_format!r}")
    clip_dir = Path(dataset_dir) / "clips" / clip_id
    clip_dir.mkdir(parents=True, exist_ok=True)
    if frames_format == "mp4":
        write_frames_mp4(clip_dir / "frames.mp4", clip.frames, clip.fps)
    else:
        np.save(clip_dir / "frames.npy", np.ascontiguousarray(clip.frames, dtype=np.uint8))
    write_wav(clip_dir / "audio.wav", clip.audio, clip.sample_rate)
    # asarray, not astype: masks that are uint8 already are not copied (they can be large)
    np.savez_compressed(clip_dir / "masks.npz", face=np.asarray(clip.face_mask, np.uint8),
                        lip=np.asarray(clip.lip_mask, np.uint8))
    meta = dict(clip.meta)
    meta.setdefault("frames", clip.num_frames)
    (clip_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return clip_dir


def write_index(dataset_dir: str | os.PathLike, clip_ids: list[str], *, fps: float, sample_rate: int, size: int,
                source: str, extra: dict | None = None) -> Path:
    """Write DATASET/dataset.json listing the clips (call after the clips are written)."""
    index = {"format": FORMAT, "version": VERSION, "fps": fps, "sample_rate": sample_rate, "size": size,
             "source": source, "clips": sorted(clip_ids)}
    index.update(extra or {})
    path = Path(dataset_dir) / "dataset.json"
    path.write_text(json.dumps(index, indent=1))
    return path


def read_index(dataset_dir: str | os.PathLike) -> dict:
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a PortraitTalk dataset (no dataset.json); make one with "
                                "`portraittalk synth` or `portraittalk preprocess`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {index.get('format')!r}, expected {FORMAT!r}")
    return index


def read_frames(clip_dir: Path) -> np.ndarray:
    npy = clip_dir / "frames.npy"
    if npy.is_file():
        return np.load(npy, mmap_mode="r")
    mp4 = clip_dir / "frames.mp4"
    if mp4.is_file():
        import av  # only real-data clips need a video decoder

        with av.open(str(mp4)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    raise FileNotFoundError(f"{clip_dir}: no frames.npy or frames.mp4")


def read_captions(dataset_dir: str | os.PathLike) -> MappingProxyType:
    """clip id → caption from DATASET/captions.json; empty where there is no such file. The file is parsed
    once per change (training reads a clip per batch row), and a file that is not valid JSON is an error
    rather than silently ignored: it holds someone's edits."""
    path = Path(dataset_dir) / CAPTIONS_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return MappingProxyType({})
    return _parse_captions(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse_captions(path: str, mtime_ns: int, size: int) -> MappingProxyType:
    try:
        clips = json.loads(Path(path).read_text(encoding="utf-8")).get("clips", {})
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a captions file ({e}); fix it or delete it") from None
    if not isinstance(clips, dict):
        raise ValueError(f"{path}: \"clips\" must be an object of clip id → entry")
    return MappingProxyType({clip_id: entry["caption"] for clip_id, entry in clips.items()
                             if isinstance(entry, dict) and isinstance(entry.get("caption"), str)})


def read_clip(dataset_dir: str | os.PathLike, clip_id: str, *, fps: float | None = None) -> Clip:
    """One clip; `fps` defaults to the data set's (dataset.json), or 25 where there is none. The caption is
    DATASET/captions.json's where that file has the clip, else meta.json's."""
    clip_dir = Path(dataset_dir) / "clips" / clip_id
    if fps is None:
        index_path = Path(dataset_dir) / "dataset.json"
        fps = float(json.loads(index_path.read_text()).get("fps", 25.0)) if index_path.is_file() else 25.0
    frames = read_frames(clip_dir)
    audio, rate = read_wav(clip_dir / "audio.wav")
    with np.load(clip_dir / "masks.npz") as masks:
        face, lip = masks["face"], masks["lip"]
    meta_path = clip_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    caption = read_captions(dataset_dir).get(clip_id)
    if caption is not None:
        meta["caption"] = caption
    return Clip(frames=frames, audio=audio, face_mask=face, lip_mask=lip, meta=meta, fps=fps, sample_rate=rate)
