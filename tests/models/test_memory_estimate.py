"""The sampling memory estimate bounds what sampling really holds: measured with torch's MemTracker (every live
tensor, on the CPU) over one window, the activations never exceed the estimate, and the estimate stays within
twice the measurement, so that it stops runs that would not fit without stopping ones that would."""

from __future__ import annotations

import pytest
import torch

from comfyui_portraittalk.models.files.components import build_components
from comfyui_portraittalk.models.config import load_config
from comfyui_portraittalk.models.pipeline import AudioEmbeds, PortraitTalkPipeline
from comfyui_portraittalk.models.sampling.sampler import SamplingOptions
from tests.recipe_fixtures import SD15_SMALL

FRAMES = 8


def _measured_activations(pipe: PortraitTalkPipeline, cond, options: SamplingOptions, size: int) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    with tracker:
        pipe.sample(cond, options, size=size)
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    return next(v for k, v in peak.items() if "ACT" in str(k))


def _conditioning(pipe: PortraitTalkPipeline, size: int):
    torch.manual_seed(0)
    side = size // pipe._factor()
    latents = torch.randn(1, pipe.config["unet"]["in_channels"], side, side)
    tokens = pipe.identity_tokens(image_embeds=torch.randn(1, pipe.components.image_proj.image_embeds.in_features))
    null = pipe.null_text()
    text = torch.randn_like(null)
    identity = pipe.encode_identity(latents, tokens, text, null)
    width = pipe.config["unet"]["cross_attention_dim"]
    audio = AudioEmbeds(torch.randn(FRAMES, int(pipe.config["audio"]["tokens"]), width), 25.0, FRAMES, FRAMES / 25)
    return pipe.conditioning(null_text=null, text=text, identity=identity, audio=audio)


@pytest.mark.parametrize("family,size", [("tiny", 64), ("tiny", 128), ("sd15", 128)])
@pytest.mark.parametrize("guidance", [(1.0, 1.0), (3.0, 2.0)])
def test_the_estimate_bounds_the_measured_activations_within_twice(family, size, guidance):
    torch.manual_seed(0)
    if family == "tiny":
        pipe = PortraitTalkPipeline.from_pretrained("demo")
    else:  # the sd15 layout at small widths: the factor is per channel of the first block
        pipe = PortraitTalkPipeline(build_components(load_config("sd15", SD15_SMALL), with_text_encoder=False,
                                                     with_image_encoder=False))
    cond = _conditioning(pipe, size)
    options = SamplingOptions(num_frames=FRAMES, steps=1, scheduler="ddim", karras=False, seed=0,
                              text_guidance=guidance[0], audio_guidance=guidance[1], window=FRAMES, overlap=0)
    estimate = pipe.memory_estimate(cond, options, size=size)
    measured = _measured_activations(pipe, cond, options, size)
    assert estimate.passes == (1 if guidance == (1.0, 1.0) else 3)
    assert measured <= estimate.activations <= 2 * measured, (measured, estimate)


def test_the_estimate_scales_with_what_the_error_names():
    pipe = PortraitTalkPipeline.from_pretrained("demo")
    cond = _conditioning(pipe, 64)

    def estimate(window=16, text_guidance=1.0, audio_guidance=1.0):
        options = SamplingOptions(num_frames=40, steps=1, scheduler="ddim", karras=False, seed=0, window=window,
                                  overlap=2, text_guidance=text_guidance, audio_guidance=audio_guidance)
        return pipe.memory_estimate(cond, options, weights=1000)

    base = estimate()
    assert base.total == base.activations + 1000 and base.frames == 16 and base.latent_size == (16, 16)
    assert estimate(window=8).activations * 2 == base.activations
    assert estimate(audio_guidance=2.0).activations == 2 * base.activations
    half = PortraitTalkPipeline.from_pretrained("demo", dtype=torch.float16)
    assert half.memory_estimate(cond, SamplingOptions(num_frames=40, steps=1, window=16, overlap=2)).activations * 2 \
        == base.activations
