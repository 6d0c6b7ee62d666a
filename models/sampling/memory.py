"""How much memory sampling needs, before it starts: the weights it runs plus the activations of one context window
with all its guidance passes batched (the sampler's peak; windows run one after another).

The activation term is a measured bound, not a derivation: live activation bytes per (frame × guidance pass × latent
pixel × channel of the first UNet block × byte per element). Measured with torch's MemTracker on the CPU for one
window (tests/models/test_memory_estimate.py measures it again): tiny 26–30, sd15 layout 30–38, hallo layout 44. The
factor takes the largest with some room, so the estimate errs on the side of stopping early.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACTIVATION_FACTOR = 48


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # bytes of weights still to bring onto the device
    activations: int  # bytes of one window's activations, all guidance passes batched
    frames: int
    passes: int
    latent_size: tuple[int, int]

    @property
    def total(self) -> int:
        return self.weights + self.activations


def activation_bytes(config: dict, *, frames: int, passes: int, latent_size: tuple[int, int],
                     dtype: torch.dtype) -> int:
    """Peak activation bytes of AnimateNet on one window of `frames` frames with `passes` guidance passes."""
    width = int(config["unet"]["block_out_channels"][0])
    element = torch.empty((), dtype=dtype).element_size()
    return ACTIVATION_FACTOR * frames * passes * latent_size[0] * latent_size[1] * width * element


def sampling_estimate(config: dict, *, weights: int, frames: int, passes: int, latent_size: tuple[int, int],
                      dtype: torch.dtype) -> MemoryEstimate:
    activations = activation_bytes(config, frames=frames, passes=passes, latent_size=latent_size, dtype=dtype)
    return MemoryEstimate(int(weights), activations, frames, passes, tuple(latent_size))


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB"
