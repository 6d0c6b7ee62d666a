"""The sampler: IdentityNet once, batched guidance, windows, seeds, schedulers, and zero-init branches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_portraittalk.models import PortraitTalkPipeline, SamplingOptions
from comfyui_portraittalk.models.networks.attention import AttentionContext
from comfyui_portraittalk.models.sampling.sampler import context_windows, guidance_passes, window_weights


class CallCounter:
    """Wraps a module's forward and records the batch shape of each call."""

    def __init__(self, module):
        self.module, self.original, self.shapes = module, module.forward, []

    def __enter__(self):
        def counted(*args, **kwargs):
            self.shapes.append(tuple(args[0].shape))
            return self.original(*args, **kwargs)

        self.module.forward = counted
        return self

    def __exit__(self, *exc):
        del self.module.forward  # back to the class's forward


@pytest.mark.parametrize("steps,seconds", [(1, 0.4), (3, 1.5)])
def test_identity_net_runs_once_per_generation(tiny_pipe, reference_images, speechlike, steps, seconds):
    wave, sr = speechlike
    with CallCounter(tiny_pipe.components.identity_net) as idn, CallCounter(tiny_pipe.components.animate_net) as anim:
        out = tiny_pipe([reference_images[0]], wave[: int(seconds * sr)], sr, "a face with glasses",
                        num_inference_steps=steps, text_guidance_scale=2.0, window=8, overlap=2)
    windows = len(context_windows(out.frames.shape[0], 8, 2))
    assert len(idn.shapes) == 1
    assert len(anim.shapes) == steps * windows
    assert (steps, windows) == (1, 2) or windows >= 5


@pytest.mark.parametrize("s_txt,s_a,batch", [(1.0, 1.0, 1), (1.0, 2.0, 2), (2.5, 1.0, 2), (2.5, 2.0, 3)])
def test_guidance_passes_run_as_one_batched_forward(tiny_pipe, reference_images, speechlike, s_txt, s_a, batch):
    wave, sr = speechlike
    with CallCounter(tiny_pipe.components.animate_net) as anim:
        tiny_pipe([reference_images[0]], wave[: int(0.4 * sr)], sr, "a face", num_inference_steps=2,
                  text_guidance_scale=s_txt, audio_guidance_scale=s_a)
    assert [shape[0] for shape in anim.shapes] == [batch, batch]


def test_guidance_combination_matches_the_formula():
    """ε = ε(∅) + s_t(ε(t) − ε(∅)) + s_a(ε(t,a) − ε(t)), as weights on the passes."""
    eps = {(False, False): 1.0, (True, False): 3.0, (True, True): 7.0, (False, True): 5.0}
    for s_t, s_a in [(2.0, 3.0), (1.0, 3.0), (2.0, 1.0), (1.0, 1.0), (0.0, 0.5)]:
        got = sum(p.weight * eps[(p.text, p.audio)] for p in guidance_passes(s_t, s_a, True, True))
        if s_a == 1 and s_t != 1:  # text guidance with the audio present
            want = eps[(False, True)] + s_t * (eps[(True, True)] - eps[(False, True)])
        else:
            want = eps[(False, False)] + s_t * (eps[(True, False)] - eps[(False, False)]) + s_a * (
                eps[(True, True)] - eps[(True, False)])
        assert got == pytest.approx(want), (s_t, s_a)
    assert len(guidance_passes(3.0, 3.0, has_text=False, has_audio=False)) == 1


def test_context_windows_cover_every_frame_with_tapered_weights():
    for frames, window, overlap in [(10, 16, 4), (40, 16, 4), (33, 8, 3), (17, 16, 15)]:
        windows = context_windows(frames, window, overlap)
        covered = torch.zeros(frames)
        for s, e in windows:
            assert e - s == min(window, frames)
            w = window_weights(s, e, frames, overlap)
            assert (w > 0).all() and w.max() == 1
            covered[s:e] += w
        assert (covered > 0).all()
    with pytest.raises(ValueError):
        context_windows(10, 4, 4)


def test_windows_match_one_big_window_without_temporal_mixing(reference_images, speechlike):
    """With the temporal layers at their zero init, each frame's prediction depends on that frame
    alone, so blended windows must reproduce a single window over the same frames."""
    from conftest import wake_zero_branches

    pipe = PortraitTalkPipeline.from_config("tiny", seed=3)
    temporal = {n for n, p in pipe.components.animate_net.named_parameters() if "motion_modules" in n}
    wake_zero_branches(pipe.components)
    for name, p in pipe.components.animate_net.named_parameters():
        if name in temporal and "proj_out" in name:
            p.data.zero_()
    wave, sr = speechlike
    kwargs = dict(num_inference_steps=2, text_guidance_scale=2.0, audio_guidance_scale=1.5, seed=5)
    one = pipe([reference_images[0]], wave[: int(0.8 * sr)], sr, "a face", window=32, overlap=0, **kwargs)
    many = pipe([reference_images[0]], wave[: int(0.8 * sr)], sr, "a face", window=6, overlap=2, **kwargs)
    assert one.frames.shape == many.frames.shape == (20, 64, 64, 3)
    np.testing.assert_allclose(one.frames, many.frames, atol=1e-4)


def test_temporal_layers_mix_frames_once_trained(tiny_pipe, reference_images, speechlike):
    """The converse: with live temporal layers, windows are not independent (so the test above can fail)."""
    wave, sr = speechlike
    kwargs = dict(num_inference_steps=2, seed=5)
    one = tiny_pipe([reference_images[0]], wave[: int(0.8 * sr)], sr, None, window=32, overlap=0, **kwargs)
    many = tiny_pipe([reference_images[0]], wave[: int(0.8 * sr)], sr, None, window=6, overlap=2, **kwargs)
    assert np.abs(one.frames - many.frames).max() > 1e-4


def test_fixed_seed_reproduces_frames(tiny_pipe, reference_images, speechlike):
    wave, sr = speechlike
    args = ([reference_images[0]], wave[: int(0.5 * sr)], sr, "a face with glasses")
    a = tiny_pipe(*args, num_inference_steps=2, seed=42, text_guidance_scale=1.5)
    b = tiny_pipe(*args, num_inference_steps=2, seed=42, text_guidance_scale=1.5)
    c = tiny_pipe(*args, num_inference_steps=2, seed=43, text_guidance_scale=1.5)
    assert np.array_equal(a.frames, b.frames)
    assert np.abs(a.frames - c.frames).max() > 1e-3


@pytest.mark.parametrize("scheduler,karras", [("ddim", False), ("euler", False), ("euler", True),
                                              ("dpmpp_2m", False), ("dpmpp_2m", True)])
def test_schedulers_run_and_report_progress(tiny_pipe, reference_images, speechlike, scheduler, karras):
    wave, sr = speechlike
    events = []
    out = tiny_pipe([reference_images[0]], wave[: int(0.9 * sr)], sr, None, num_inference_steps=3,
                    scheduler=scheduler, karras=karras, window=12, overlap=4, callback=events.append)
    assert np.isfinite(out.frames).all() and out.frames.min() >= 0 and out.frames.max() <= 1
    windows = len(context_windows(out.frames.shape[0], 12, 4))
    assert [e.completed for e in events] == list(range(1, 3 * windows + 1))
    assert all(e.total == 3 * windows for e in events)
    for step in range(3):  # each step's windows complete every frame exactly once
        covered = [f for e in events if e.step == step for f in range(*e.frames)]
        assert covered == list(range(out.frames.shape[0]))
    with_x0 = [e.denoised is not None for e in events]
    assert all(with_x0) if scheduler in ("ddim", "euler") else not any(with_x0)


def test_callback_exceptions_stop_sampling(tiny_pipe, reference_images, speechlike):
    class Interrupted(Exception):
        pass

    def interrupt(event):
        if event.completed == 2:
            raise Interrupted

    wave, sr = speechlike
    with pytest.raises(Interrupted):
        tiny_pipe([reference_images[0]], wave[: int(0.4 * sr)], sr, None, num_inference_steps=4, callback=interrupt)


def test_output_has_ceil_duration_frames_and_trimmed_audio(tiny_pipe, reference_images):
    sr = 22050
    wave = np.random.default_rng(0).normal(0, 0.1, int(0.37 * sr)).astype(np.float32)
    out = tiny_pipe([reference_images[0]], wave, sr, None, num_inference_steps=1)
    assert out.frames.shape[0] == 10  # ceil(0.37 · 25)
    assert out.fps == 25 and out.sample_rate == sr
    assert len(out.audio) == round(10 / 25 * sr)
    np.testing.assert_array_equal(out.audio[: len(wave)], wave)


def test_zero_initialised_branches_leave_the_base_unet_unchanged(reference_images):
    """A fresh AnimateNet with temporal, structure and audio inputs equals the stock 2D UNet it was
    built from, frame by frame."""
    from diffusers import UNet2DConditionModel

    pipe = PortraitTalkPipeline.from_config("tiny", seed=4)
    net = pipe.components.animate_net
    base = UNet2DConditionModel.from_config(pipe.config["unet"]).eval()
    spatial = {k: v for k, v in net.unet.state_dict().items() if "motion_modules" not in k and ".processor." not in k}
    missing, unexpected = base.load_state_dict(spatial, strict=False)
    assert not missing and not unexpected
    frames, dim = 5, pipe.config["unet"]["cross_attention_dim"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, frames, *pipe.latent_shape(), generator=gen)
    text = torch.randn(1, 16, dim, generator=gen)
    audio = torch.randn(frames, 4, dim, generator=gen)
    identity_tokens = torch.randn(1, 4, dim, generator=gen)
    structure = torch.rand(frames, 1, 64, 64, generator=gen)
    t = torch.tensor([700])
    with torch.no_grad():
        ours = net(x, t, text, AttentionContext(audio_tokens=audio, identity_tokens=identity_tokens), structure)
        stock = base(x[0], t, text.expand(frames, -1, -1)).sample
    torch.testing.assert_close(ours[0], stock, atol=2e-5, rtol=1e-4)


def test_chunked_decode_scales_per_chunk_and_leaves_the_latents_alone(tiny_pipe):
    """Decode's `scale` (the node path's latent scale) gives the frames of the scaled latents, whatever the
    chunk, without changing its input (a cached node output) or copying it whole."""
    latents = torch.randn((7, *tiny_pipe.latent_shape()), generator=torch.Generator().manual_seed(3))
    before = latents.clone()
    reference = tiny_pipe.decode(latents * 0.5, chunk=7)
    for chunk in (1, 3, 8):
        assert torch.allclose(tiny_pipe.decode(latents, chunk=chunk, scale=0.5), reference, atol=1e-6)
    assert torch.equal(latents, before)
    assert reference.shape == (7, tiny_pipe.size, tiny_pipe.size, 3)
