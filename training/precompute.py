"""Precompute once: what a training step would otherwise encode again and again, stored per clip in
safetensors shards, so that training steps never run the VAE, the image encoder or wav2vec2.

    portraittalk precompute --config sd15 --data data/hdtf --source checkpoint=... [--out DIR]

```
DATA/precomputed/<config name>/          (or --out)
  index.json                {"format": "portraittalk-precomputed", "fingerprint": ..., "clips": {id: shard},
                             "embeds": "per_frame" | "per_clip" | null, "sources": {...}}
  shard-00000.safetensors   for each clip id C of the shard:
      C/latents  [F, C, h, w]   the model's latents of every frame (its codec)
      C/audio    [F, 2r+1, L, D] audio-feature windows on the video clock (its audio encoder)
      C/face, C/lip  uint8 [F, S, S]  the face and lip masks
      C/embeds   [F, E] (frozen image encoder: every frame can be a reference) or [1, E] (Hallo: ArcFace of
                 the first frame); absent where the image encoder trains (the tiny family)
      C/reference, C/reference_latents, C/reference_embeds   SynthTalk clips: the render of the clip's
                 identity that is their reference (uint8 [1, S, S, 3]), encoded the same way (no
                 reference_embeds for per-clip embeddings)
```
The fingerprint covers the model config's codec, audio and identity sections and the source files' names
and sizes: training refuses shards made for another model. Shards are memory-mapped when read; each
training rank reads only the rows of the global batch that are its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..models.families import family_of
from . import layout

FORMAT = "portraittalk-precomputed"


def fingerprint(model_config: dict, sources: dict | None = None) -> str:
    from ..models.config import to_json

    parts = {k: model_config.get(k) for k in ("family", "codec", "audio", "identity")}
    files = {role: [Path(p).name, Path(p).stat().st_size if Path(p).is_file() else None]
             for role, p in sorted((sources or {}).items())}
    return hashlib.sha256((to_json(parts) + json.dumps(files, sort_keys=True)).encode()).hexdigest()[:16]


def clip_audio_windows(clip_dir: Path, num_frames: int, fps: float, encoder, radius: int,
                       at_frame_rate: bool = False) -> np.ndarray:
    """A clip's audio-feature windows `[F, 2r+1, L, D]`, one per video frame (Hallo: wav2vec2 at the frame rate)."""
    from ..models.networks.audio import features_per_frame, frame_windows, prepare_waveform

    wav, rate = layout.read_wav(clip_dir / "audio.wav")
    wav = prepare_waveform(wav, rate, name=f"{clip_dir.name}/audio.wav")
    features = encoder.at_frame_rate(wav, fps) if at_frame_rate else encoder(wav)
    return frame_windows(features_per_frame(features, num_frames, fps), radius).numpy()


class PrecomputedClips:
    """The reading side: one clip's tensors at a time, memory-mapped from its shard."""

    def __init__(self, folder, expected_fingerprint: str | None = None):
        from safetensors import safe_open

        self.folder = Path(folder)
        index_file = self.folder / "index.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"{self.folder}: no index.json; make it with `portraittalk precompute`")
        index = json.loads(index_file.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_file}: not a precomputed data set (format {index.get('format')!r})")
        if expected_fingerprint is not None and index["fingerprint"] != expected_fingerprint:
            raise ValueError(f"{self.folder}: precomputed for another model or other source files (fingerprint "
                             f"{index['fingerprint']}, this run {expected_fingerprint}); run `portraittalk precompute` "
                             "again with this run's config and --source files")
        self.clips: dict[str, str] = index["clips"]
        self.embeds_kind = index.get("embeds")
        self._open = {}
        self._safe_open = safe_open

    def _file(self, clip_id: str):
        shard = self.clips.get(clip_id)
        if shard is None:
            raise KeyError(f"{self.folder}: clip {clip_id} was not precomputed")
        if shard not in self._open:
            self._open[shard] = self._safe_open(str(self.folder / shard), "pt")
        return self._open[shard]

    def get(self, clip_id: str, name: str) -> torch.Tensor:
        return self._file(clip_id).get_tensor(f"{clip_id}/{name}")

    def rows(self, clip_id: str, name: str, indices) -> torch.Tensor:
        """Only the given frames of a clip's tensor: a training row reads a few frames, not the whole clip
        (a 4 s clip's masks at 512² are 26 MB each)."""
        part = self._file(clip_id).get_slice(f"{clip_id}/{name}")
        return torch.cat([part[int(i): int(i) + 1] for i in indices])


def precompute(data_dir, out_dir, components, audio_encoder, *, radius: int, at_frame_rate: bool = False,
               identity_embedder=None, fingerprint_value: str = "", dtype: torch.dtype = torch.float16,
               shard_clips: int = 32, sources: dict | None = None, log=print) -> Path:
    """Encode every clip of `data_dir` once and write the shards and index.json into `out_dir`."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    index = layout.read_index(data_dir)
    fps, clip_ids = float(index["fps"]), list(index["clips"])
    frozen_image_encoder = family_of(components.config).pretrained_encoders and components.image_encoder is not None
    embeds_kind = "per_clip" if identity_embedder is not None else "per_frame" if frozen_image_encoder else None
    out_dir.mkdir(parents=True, exist_ok=True)
    shards, pending, written = {}, {}, 0

    def flush():
        nonlocal pending, written
        if not pending:
            return
        name = f"shard-{written:05d}.safetensors"
        partial = out_dir / f".partial-{name}"
        save_file(pending, str(partial))
        partial.replace(out_dir / name)  # a shard is complete or absent
        for key in pending:
            shards[key.split("/")[0]] = name
        pending, written = {}, written + 1

    for clip_id in tqdm(clip_ids, desc="precompute", unit="clip"):
        clip_dir = data_dir / "clips" / clip_id
        frames = np.asarray(layout.read_frames(clip_dir))
        with np.load(clip_dir / "masks.npz") as masks:
            face, lip = masks["face"], masks["lip"]
        meta_file = clip_dir / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        tensors = {"face": torch.from_numpy(np.ascontiguousarray(face, np.uint8)),
                   "lip": torch.from_numpy(np.ascontiguousarray(lip, np.uint8)),
                   "audio": torch.from_numpy(clip_audio_windows(clip_dir, len(frames), fps, audio_encoder, radius,
                                                                at_frame_rate)).to(dtype)}
        tensors.update(_encoded(frames, "", components, embeds_kind, identity_embedder, dtype))
        if meta.get("source") == "synthtalk":  # its references are renders of the clip's identity, not frames
            from .synthtalk.rendering import reference_for_clip

            reference = reference_for_clip(meta)[None]
            tensors["reference"] = torch.from_numpy(np.ascontiguousarray(reference, np.uint8))
            tensors.update(_encoded(reference, "reference_", components, embeds_kind, identity_embedder, dtype))
        pending.update({f"{clip_id}/{k}": v.contiguous() for k, v in tensors.items()})
        if len({k.split("/")[0] for k in pending}) >= shard_clips:
            flush()
    flush()
    (out_dir / "index.json").write_text(json.dumps(
        {"format": FORMAT, "version": 1, "fingerprint": fingerprint_value, "dtype": str(dtype).removeprefix("torch."),
         "embeds": embeds_kind, "data": str(data_dir.resolve()), "clips": shards,
         "sources": {k: str(v) for k, v in (sources or {}).items()}}, indent=1))
    log(f"precomputed {len(clip_ids)} clips into {written} shard(s) in {out_dir}")
    return out_dir


@torch.no_grad()
def _encoded(frames: np.ndarray, prefix: str, components, embeds_kind, identity_embedder, dtype) -> dict:
    """`{prefix}latents` and, where stored, `{prefix}embeds` of frames uint8 `[N, H, W, 3]`."""
    pixels = torch.from_numpy(np.array(frames)).float().div(255).movedim(-1, 1)
    out = {f"{prefix}latents": torch.cat([components.codec.encode(c * 2 - 1) for c in pixels.split(16)]).to(dtype)}
    if embeds_kind == "per_clip" and not prefix:  # one per clip, of its first frame
        out[f"{prefix}embeds"] = torch.from_numpy(np.asarray(identity_embedder(frames[0]), np.float32))[None].to(dtype)
    elif embeds_kind == "per_frame":
        out[f"{prefix}embeds"] = torch.cat([components.image_encoder(c) for c in pixels.split(16)]).to(dtype)
    return out
