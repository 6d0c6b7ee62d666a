"""Crop Face and Paste Back over a batch of photos or frames: the per-crop face mask, the one-line report
of faceless images, one CropInfo per frame, colour matching pooled over all frames, and a mask's feathered
blend weights. numpy/scipy only; the nodes keep the ComfyUI tensors."""

from __future__ import annotations

import dataclasses

import numpy as np

from .crop import crop_with_info, feather_mask, match_colour, observation_in_crop
from .detect import fallback_observation
from .masks import face_region_mask


def crop_mask(obs, info) -> np.ndarray:
    """The face-region mask [size, size] of a crop. A photo without a face gets the fallback guess's
    ellipse (the middle of the centre crop), so the sampler still has a plausible structure map."""
    if obs is None or not obs.is_detection:
        obs = fallback_observation(info.original_height, info.original_width)
    return face_region_mask(observation_in_crop(obs, info), info.size, info.size)


def crop_report(infos, backend: str) -> str:
    """One line for the node's ui and the log: which images had no face, and why (grouped, so that a
    long faceless video gives one short line)."""
    n = len(infos)
    missing: dict[str, list[int]] = {}
    for k, info in enumerate(infos):
        if not info.face_found:
            missing.setdefault(info.message, []).append(k + 1)
    if not missing:
        return f"face found in {'the image' if n == 1 else f'all {n} images'} ({backend})"
    return "; ".join(f"{_which(numbers, n)}: {message}" for message, numbers in missing.items())


def _which(numbers: list[int], n: int) -> str:
    if len(numbers) == 1:
        return f"image {numbers[0]} of {n}"
    if len(numbers) == n:
        return f"all {n} images"
    shown = ", ".join(map(str, numbers[:10])) + (", …" if len(numbers) > 10 else "")
    return f"images {shown} of {n}"


def paste_infos(crop_info, n: int, side: int, height: int, width: int) -> list:
    """One CropInfo per frame, resized to the frames' side and checked against the original's size."""
    check_count(len(crop_info), n, "crop_info entries")
    for info in crop_info:
        if (info.original_height, info.original_width) != (height, width):
            raise ValueError(f"crop_info was made on a {info.original_width}×{info.original_height} image, but the "
                             f"original is {width}×{height}: connect the image that was cropped")
    # CropInfo maps crop to original through side/size, so frames of another square size paste straight
    # in with a new `size`: one resampling instead of a resize and then a warp.
    resized = [dataclasses.replace(i, size=side) for i in crop_info]
    return resized * n if len(resized) == 1 else resized


def match_colours(gen, infos, originals, feather: float, weights=None) -> np.ndarray:
    """Colour-match all generated crops at once (so the pasting can go in chunks without flicker), with
    the same feathered weights the blend uses."""
    n, side = gen.shape[0], gen.shape[1]
    alpha = np.repeat(feather_mask(side, feather)[None], n, axis=0)
    if weights is not None:
        alpha = alpha * np.broadcast_to(weights, alpha.shape)
    if len(originals) == 1 and all(i == infos[0] for i in infos):
        refs, ref_alpha = crop_with_info(originals[0], infos[0])[None], alpha[:1]  # one still photo: crop once
    else:
        refs = np.stack([crop_with_info(originals[0 if len(originals) == 1 else k], infos[k]) for k in range(n)])
        ref_alpha = alpha
    return match_colour(gen, refs, alpha, ref_alpha)


def feathered_weights(weights: np.ndarray, feather: float) -> np.ndarray:
    """Mask weights [M, side, side] in 0..1 with their edge blurred over about feather·side pixels (a
    landmark hull's hard edge would show as a seam; core ComfyUI has no mask-blur node)."""
    from scipy.ndimage import gaussian_filter

    sigma = feather * weights.shape[-1] / 4.0  # ±2σ spans the feather width
    return gaussian_filter(weights, sigma=(0.0, sigma, sigma), mode="nearest") if sigma > 0 else weights


def check_count(count: int, n: int, what: str) -> None:
    """One for all frames, or one per frame."""
    if count not in (1, n):
        raise ValueError(f"{count} {what} for {n} frames: give one for all frames, or one per frame")
