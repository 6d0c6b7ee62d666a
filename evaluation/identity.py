"""CSIM: identity similarity between a reference image and the frames of a video.

CSIM is the mean cosine similarity between the reference's embedding and each frame's.
The embedding model is pluggable; every result names the model and its version.

* :class:`ColourHistogramEmbedder`: needs no weights. It is a joint RGB histogram of the
  face region (square-rooted, so the cosine is the Bhattacharyya coefficient). It is
  **not a face-recognition model**: it tells SynthTalk identities apart by skin,
  hair and background colours, and says nothing trustworthy about real faces.
* :class:`ClipVisionEmbedder`: a transformers CLIP vision model (with projection) from a
  local folder, such as the image encoder in ``models/clip_vision``. Nothing is
  downloaded. CLIP is a general image model, not a face-recognition model, but it is
  what the IP-Adapter family uses for identity.
"""

from __future__ import annotations

import os

import numpy as np

from ..faces.masks import face_region_mask


class ColourHistogramEmbedder:
    name = "colour-histogram (not a face-recognition model)"
    version = "1"

    def __init__(self, bins: int = 8):
        self.bins = bins

    def embed(self, images: np.ndarray, observations=None) -> np.ndarray:
        """[N, bins³] unit vectors for uint8 images [N, H, W, 3], over each face region
        (the whole image where an observation is None or absent)."""
        images = _as_uint8(images)
        out = []
        for i, img in enumerate(images):
            obs = None if observations is None else observations[i]
            weight = None
            if obs is not None:
                weight = face_region_mask(obs, img.shape[0], img.shape[1], "face").ravel()
                if weight.sum() < 1:
                    weight = None
            q = (img.reshape(-1, 3).astype(np.int64) * self.bins) // 256
            idx = (q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]
            hist = np.bincount(idx, weights=weight, minlength=self.bins ** 3)
            vec = np.sqrt(hist / max(hist.sum(), 1e-12))
            out.append(vec / max(np.linalg.norm(vec), 1e-12))
        return np.array(out, np.float64)


class ClipVisionEmbedder:
    """CLIP image embeddings from a local transformers folder (config.json + weights)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        path = os.fspath(path)
        if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(
                f"CLIP vision model not found at {path!r}: expected a transformers folder with config.json and "
                "model.safetensors (e.g. a CLIP ViT image encoder from models/clip_vision)")
        import torch
        import transformers
        from transformers import CLIPVisionModelWithProjection

        self.model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device
        self.torch = torch
        self.name = f"clip-vision:{os.path.basename(os.path.normpath(path))}"
        self.version = f"transformers-{transformers.__version__}"
        cfg = self.model.config
        self.image_size = int(cfg.image_size)
        # CLIP's published normalisation (the defaults of CLIPImageProcessor).
        self.mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
        self.std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

    def embed(self, images: np.ndarray, observations=None) -> np.ndarray:
        from ..faces.crop import crop_face

        images = _as_uint8(images)
        crops = []
        for i, img in enumerate(images):
            obs = None if observations is None else observations[i]
            crop, _ = crop_face(img, obs, self.image_size, expand=1.2)
            crops.append((crop.astype(np.float32) / 255.0 - self.mean) / self.std)
        x = self.torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(self.device)
        with self.torch.no_grad():
            emb = self.model(pixel_values=x).image_embeds.float().cpu().numpy()
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def csim(reference: np.ndarray, frames: np.ndarray, embedder=None, reference_observation=None,
         frame_observations=None) -> dict:
    """Mean cosine similarity of each frame's embedding with the reference's."""
    embedder = embedder or ColourHistogramEmbedder()
    frames = _as_uint8(frames)
    if frames.shape[0] == 0:
        raise ValueError("CSIM needs at least one frame")
    ref = embedder.embed(_as_uint8(reference)[:1], None if reference_observation is None else [reference_observation])
    emb = embedder.embed(frames, frame_observations)
    cos = emb @ ref[0]
    return {
        "value": float(np.mean(cos)),
        "min": float(np.min(cos)),
        "model": embedder.name,
        "version": embedder.version,
        "frames": int(len(cos)),
    }


def _as_uint8(images) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return a[..., :3]

