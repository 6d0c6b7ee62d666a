"""The full-size (SD-1.5 layout) wiring, exercised on CPU with random weights at a small latent size."""

from __future__ import annotations

import gc

import pytest
import torch

from comfyui_portraittalk.models.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sd15():
    from comfyui_portraittalk.models.files.components import build_components

    torch.manual_seed(0)
    components = build_components(load_config("sd15"))
    yield components
    del components
    gc.collect()


def test_sd15_config_has_the_sd15_layout(sd15):
    unet = sd15.animate_net.unet
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert unet.config.cross_attention_dim == 768
    motion = [n for n, _ in unet.named_modules() if n.split(".")[-2:-1] == ["motion_modules"]]
    assert len(motion) == 4 * 2 + 1 + 4 * 3  # AnimateDiff v2: down, mid, up (21, as in Hallo)
    assert sd15.audio_proj.proj1.in_features == 5 * 12 * 768  # ±2 frames × 12 wav2vec2 layers × 768
    assert sd15.audio_proj.tokens == 32
    assert sd15.codec is None and sd15.text_encoder is None  # pretrained parts come from user files


def test_one_denoising_step_on_two_frames(sd15):
    from comfyui_portraittalk.models.networks.attention import StreamScales
    from comfyui_portraittalk.models.networks.identity_net import IdentityFeatures
    from comfyui_portraittalk.models.sampling.sampler import SamplingOptions, VideoConditioning, sample_video

    config = sd15.config
    gen = torch.Generator().manual_seed(0)
    refs = torch.randn(1, 4, 8, 8, generator=gen)
    text, null = torch.randn(1, 77, 768, generator=gen), torch.zeros(1, 77, 768)
    with torch.no_grad():
        tokens = sd15.image_proj(torch.randn(1, 1024, generator=gen)).reshape(1, -1, 768)
        features = sd15.identity_net(refs, torch.cat([text, null]), tokens)
        windows = torch.randn(2, 5, 12, 768, generator=gen)
        audio = sd15.audio_proj(windows)
    assert len(features) == 16 and all(v.shape[0] == 2 for v in features.values())
    identity = IdentityFeatures(features, tokens, ("text", "null"), 1)
    cond = VideoConditioning(null_text=null, text=text, identity=identity, audio_tokens=audio, scales=StreamScales())
    options = SamplingOptions(num_frames=2, steps=1, text_guidance=2.0, audio_guidance=1.5,
                              structure=torch.rand(1, 1, 64, 64, generator=gen))
    latents = sample_video(sd15.animate_net.eval(), cond, options, (4, 8, 8), config["scheduler"])
    assert latents.shape == (2, 4, 8, 8) and torch.isfinite(latents).all()


@pytest.fixture(scope="module")
def comfy_root():
    from comfyui_harness.environment import ensure_comfyui

    return ensure_comfyui()


def test_sd15_single_file_checkpoint_initialises_unets_vae_and_text(tmp_path, comfy_root):
    """Random tensors in the real SD-1.5 LDM layout land in the right places of every component."""
    from safetensors.torch import save_file

    from comfyui_portraittalk.models.files.components import build_components
    from comfyui_portraittalk.models.files.convert import init_from_sd15
    from fake_checkpoints import sd15_checkpoint

    ldm, expected = sd15_checkpoint(comfy_root)
    path = tmp_path / "sd15.safetensors"
    save_file(ldm, str(path))
    del ldm
    with torch.device("meta"):
        components = build_components(load_config("sd15"), with_codec=True, with_text_encoder=True)
    for module in components.modules().values():
        module.to_empty(device="cpu")
    report = init_from_sd15(components, path)
    assert report.loaded == {"identity_net": 682, "animate_net": 686, "vae": 248, "text_encoder": 196}
    identity = components.identity_net.unet.state_dict()
    animate = components.animate_net.unet.state_dict()
    for key, value in expected["unet"].items():
        assert torch.equal(animate[key], value.float()), key
        if not key.startswith(("conv_norm_out", "conv_out")):
            assert torch.equal(identity[key], value.float()), key
    vae = components.codec.vae.state_dict()
    assert all(torch.allclose(vae[k], v.float().reshape(vae[k].shape)) for k, v in expected["vae"].items())
    text = components.text_encoder.model.state_dict()
    assert all(torch.equal(text[k], v.float()) for k, v in expected["text_encoder"].items())
    # what SD-1.5 cannot give is exactly the new streams (and, in AnimateNet, the temporal layers)
    assert report.left_new["identity_net"] and all(".to_k_ip." in k or ".to_v_ip." in k
                                                   for k in report.left_new["identity_net"])
    assert all("motion_modules" in k or "_ip." in k for k in report.left_new["animate_net"])


def test_animatediff_v2_motion_module_initialises_the_temporal_layers(tmp_path, sd15):
    from safetensors.torch import save_file

    from comfyui_portraittalk.models.files.convert import init_temporal_from_animatediff
    from comfyui_portraittalk.models.files.weights import ModelFileError
    from fake_checkpoints import animatediff_v2_motion_module

    motion = animatediff_v2_motion_module()
    path = tmp_path / "mm_sd_v15_v2.safetensors"
    save_file(motion, str(path))
    report = init_temporal_from_animatediff(sd15, path)
    pe = [k for k in motion if k.endswith("pos_encoder.pe")]
    assert len(pe) == 42 and report.loaded["temporal"] == len(motion) - len(pe)
    state = sd15.animate_net.unet.state_dict()
    key = "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight"
    assert torch.equal(state[key.replace(".temporal_transformer", "").replace("attention_blocks.1", "attn2")],
                       motion[key].float())
    truncated = dict(motion)
    truncated.pop(key)
    save_file(truncated, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelFileError, match="keys the file lacks.*up_blocks.3.motion_modules.2"):
        init_temporal_from_animatediff(sd15, tmp_path / "partial.safetensors")
    with pytest.raises(ModelFileError, match="not an AnimateDiff motion module"):
        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        init_temporal_from_animatediff(sd15, tmp_path / "other.safetensors")
