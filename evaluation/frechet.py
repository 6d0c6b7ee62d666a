"""Fréchet distance between Gaussian fits of two feature sets, and FID.

FID uses torchvision's Inception-v3 layout. Its weights come from a local file that the
user supplies, such as torchvision's ImageNet ``inception_v3`` state dict saved as
safetensors. Numbers from these weights are comparable with each other but not with
papers that use the TF-ported FID Inception; say which weights were used. FVD is in
:mod:`.fvd`.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D]."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 − mu2||² + Tr(S1 + S2 − 2·sqrtm(S1·S2)).

    The trace of ``sqrtm(S1·S2)`` is computed in its symmetric form,
    ``Tr sqrt(A·S2·A)`` with ``A = sqrt(S1)``, from two symmetric eigendecompositions.
    This is the same number that ``scipy.linalg.sqrtm`` gives. It is about ten times
    faster for 2048-d features and stays real and finite when the covariances are
    singular (fewer samples than dimensions); tiny negative eigenvalues from round-off
    are clipped to 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"shape mismatch: means {mu1.shape} vs {mu2.shape}, covariances {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    w, v = linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root1 @ s2 @ root1
    trace_covmean = float(np.sqrt(np.clip(linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum())
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean)
    return max(value, 0.0)


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


class InceptionFeatures:
    """2048-d pool features of torchvision's Inception-v3, from a local weights file."""

    name = "torchvision-inception_v3-pool3"

    def __init__(self, weights_path: str | os.PathLike, device: str = "cpu", batch_size: int = 16):
        import torch
        import torchvision
        from torchvision.models import inception_v3

        from .weights import load_into

        # transform_input=True is how torchvision runs its own ImageNet weights.
        model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        load_into(model, weights_path, "Inception-v3 (FID)")
        model.fc = torch.nn.Identity()  # the 2048-d pooled features, not the logits
        self.model = model.to(device)
        self.device, self.batch_size, self.torch = device, batch_size, torch
        self.version = f"torchvision-{torchvision.__version__}:{os.path.basename(os.fspath(weights_path))}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features [N, 2048] of uint8 images [N, H, W, 3] (resized to 299, ImageNet norm)."""
        torch = self.torch
        images = np.asarray(images)
        out = []
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + self.batch_size])).permute(0, 3, 1, 2).float()
            x = x / 255.0 if images.dtype == np.uint8 else x
            x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False,
                                                antialias=True)
            with torch.no_grad():
                out.append(self.model(((x - mean) / std).to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)


def fid(generated: np.ndarray, real: np.ndarray, weights_path, device: str = "cpu",
        extractor: InceptionFeatures | None = None) -> dict:
    """FID between two image sets [N, H, W, 3]. Few images give a high-variance estimate."""
    extractor = extractor or InceptionFeatures(weights_path, device)
    value = frechet_distance_features(extractor(generated), extractor(real))
    return {"value": value, "model": extractor.name, "version": extractor.version,
            "images": [int(len(generated)), int(len(real))]}
