"""Landmark distance (LMD) and landmark tracks.

Landmarks are normalised per frame by the face box (origin at its centre, unit = its
height; :func:`faces.layouts.normalise`), so LMD reads as a fraction of the face height
and ignores resolution and head translation. LMD is the mean over frames and points of
the L2 distance between matching normalised landmarks; it is 0 for identical videos.
"""

from __future__ import annotations

import numpy as np

from ..faces import layouts
from ..faces.observation import FaceObservation


def landmark_source(observations) -> str:
    """The single landmark layout of a video's observations; errors name what is wrong."""
    sources = {o.source for o in observations if o is not None}
    with_landmarks = {o.source for o in observations if o is not None and o.landmarks is not None}
    if not sources:
        raise ValueError("no face was found in any frame")
    if not with_landmarks:
        if sources == {"fallback"}:
            raise ValueError(
                "these observations have no landmarks (face backend 'fallback'): landmark metrics need "
                "backend='mediapipe' (pip install comfyui-portraittalk[faces]) or backend='colour' for SynthTalk")
        raise ValueError("no face with landmarks was found in any frame")
    if len(with_landmarks) > 1:
        raise ValueError(f"observations mix landmark layouts {sorted(with_landmarks)}; analyse both videos "
                         "with the same backend")
    return with_landmarks.pop()


def landmark_track(observations: list[FaceObservation | None], region: str, source: str | None = None) -> np.ndarray:
    """[F, K, 2] normalised landmarks of ``region``; NaN rows where a frame has no face."""
    source = source or landmark_source(observations)
    k = len(layouts.landmark_indices(source, region))
    out = np.full((len(observations), k, 2), np.nan)
    for i, o in enumerate(observations):
        if o is not None and o.landmarks is not None and o.source == source:
            out[i] = layouts.normalise(layouts.select(o.landmarks, source, region), o.box)
    return out


def lmd(observations, ground_truth, region: str = "mouth") -> dict:
    """LMD of ``region`` ("mouth", "face", "jaw", "mouth_jaw") against ground truth.

    Frames are matched by index over the shorter video; frames where either side has no
    face are skipped and counted. Returns a JSON-friendly dict.
    """
    n = min(len(observations), len(ground_truth))
    if n == 0:
        raise ValueError("LMD needs at least one frame in both videos")
    src, gt_src = landmark_source(observations[:n]), landmark_source(ground_truth[:n])
    if src != gt_src:
        raise ValueError(f"video landmarks come from {src!r}, ground truth from {gt_src!r}: use one backend")
    pred = landmark_track(observations[:n], region, src)
    gt = landmark_track(ground_truth[:n], region, src)
    both = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(gt).all(axis=(1, 2))
    if not both.any():
        raise ValueError("no frame has a face in both the video and the ground truth")
    per_frame = np.linalg.norm(pred[both] - gt[both], axis=-1).mean(axis=-1)
    return {
        "value": float(per_frame.mean()),
        "region": region,
        "unit": "fraction of face height",
        "frames_compared": int(both.sum()),
        "frames_skipped": int(n - both.sum()),
        "landmarks": src,
    }
