"""Training batches from a clip data set (the layout of `layout.py`): image pairs for stage 1, short
video clips for stage 2.

Stage-1 pairs take a reference and target frames of the same person. For SynthTalk clips, the
reference is re-rendered from the clip's identity, sometimes with other attributes than the target
(e.g. without the glasses the target wears); the caption then describes the target, so the model learns
to take identity from the reference and edits from the text. Real clips use another frame of the same
clip as the reference. The text is dropped only where the reference already looks like the target, so
"no text" keeps the reference's look.

Distributed runs: every rank draws the same global batch of `rows × world` rows from one random stream
(the same seed on every rank) and reads and renders only its own share, rows `rank·rows … (rank+1)·rows`.
So each rank reads a different part of the data, and the global batch, and every random choice in it,
is the same whatever the number of processes: one process with 4 rows trains on what two with 2 rows do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import layout


@dataclass
class Batch:
    references: torch.Tensor  # [B, 3, S, S] in 0..1
    targets: torch.Tensor  # [B, F, 3, S, S] in 0..1
    audio: torch.Tensor  # [B, F, 2r+1, L, D] audio-feature windows of the target frames
    face: torch.Tensor  # [B, F, 1, S, S] in 0..1
    lip: torch.Tensor  # [B, F, 1, S, S] in 0..1
    captions: list[str]  # one per row ("" = no text)
    texts_dropped: torch.Tensor  # [B] bool
    row_offset: int = 0  # where these rows start in the global batch (distributed runs)
    global_rows: int = 0  # rows of the global batch, across all ranks (0: these rows are all of it)


class ClipStore:
    """The clips of one data set. Audio features (on the video clock) are computed once for every clip;
    frames and masks are read when a clip is drawn, and the last few clips are kept (npy frames are
    memory-mapped, mp4 frames decoded), so a data set larger than memory trains too."""

    def __init__(self, root, audio_encoder, window_radius: int, cache: int = 16):
        from functools import lru_cache

        from ..models.audio import features_per_frame, frame_windows, prepare_waveform

        self.root = Path(root)
        index = layout.read_index(root)
        self.fps = float(index["fps"])
        self.clip_ids = list(index["clips"])
        if not self.clip_ids:
            raise ValueError(f"{root}: the data set has no clips")
        self.audio_windows, self.metas, self.frame_counts = [], [], []
        for clip_id in self.clip_ids:
            clip_dir = self.root / "clips" / clip_id
            meta = json.loads((clip_dir / "meta.json").read_text()) if (clip_dir / "meta.json").is_file() else {}
            wav, rate = layout.read_wav(clip_dir / "audio.wav")
            frames = int(meta.get("frames") or layout.read_frames(clip_dir).shape[0])
            wav = prepare_waveform(wav, rate, name=f"{clip_id}/audio.wav")
            per_frame = features_per_frame(audio_encoder(wav), frames, self.fps)
            self.audio_windows.append(frame_windows(per_frame, window_radius).numpy())
            self.metas.append(meta)
            self.frame_counts.append(frames)
        self.clip = lru_cache(maxsize=cache)(self._read)

    def _read(self, index: int) -> layout.Clip:
        clip = layout.read_clip(self.root, self.clip_ids[index], fps=self.fps)
        clip.audio_windows = self.audio_windows[index]
        return clip

    def __len__(self) -> int:
        return len(self.clip_ids)


def _masks(clip, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (clip.face_mask[frames].astype(np.float32) / 255.0)[:, None], (clip.lip_mask[frames].astype(np.float32) / 255.0)[:, None]


def _pixels(array: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] → float [..., 3, H, W] in 0..1."""
    t = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    return t.movedim(-1, -3)


class PairSampler:
    """Stage 1: per row, one reference and `frames` target frames of the same person.

    `rows` is the batch of one rank; with `world` ranks the global batch is `rows × world`. Every rank
    draws the plan of the whole global batch (which clip, frames, reference, text drop: cheap, from the
    clips' metadata) and then reads only its own rows."""

    def __init__(self, store: ClipStore, rows: int, frames: int, *, edit_probability: float, text_dropout: float,
                 seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.store, self.rows, self.frames = store, rows, frames
        self.edit_probability, self.text_dropout = edit_probability, text_dropout
        self.rank, self.world = rank, world
        self.rng = np.random.default_rng(seed)

    def _plan_reference(self, meta: dict, num_frames: int) -> tuple[object, bool]:
        """(what the reference is, whether it differs from the target's look): a frame index of the clip,
        or the SynthTalk attributes to render it with."""
        if meta.get("source") != "synthtalk":
            return int(self.rng.integers(num_frames)), False
        from .synthtalk import BACKGROUNDS

        if self.rng.random() >= self.edit_probability:
            return None, False
        attrs = dict(meta["attributes"])
        changed = self.rng.choice(["glasses", "hat", "smiling", "background"])
        if changed == "background":
            attrs["background"] = self.rng.choice([b for b in BACKGROUNDS if b != attrs["background"]])
        else:
            attrs[changed] = not attrs[changed]
        return attrs, True

    def _frames(self, num_frames: int) -> np.ndarray:
        """Target frame indices: scattered through the clip (stage 1)."""
        return np.sort(self.rng.choice(num_frames, size=self.frames, replace=num_frames < self.frames))

    def _plan(self) -> tuple[int, np.ndarray, object, bool]:
        index = int(self.rng.integers(len(self.store)))
        meta, num_frames = self.store.metas[index], self.store.frame_counts[index]
        frames = self._frames(num_frames)
        reference, edited = self._plan_reference(meta, num_frames)
        drop = not edited and self.rng.random() < self.text_dropout
        return index, frames, reference, drop

    def __call__(self) -> Batch:
        from .synthtalk import reference_for_clip

        plans = [self._plan() for _ in range(self.rows * self.world)]  # the global batch, in one fixed order
        mine = plans[self.rank * self.rows: (self.rank + 1) * self.rows]
        refs, targets, audio, face, lip, captions, dropped = [], [], [], [], [], [], []
        for index, frames, reference, drop in mine:
            clip = self.store.clip(index)
            if isinstance(reference, int):
                image = clip.frames[reference]
            else:  # a SynthTalk re-render, with the planned attributes (None: the clip's own)
                image = reference_for_clip(clip.meta, reference)
            refs.append(_pixels(image))
            targets.append(_pixels(clip.frames[frames]))
            audio.append(torch.from_numpy(clip.audio_windows[frames]))
            f, m = _masks(clip, frames)
            face.append(torch.from_numpy(f))
            lip.append(torch.from_numpy(m))
            captions.append("" if drop else clip.caption)
            dropped.append(drop)
        return Batch(torch.stack(refs), torch.stack(targets), torch.stack(audio), torch.stack(face), torch.stack(lip),
                     captions, torch.tensor(dropped), row_offset=self.rank * self.rows,
                     global_rows=self.rows * self.world)


class VideoSampler(PairSampler):
    """Stage 2: per row, `frames` consecutive frames of one clip, and its reference."""

    def _frames(self, num_frames: int) -> np.ndarray:
        start = self.rng.integers(max(1, num_frames - self.frames + 1))
        return np.arange(start, start + self.frames).clip(max=num_frames - 1)
