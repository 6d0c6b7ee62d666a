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
    references: torch.Tensor | None  # [B, 3, S, S] in 0..1 (None: precomputed latents and embeddings)
    targets: torch.Tensor | None  # [B, F, 3, S, S] in 0..1 (None: precomputed latents)
    audio: torch.Tensor  # [B, F, 2r+1, L, D] audio-feature windows of the target frames
    face: torch.Tensor  # [B, F, 1, S, S] in 0..1
    lip: torch.Tensor  # [B, F, 1, S, S] in 0..1
    captions: list[str]  # one per row ("" = no text)
    texts_dropped: torch.Tensor  # [B] bool
    row_offset: int = 0  # where these rows start in the global batch (distributed runs)
    global_rows: int = 0  # rows of the global batch, across all ranks (0: these rows are all of it)
    identity_embeds: torch.Tensor | None = None  # [B, E] the reference's embedding, where it is not encoded here
    reference_latents: torch.Tensor | None = None  # [B, C, h, w] precomputed (portraittalk precompute)
    target_latents: torch.Tensor | None = None  # [B, F, C, h, w] precomputed


class ClipStore:
    """The clips of one data set. Audio features (on the video clock) are computed once for every clip, and
    so is the face embedding of its first frame where the model takes one (`identity_embedder`; Hallo embeds
    one frame per video too); frames and masks are read when a clip is drawn, and the last few clips are
    kept (npy frames are memory-mapped, mp4 frames decoded), so a data set larger than memory trains too.

    `audio_at_frame_rate`: Hallo's wav2vec2 variant, run at the video's frame rate (`Wav2Vec2Encoder.at_frame_rate`)."""

    def __init__(self, root, audio_encoder, window_radius: int, cache: int = 16, *, audio_at_frame_rate: bool = False,
                 identity_embedder=None, precomputed=None):
        from functools import lru_cache

        from .precompute import clip_audio_windows

        self.root = Path(root)
        self.precomputed = precomputed  # PrecomputedClips: latents, audio, masks and embeddings from shards
        index = layout.read_index(root)
        self.fps = float(index["fps"])
        self.clip_ids = list(index["clips"])
        if not self.clip_ids:
            raise ValueError(f"{root}: the data set has no clips")
        self.audio_windows, self.metas, self.frame_counts = [], [], []
        for clip_id in self.clip_ids:
            clip_dir = self.root / "clips" / clip_id
            meta = json.loads((clip_dir / "meta.json").read_text()) if (clip_dir / "meta.json").is_file() else {}
            frames = int(meta.get("frames") or layout.read_frames(clip_dir).shape[0])
            if precomputed is not None:
                windows = precomputed.get(clip_id, "audio").float().numpy()
            else:
                windows = clip_audio_windows(clip_dir, frames, self.fps, audio_encoder, window_radius, audio_at_frame_rate)
            self.audio_windows.append(windows)
            self.metas.append(meta)
            self.frame_counts.append(frames)
        self.identity_embeds = None
        if identity_embedder is not None and precomputed is None:
            self.identity_embeds = np.stack([np.asarray(identity_embedder(layout.read_frames(self.root / "clips" / c)[0]),
                                                        np.float32) for c in self.clip_ids])
        self.clip = lru_cache(maxsize=cache)(self._read)

    def _read(self, index: int) -> layout.Clip:
        clip = layout.read_clip(self.root, self.clip_ids[index], fps=self.fps)
        clip.audio_windows = self.audio_windows[index]
        return clip

    def caption(self, index: int) -> str:
        """The clip's caption: DATASET/captions.json's (`portraittalk caption`, editable) or meta.json's."""
        return layout.read_captions(self.root).get(self.clip_ids[index], str(self.metas[index].get("caption", "")))

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
        from .synthtalk.identities import BACKGROUNDS

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
        plans = [self._plan() for _ in range(self.rows * self.world)]  # the global batch, in one fixed order
        mine = plans[self.rank * self.rows: (self.rank + 1) * self.rows]
        read = self._precomputed_row if self.store.precomputed is not None else self._row
        rows = [read(index, frames, reference) for index, frames, reference, _ in mine]

        def stack(name):
            values = [row.get(name) for row in rows]
            return None if values[0] is None else torch.stack(values)

        embeds = stack("embeds")
        if embeds is None and self.store.identity_embeds is not None:
            embeds = torch.from_numpy(self.store.identity_embeds[[p[0] for p in mine]])
        return Batch(stack("reference"), stack("targets"), stack("audio"), stack("face"), stack("lip"),
                     ["" if drop else self.store.caption(index) for index, _, _, drop in mine],
                     torch.tensor([drop for *_, drop in mine]), row_offset=self.rank * self.rows,
                     global_rows=self.rows * self.world, identity_embeds=embeds,
                     reference_latents=stack("reference_latent"), target_latents=stack("target_latents"))

    def _row(self, index: int, frames: np.ndarray, reference) -> dict:
        """One row from the clip's frames, masks and audio windows."""
        from .synthtalk.rendering import reference_for_clip

        clip = self.store.clip(index)
        if isinstance(reference, int):
            image = clip.frames[reference]
        else:  # a SynthTalk re-render, with the planned attributes (None: the clip's own)
            image = reference_for_clip(clip.meta, reference)
        face, lip = _masks(clip, frames)
        return {"reference": _pixels(image), "targets": _pixels(clip.frames[frames]),
                "audio": torch.from_numpy(clip.audio_windows[frames]), "face": torch.from_numpy(face),
                "lip": torch.from_numpy(lip)}

    def _precomputed_row(self, index: int, frames: np.ndarray, reference) -> dict:
        """One row from the clip's shard: latents instead of target pixels; the reference's pixels only where
        the image encoder trains (no stored embeddings)."""
        shards, clip_id = self.store.precomputed, self.store.clip_ids[index]
        if isinstance(reference, dict):
            raise ValueError("precomputed shards hold each clip's own frames and reference: a SynthTalk reference "
                             "re-rendered with other attributes cannot come from them (set the stage's "
                             "edit_probability to 0, or train without --precomputed)")
        row = {"target_latents": shards.rows(clip_id, "latents", frames).float(),
               "audio": torch.from_numpy(self.store.audio_windows[index][frames]),
               "face": shards.rows(clip_id, "face", frames).float().div(255).unsqueeze(1),
               "lip": shards.rows(clip_id, "lip", frames).float().div(255).unsqueeze(1)}
        # a frame of the clip, or (None) the SynthTalk render of the clip's identity, stored as "reference_…"
        prefix, pick = ("", reference) if reference is not None else ("reference_", 0)
        row["reference_latent"] = shards.rows(clip_id, f"{prefix}latents", [pick])[0].float()
        if shards.embeds_kind is None:  # the image encoder trains: it needs the reference's pixels
            image = self.store.clip(index).frames[pick] if reference is not None else shards.get(clip_id, "reference")[0]
            row["reference"] = _pixels(np.asarray(image))
        elif shards.embeds_kind == "per_clip":  # Hallo: one face embedding per clip, of its first frame
            row["embeds"] = shards.get(clip_id, "embeds")[0].float()
        else:
            row["embeds"] = shards.rows(clip_id, f"{prefix}embeds", [pick])[0].float()
        return row


class VideoSampler(PairSampler):
    """Stage 2: per row, `frames` consecutive frames of one clip, and its reference."""

    def _frames(self, num_frames: int) -> np.ndarray:
        start = self.rng.integers(max(1, num_frames - self.frames + 1))
        return np.arange(start, start + self.frames).clip(max=num_frames - 1)
