"""Shared fixtures for the model tests (tiny configs, random weights, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

NODE_TESTS = Path(__file__).resolve().parent / "nodes"


def pytest_collection_modifyitems(config, items):
    """Tests marked `first` run before all others, then the real-ComfyUI tests (tests/nodes/), then the rest.

    The full-size SD-1.5 server peaks near 15 GB. On a 24 GB machine it must start before the shared server loads the
    full-size Hallo test model (6 GB, which ComfyUI's "Unload models" does not give back) and before the in-process
    full-size model tests grow the test process."""
    def order(item):
        return (item.get_closest_marker("first") is None, NODE_TESTS not in Path(str(item.path)).resolve().parents)

    items.sort(key=order)  # stable: the order within each group is kept


def wake_zero_branches(components, seed: int = 0, std: float = 0.05) -> None:
    """Give every zero-initialised weight (new attention streams, temporal and structure outputs) random
    values, so that each stream measurably affects the output in tests."""
    gen = torch.Generator().manual_seed(seed)
    for module in components.modules().values():
        for param in module.parameters():
            if param.numel() and not param.detach().any():
                param.data.copy_(torch.randn(param.shape, generator=gen) * std)


@pytest.fixture(scope="session")
def tiny_pipe():
    """A tiny pipeline whose every branch is live. Tests must not modify it."""
    from comfyui_portraittalk.models import PortraitTalkPipeline

    pipe = PortraitTalkPipeline.from_config("tiny", seed=0)
    wake_zero_branches(pipe.components)
    return pipe


@pytest.fixture(scope="session")
def speechlike():
    """1.2 s of the 16 kHz test signal with syllable-like bursts (tests/audio_signals.py): `(waveform, sample_rate)`."""
    from audio_signals import speechlike as signal

    sr = 16000
    return signal(int(1.2 * sr), sr), sr


@pytest.fixture(scope="session")
def reference_images():
    """Two distinct 64×64 RGB references."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64] / 63.0
    first = np.stack([xx, yy, 0.5 * np.ones_like(xx)], -1)
    second = rng.random((64, 64, 3))
    return first.astype(np.float32), second.astype(np.float32)
