"""Two ways the reference reaches AnimateNet where the noisy frame shows nothing yet: a structure encoder that
reads the reference beside the face mask (`structure.reference`, the demo model's), and `denoise` < 1, which
starts sampling from the reference noised to a later timestep (ComfyUI's KSampler "denoise")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_portraittalk.models import PortraitTalkPipeline
from comfyui_portraittalk.models.config import ConfigError, load_config
from comfyui_portraittalk.models.networks.structure import with_reference
from comfyui_portraittalk.models.sampling.sampler import SamplingOptions

READS_REFERENCE = {"structure": {"in_channels": 4, "reference": True}}


def test_with_reference_stacks_the_mask_and_the_reference_for_every_frame():
    reference = torch.rand(3, 8, 8)
    mask = torch.rand(5, 1, 8, 8)
    out = with_reference(mask, reference)
    assert out.shape == (5, 4, 8, 8)
    assert torch.equal(out[:, :1], mask) and torch.equal(out[3, 1:], reference)
    alone = with_reference(None, reference)  # no mask: zeros in its channel, one map for all frames
    assert alone.shape == (1, 4, 8, 8) and not alone[:, 0].any()
    rows = with_reference(torch.rand(2, 3, 1, 8, 8), torch.rand(2, 3, 8, 8))  # training: a reference per row
    assert rows.shape == (2, 3, 4, 8, 8)


def test_a_reference_reading_structure_encoder_needs_four_channels():
    with pytest.raises(ConfigError, match="4 channels"):
        load_config("tiny", {"structure": {"reference": True}})
    assert load_config("tiny", READS_REFERENCE)["structure"]["in_channels"] == 4


@pytest.fixture(scope="module")
def reading_pipe():
    """A tiny pipeline whose structure encoder reads the reference, with a live (non-zero) output layer."""
    pipe = PortraitTalkPipeline.from_config(load_config("tiny", READS_REFERENCE), seed=0)
    out = pipe.components.animate_net.structure.conv_out
    with torch.no_grad():
        out.weight.copy_(torch.randn(out.weight.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    return pipe


def test_the_reference_reaches_the_structure_encoder_without_a_mask(reading_pipe, reference_images, speechlike):
    wave, sr = speechlike
    seen = []
    encoder = reading_pipe.components.animate_net.structure
    hook = encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        out = reading_pipe([reference_images[0]], wave[: sr // 2], sr, None, num_inference_steps=2, window=8, overlap=2)
        other = reading_pipe([reference_images[1]], wave[: sr // 2], sr, None, num_inference_steps=2, window=8, overlap=2)
    finally:
        hook.remove()
    maps = seen[0]
    assert maps.shape[1] == 4 and not maps[:, 0].any()  # no mask given: its channel is empty
    expected = torch.from_numpy(reference_images[0]).permute(2, 0, 1)
    assert torch.allclose(maps[0, 1:], expected, atol=1e-5)  # the reference itself, in 0..1
    assert not np.allclose(out.frames, other.frames)


def test_denoise_one_is_the_full_schedule_and_below_one_starts_from_the_noised_reference(tiny_pipe, reference_images,
                                                                                        speechlike):
    from comfyui_portraittalk.models.sampling.sampler import initial_noise, make_scheduler

    wave, sr = speechlike
    run = lambda **kw: tiny_pipe([reference_images[0]], wave[: sr // 2], sr, None, num_inference_steps=10,  # noqa: E731
                                 window=8, overlap=2, **kw)
    assert np.array_equal(run(denoise=1.0).frames, run().frames)
    inputs, steps = [], []
    net = tiny_pipe.components.animate_net
    hook = net.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    try:
        out = run(denoise=0.3, callback=lambda p: steps.append(p.step))
    finally:
        hook.remove()
    assert max(steps) + 1 == 3  # the last 3 of 10 steps
    scheduler = make_scheduler("ddim", tiny_pipe.config["scheduler"])
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[7:8]
    reference = tiny_pipe.encode_references([reference_images[0]])[0][:1].float()
    noise = initial_noise((out.frames.shape[0], *reference.shape[1:]), 0)
    expected = scheduler.add_noise(reference.expand_as(noise), noise, t)
    first = inputs[0][0]  # the first window's latents, first guidance pass
    assert torch.allclose(first.float(), expected[: first.shape[0]], atol=1e-5)


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m"])
def test_denoise_runs_with_index_based_schedulers(tiny_pipe, reference_images, speechlike, scheduler):
    wave, sr = speechlike
    out = tiny_pipe([reference_images[0]], wave[: sr // 2], sr, None, num_inference_steps=6, scheduler=scheduler,
                    denoise=0.5, window=8, overlap=2)
    assert np.isfinite(out.frames).all()


@pytest.mark.parametrize("denoise", [0.0, -0.5, 1.5])
def test_denoise_outside_zero_to_one_is_refused(denoise):
    with pytest.raises(ValueError, match="denoise"):
        SamplingOptions(num_frames=4, denoise=denoise).skipped_steps()


def test_a_mask_only_model_fine_tunes_into_one_that_reads_the_reference_and_starts_unchanged(tmp_path):
    """`init_model` with `structure.reference`: the file's one-channel conv_in gains three zero channels, so the
    starting model's structure residual equals the file's whatever the reference holds."""
    from comfyui_portraittalk.models.files.components import build_components, save_components
    from comfyui_portraittalk.training.train import starting_model

    torch.manual_seed(0)
    mask_only = build_components(load_config("tiny"))
    encoder = mask_only.animate_net.structure
    torch.nn.init.normal_(encoder.conv_out.weight, std=0.1)  # live, as after training
    path = save_components(mask_only, tmp_path / "mask_only.safetensors")
    config = {"init_model": str(path), "model_overrides": READS_REFERENCE}
    starting, model_config, _ = starting_model(config, tmp_path, None, print)
    widened = starting.components.animate_net.structure
    assert widened.conv_in.weight.shape[1] == 4 and model_config["structure"]["reference"]
    mask = torch.rand(2, 1, 32, 32)
    maps = with_reference(mask, torch.rand(3, 32, 32))
    with torch.no_grad():
        before, after = encoder(mask), widened(maps)
    assert before.abs().max() > 0 and torch.allclose(after, before, atol=1e-5)
    narrow = {"init_model": str(path), "model_overrides": {"structure": {"in_channels": 1}}}
    assert starting_model(narrow, tmp_path, None, print)[0].components.animate_net.structure.in_channels == 1
    from comfyui_portraittalk.models.files.weights import ModelFileError

    widened_path = save_components(starting.components, tmp_path / "reads_reference.safetensors")
    narrowing = {"init_model": str(widened_path), "model_overrides": {"structure": {"in_channels": 1,
                                                                                   "reference": False}}}
    with pytest.raises(ModelFileError, match="reads_reference.safetensors"):  # never narrowed in silence
        starting_model(narrowing, tmp_path, None, print)
