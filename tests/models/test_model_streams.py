"""The λs: a scale of 0 removes its stream entirely, a positive scale makes the stream matter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_portraittalk.models import SamplingOptions
from comfyui_portraittalk.models.networks.attention import AttentionContext, IdentityBank


def generate(pipe, reference, audio, prompt, *, text_scale=1.0, identity_scale=1.0, audio_scale=1.0,
             text_guidance=1.0, audio_guidance=1.0, seed=0, steps=2, window=16, overlap=4):
    wave, sr = audio
    text, null = pipe.encode_prompt(prompt)
    latents, pixels = pipe.encode_references([reference])
    identity = pipe.encode_identity(latents, pipe.identity_tokens(pixels), text, null)
    embeds = pipe.encode_audio(wave, sr)
    cond = pipe.conditioning(null_text=null, text=text, identity=identity, audio=embeds, text_scale=text_scale,
                             identity_scale=identity_scale, audio_scale=audio_scale)
    options = SamplingOptions(num_frames=embeds.num_frames, steps=steps, seed=seed, text_guidance=text_guidance,
                              audio_guidance=audio_guidance, window=window, overlap=overlap)
    return pipe.sample(cond, options)


@pytest.fixture(scope="module")
def short_audio(speechlike):
    wave, sr = speechlike
    return wave[: int(0.4 * sr)], sr  # 10 frames: one window


@pytest.fixture(scope="module")
def other_audio(short_audio):
    wave, sr = short_audio
    t = np.arange(len(wave)) / sr
    return (0.4 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32), sr


def test_audio_scale_zero_removes_audio(tiny_pipe, reference_images, short_audio, other_audio):
    ref = reference_images[0]
    a = generate(tiny_pipe, ref, short_audio, "a face", audio_scale=0.0, audio_guidance=2.0)
    b = generate(tiny_pipe, ref, other_audio, "a face", audio_scale=0.0, audio_guidance=2.0)
    assert torch.equal(a, b)


def test_audio_scale_positive_makes_audio_matter(tiny_pipe, reference_images, short_audio, other_audio):
    ref = reference_images[0]
    a = generate(tiny_pipe, ref, short_audio, "a face")
    b = generate(tiny_pipe, ref, other_audio, "a face")
    per_frame = (a - b).abs().flatten(1).amax(1)
    assert (per_frame > 1e-4).all(), per_frame


def test_text_scale_zero_removes_text_everywhere(tiny_pipe, reference_images, short_audio):
    ref = reference_images[0]
    a = generate(tiny_pipe, ref, short_audio, "a face with glasses", text_scale=0.0)
    b = generate(tiny_pipe, ref, short_audio, "smiling on a red background", text_scale=0.0)
    assert torch.equal(a, b)


def test_text_scale_positive_makes_text_matter(tiny_pipe, reference_images, short_audio):
    ref = reference_images[0]
    a = generate(tiny_pipe, ref, short_audio, "a face with glasses")
    b = generate(tiny_pipe, ref, short_audio, "smiling on a red background")
    assert (a - b).abs().flatten(1).amax(1).min() > 1e-4


def test_identity_scale_zero_removes_the_references(tiny_pipe, reference_images, short_audio):
    a = generate(tiny_pipe, reference_images[0], short_audio, "a face", identity_scale=0.0)
    b = generate(tiny_pipe, reference_images[1], short_audio, "a face", identity_scale=0.0)
    assert torch.equal(a, b)


def test_identity_scale_positive_makes_the_references_matter(tiny_pipe, reference_images, short_audio):
    a = generate(tiny_pipe, reference_images[0], short_audio, "a face")
    b = generate(tiny_pipe, reference_images[1], short_audio, "a face")
    assert (a - b).abs().flatten(1).amax(1).min() > 1e-4


def test_partial_scales_interpolate_between_off_and_on(tiny_pipe, reference_images, short_audio):
    ref = reference_images[0]
    off = generate(tiny_pipe, ref, short_audio, "a face", audio_scale=0.0, steps=1)
    half = generate(tiny_pipe, ref, short_audio, "a face", audio_scale=0.5, steps=1)
    on = generate(tiny_pipe, ref, short_audio, "a face", audio_scale=1.0, steps=1)
    assert 0 < (half - off).abs().mean() < (on - off).abs().mean()


def test_audio_tokens_act_per_frame(tiny_pipe):
    """Without temporal mixing, changing the audio tokens of one frame changes that frame alone."""
    net = tiny_pipe.components.animate_net
    frames, dim = 6, tiny_pipe.config["unet"]["cross_attention_dim"]
    shape = (1, frames, *tiny_pipe.latent_shape())
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(shape, generator=gen)
    text = torch.randn(1, 16, dim, generator=gen)
    tokens = torch.randn(frames, 4, dim, generator=gen)
    changed = tokens.clone()
    changed[3] = torch.randn(4, dim, generator=gen)
    saved = {n: p.detach().clone() for n, p in net.named_parameters() if "motion_modules" in n and "proj_out" in n}
    try:
        for name, p in net.named_parameters():
            if name in saved:
                p.data.zero_()
        with torch.no_grad():
            t = torch.tensor([500])
            a = net(latents, t, text, AttentionContext(audio_tokens=tokens))
            b = net(latents, t, text, AttentionContext(audio_tokens=changed))
    finally:
        for name, p in net.named_parameters():
            if name in saved:
                p.data.copy_(saved[name])
    diff = (a - b)[0].abs().flatten(1).amax(1)
    assert diff[3] > 1e-4
    assert torch.all(diff[[0, 1, 2, 4, 5]] == 0), diff


def test_identity_attention_scale_reweights_reference_tokens(tiny_pipe, reference_images):
    """λ_identity scales the attention mass on IdentityNet tokens: 0 equals no bank at all."""
    pipe = tiny_pipe
    net = pipe.components.animate_net
    text, null = pipe.encode_prompt("a face")
    latents, pixels = pipe.encode_references([reference_images[0]])
    identity = pipe.encode_identity(latents, pipe.identity_tokens(pixels), None, null)
    x = torch.randn(1, 3, *pipe.latent_shape(), generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300])
    from comfyui_portraittalk.models.networks.attention import StreamScales

    with torch.no_grad():
        none = net(x, t, null, AttentionContext(scales=StreamScales(identity=0.0)))
        zero = net(x, t, null, AttentionContext(scales=StreamScales(identity=0.0), bank=identity.bank(1.0),
                                                identity_tokens=identity.tokens))
        one = net(x, t, null, AttentionContext(bank=identity.bank(1.0), identity_tokens=identity.tokens))
        bank_only = net(x, t, null, AttentionContext(bank=IdentityBank(identity.features)))
    assert torch.equal(none, zero)
    assert (one - none).abs().max() > 1e-4
    assert (bank_only - none).abs().max() > 1e-4
