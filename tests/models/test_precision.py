"""Half precision: the bundled model in fp16 and bf16 gives finite frames close to fp32's, with its networks in
that dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def inputs():
    from pathlib import Path

    from PIL import Image

    import comfyui_portraittalk
    from comfyui_portraittalk.media import read_audio

    assets = Path(comfyui_portraittalk.__file__).parent / "assets"
    wav, rate = read_audio(assets / "demo_speech.wav")
    return Image.open(assets / "demo_reference.png"), wav[: int(rate * 0.4)], rate


def _frames(dtype, inputs):
    from comfyui_portraittalk.models import PortraitTalkPipeline

    pipe = PortraitTalkPipeline.from_pretrained("demo", dtype=dtype)
    image, wav, rate = inputs
    frames = pipe([image], wav, rate, "a face with glasses", num_inference_steps=4, seed=0).frames
    return pipe, frames


@pytest.fixture(scope="module")
def fp32_frames(inputs):
    return _frames(torch.float32, inputs)[1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite_and_close_to_fp32(dtype, inputs, fp32_frames):
    pipe, frames = _frames(dtype, inputs)
    assert {p.dtype for p in pipe.components.animate_net.parameters()} == {dtype}
    assert {p.dtype for p in pipe.components.identity_net.parameters()} == {dtype}
    assert np.isfinite(frames).all() and frames.shape == fp32_frames.shape
    assert np.abs(frames - fp32_frames).mean() < 0.01  # of 1.0
