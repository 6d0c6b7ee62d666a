"""Hallo's layout as options of the PortraitTalk model, on a small model of that layout (CPU, random weights):
audio modules, motion frames, skipped temporal layers, per-frame norm, joint guidance, the text stream on
top (λ_text = 0 is the plain Hallo forward, bit for bit), and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hallo_fixtures import tiny_hallo_config

FRAMES = 6


@pytest.fixture(scope="module")
def hallo_pipe():
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from conftest import wake_zero_branches

    pipe = PortraitTalkPipeline.from_config(tiny_hallo_config(), seed=0)
    wake_zero_branches(pipe.components)  # text K/V, zero convs, temporal and structure outputs all live
    return pipe


@pytest.fixture(scope="module")
def inputs(hallo_pipe):
    from comfyui_portraittalk.models.networks.hallo_masks import region_masks
    from comfyui_portraittalk.models.pipeline import AudioEmbeds

    gen = torch.Generator().manual_seed(0)
    pipe = hallo_pipe
    latents = pipe.encode_pixels(torch.rand(1, 3, 64, 64, generator=gen))
    tokens = pipe.identity_tokens(image_embeds=torch.randn(1, 32, generator=gen))
    text, null = pipe.encode_prompt("a face with glasses")
    audio = pipe.components.audio_proj(torch.randn(8, 5, 1, 80, generator=gen))
    return {"latents": latents, "tokens": tokens, "text": text, "null": null, "regions": region_masks(64, 64),
            "audio": AudioEmbeds(audio, 25.0, FRAMES, FRAMES / 25)}


def _sample(pipe, inputs, *, text=None, text_scale=1.0, audio_scale=1.0, mode="motion_frames", seed=1,
            weights=None, steps=1):
    from comfyui_portraittalk.models.sampling.sampler import SamplingOptions

    identity = pipe.encode_identity(inputs["latents"], inputs["tokens"], text, inputs["null"], inputs["regions"])
    cond = pipe.conditioning(null_text=inputs["null"], text=text, identity=identity, audio=inputs["audio"],
                             text_scale=text_scale, audio_scale=audio_scale, region_weights=weights)
    options = SamplingOptions(num_frames=FRAMES, steps=steps, seed=seed, audio_guidance=3.5, window=4,
                              overlap=0 if mode == "motion_frames" else 2, long_audio=mode)
    return pipe.sample(cond, options)


def test_the_small_model_has_hallo_layout(hallo_pipe):
    from comfyui_portraittalk.models.networks.temporal import PerFrameGroupNorm

    unet = hallo_pipe.components.animate_net.unet
    keys = unet.state_dict()
    assert "down_blocks.0.audio_modules.0.transformer_blocks.0.attn2_2.to_k.weight" in keys
    assert "up_blocks.2.audio_modules.1.transformer_blocks.0.zero_conv_lip.weight" in keys
    assert not any(k.startswith(("down_blocks.2.audio_modules", "up_blocks.0.audio_modules")) for k in keys)
    assert all(isinstance(m.norm, PerFrameGroupNorm) for n, m in unet.named_modules() if n.endswith(".motion_modules.0"))
    assert hallo_pipe.components.animate_net.motion_frames == 2
    layers = hallo_pipe.components.animate_net.motion_layers()
    assert layers["mid_block.motion_modules.0"] == "mid_block.attentions.0.transformer_blocks.0.attn1"
    assert not any(k.startswith(("down_blocks.2.", "up_blocks.0.")) for k in layers)


def test_lambda_text_zero_is_the_plain_hallo_forward_bit_for_bit(hallo_pipe, inputs):
    plain = _sample(hallo_pipe, inputs)  # no prompt: no text stream at all
    with_prompt_off = _sample(hallo_pipe, inputs, text=inputs["text"], text_scale=0.0)
    assert torch.equal(plain, with_prompt_off)
    with_prompt_on = _sample(hallo_pipe, inputs, text=inputs["text"], text_scale=1.0)
    assert (with_prompt_on - plain).abs().max() > 1e-3  # and λ_text > 0 does reach the output


def test_outputs_are_deterministic_and_shaped_as_latents(hallo_pipe, inputs):
    first = _sample(hallo_pipe, inputs, seed=5)
    again = _sample(hallo_pipe, inputs, seed=5)
    other = _sample(hallo_pipe, inputs, seed=6)
    assert first.shape == (FRAMES, 48, 16, 16) and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_motion_frames_and_blended_windows_are_two_schemes(hallo_pipe, inputs):
    seen = []
    module = hallo_pipe.components.animate_net.unet.get_submodule("down_blocks.0.motion_modules.0")
    hook = module.register_forward_pre_hook(lambda m, a, k: seen.append(k.get("num_frames")), with_kwargs=True)
    try:
        motion = _sample(hallo_pipe, inputs, steps=1)
    finally:
        hook.remove()
    assert set(seen) == {4 + 2}  # a window of 4 plus 2 motion frames (the last window is filled to 4 too)
    blended = _sample(hallo_pipe, inputs, mode="blended", steps=1)
    assert motion.shape == blended.shape and not torch.equal(motion, blended)


def test_skipped_temporal_layers_pass_their_input_through(hallo_pipe):
    unet = hallo_pipe.components.animate_net.unet
    skipped = unet.get_submodule("up_blocks.0.motion_modules.1")
    running = unet.get_submodule("up_blocks.1.motion_modules.1")
    x = torch.randn(2 * 3, 96, 4, 4)
    with torch.no_grad():
        assert torch.equal(skipped(x, num_frames=3), x)
        assert not torch.equal(running(x, num_frames=3), x)


def test_per_frame_norm_normalises_each_frame_on_its_own():
    from comfyui_portraittalk.models.networks.temporal import PerFrameGroupNorm

    norm = PerFrameGroupNorm(4, 8)
    x = torch.randn(2, 8, 3, 5, 5)
    x[:, :, 1] *= 10  # a loud frame must not change the others' statistics
    expected = torch.stack([torch.nn.functional.group_norm(x[:, :, f], 4, norm.weight, norm.bias) for f in range(3)], 2)
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_joint_guidance_is_hallos_cfg():
    from comfyui_portraittalk.models.sampling.sampler import guidance_passes

    passes = guidance_passes(1.0, 3.5, False, True, joint=True)
    assert [(p.identity, p.audio, p.weight) for p in passes] == [(False, False, -2.5), (True, True, 3.5)]
    three = guidance_passes(2.0, 3.5, True, True, joint=True)
    assert sum(p.weight for p in three) == pytest.approx(1.0) and [p.text for p in three] == [False, False, True]


def test_audio_scale_and_region_weights_reach_only_the_audio_cross_attention(hallo_pipe, inputs):
    base = _sample(hallo_pipe, inputs, steps=1)
    silent = _sample(hallo_pipe, inputs, steps=1, audio_scale=0.0)
    weightless = _sample(hallo_pipe, inputs, steps=1, weights=(0.0, 0.0, 0.0))
    assert not torch.equal(base, silent)
    assert torch.allclose(silent, weightless, atol=1e-5)


def test_region_masks_follow_hallos_recipe():
    from comfyui_portraittalk.faces.hallo_regions import FACE_OVAL, LIPS, expand_box
    from comfyui_portraittalk.models.networks.hallo_masks import region_masks

    landmarks = np.zeros((478, 2))
    landmarks[:, 0], landmarks[:, 1] = 256, 256
    landmarks[FACE_OVAL] = [[150, 120], [360, 120], [150, 420], [360, 420]] * 9
    landmarks[LIPS] = [[220, 340], [290, 340], [220, 370], [290, 370]] * 5
    masks = region_masks(512, 512, landmarks)
    assert expand_box(150, 360, 120, 420, 512, 512, 1.2) == (129, 381, 90, 450)
    assert masks.face_box[200, 200] == 1 and masks.face_box[50, 50] == 0
    full, face, lip = masks.at(64, 64)
    assert full.shape == (1, 64 * 64) and float(full.max()) == 1.0 and float(lip.max()) == 1.0
    # background is 1 − face, and the face region excludes the lips
    assert float(full.reshape(64, 64)[0, 0]) > 0.9 and float(lip.reshape(64, 64)[44, 32]) > 0.9
    assert float(face.reshape(64, 64)[44, 32]) < 0.2 and float(face.reshape(64, 64)[28, 32]) > 0.9
    assert masks.at(8, 8)[0].shape == (1, 64)
    box_only = region_masks(64, 64)  # without face tools: the centre box
    assert box_only.source == "box" and box_only.face_box[32, 32] == 1
