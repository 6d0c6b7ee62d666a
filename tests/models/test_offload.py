"""Group offloading (models/sampling/offload.py) on small models, CPU: the hooks run (the onload device may be the CPU),
sampling gives the same latents as without, undoing it leaves plain modules, and the memory estimate is
what the groups really hold at once."""

from __future__ import annotations

import pytest
import torch

from hallo_fixtures import tiny_hallo_config

FRAMES = 6


def _pipe(config):
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from conftest import wake_zero_branches

    pipe = PortraitTalkPipeline.from_config(config, seed=0)
    wake_zero_branches(pipe.components)  # every stream and side channel live, so a lost one shows
    return pipe


def _sample(pipe, steps=1, mode=None):
    """One generation's sampling, stage by stage (IdentityNet, then AnimateNet; Hallo: motion frames too)."""
    from comfyui_portraittalk.models.networks.hallo_masks import region_masks
    from comfyui_portraittalk.models.pipeline import AudioEmbeds
    from comfyui_portraittalk.models.sampling.sampler import SamplingOptions

    gen = torch.Generator().manual_seed(0)
    latents = pipe.encode_pixels(torch.rand(1, 3, 64, 64, generator=gen))
    width = pipe.components.image_proj.image_embeds.in_features
    tokens = pipe.identity_tokens(image_embeds=torch.randn(1, width, generator=gen))
    text, null = pipe.encode_prompt("a face with glasses")
    audio = pipe.components.audio_proj(torch.randn(8, 5, 1, 80, generator=gen))
    identity = pipe.encode_identity(latents, tokens, text, null, region_masks(64, 64))
    cond = pipe.conditioning(null_text=null, text=text, identity=identity, audio=AudioEmbeds(audio, 25.0, FRAMES, 0.24))
    options = SamplingOptions(num_frames=FRAMES, steps=steps, seed=1, text_guidance=2.0, audio_guidance=3.5, window=4,
                              overlap=0 if mode == "motion_frames" else 2, long_audio=mode)
    return pipe.sample(cond, options)


def _plain(module) -> bool:
    return not any(hasattr(m, "_diffusers_hook") or "forward" in m.__dict__ for m in module.modules())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a small shared machine, more threads only wait on each other at these sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return _pipe("tiny")


@pytest.fixture(scope="module")
def hallo():
    return _pipe(tiny_hallo_config())


@pytest.mark.parametrize("which,mode", [("tiny", None), ("hallo", "motion_frames"), ("hallo", "blended")])
def test_offloaded_sampling_gives_the_same_latents_and_undoing_restores_plain_modules(request, which, mode):
    from comfyui_portraittalk.models.sampling.offload import is_offloaded, offload_pipeline, remove_offload

    pipe = request.getfixturevalue(which)
    before = _sample(pipe, mode=mode)
    report = offload_pipeline(pipe, "cpu", num_blocks_per_group=2)
    assert is_offloaded(pipe) and report["use_stream"] is False and report["num_blocks_per_group"] == 2
    for name in ("animate_net", "identity_net"):
        unet = getattr(pipe.components, name).unet
        assert hasattr(unet, "_diffusers_hook") and hasattr(unet.down_blocks[0], "_diffusers_hook")
        assert hasattr(unet.down_blocks[1], "_diffusers_hook") and not hasattr(unet.down_blocks[1].resnets[0],
                                                                               "_diffusers_hook")
    try:
        offloaded = _sample(pipe, mode=mode)
    finally:
        remove_offload(pipe)
    assert not is_offloaded(pipe)
    torch.testing.assert_close(offloaded, before, rtol=0, atol=1e-6)
    for name in ("animate_net", "identity_net"):
        assert _plain(getattr(pipe.components, name))
    torch.testing.assert_close(_sample(pipe, mode=mode), before, rtol=0, atol=0)


def test_every_group_is_loaded_once_per_unet_call_and_the_estimate_is_what_it_holds_at_once(tiny, monkeypatch):
    """Counting bytes as the groups are loaded and released: at most the resident group and one block group
    are on the device at a time (no streams on a CPU), which is `min_offload_bytes` for the weights."""
    from diffusers.hooks.group_offloading import ModuleGroup

    from comfyui_portraittalk.models.sampling.offload import (min_offload_bytes, offload_groups, offload_pipeline,
                                                     remove_offload)

    def size(group):
        tensors = [t for m in group.modules for t in list(m.parameters()) + list(m.buffers())]
        unique = {id(t): t for t in tensors + list(group.parameters) + list(group.buffers)}  # diffusers lists some twice
        return sum(t.numel() * t.element_size() for t in unique.values())

    held, peak, loads = [0], [0], []
    onload, offload = ModuleGroup.onload_, ModuleGroup.offload_

    def counting_onload(group):
        held[0] += size(group)
        peak[0] = max(peak[0], held[0])
        loads.append(group)
        return onload(group)

    def counting_offload(group):
        held[0] -= size(group)
        return offload(group)

    report = offload_pipeline(tiny, "cpu")
    monkeypatch.setattr(ModuleGroup, "onload_", counting_onload)
    monkeypatch.setattr(ModuleGroup, "offload_", counting_offload)
    try:
        unet = tiny.components.animate_net.unet
        groups = offload_groups(unet)
        assert [name for name, _ in groups] == ["resident"] + [f"{b}_{i}_{i}" for b in ("down_blocks", "up_blocks")
                                                                for i in range(len(unet.down_blocks))]
        assert sum(s for _, s in groups) == sum(p.numel() * 4 for p in unet.parameters()) + sum(
            b.numel() * b.element_size() for b in unet.buffers())
        _sample(tiny, steps=1)
    finally:
        monkeypatch.undo()
        remove_offload(tiny)
    assert held[0] == 0  # everything loaded was released
    nets = {name: getattr(tiny.components, name).unet for name in ("animate_net", "identity_net")}
    per_net = {name: offload_groups(u)[0][1] + max(s for _, s in offload_groups(u)[1:]) for name, u in nets.items()}
    assert peak[0] == max(per_net.values())  # the networks never hold their groups at the same time
    stays = min_offload_bytes(tiny, prefetch=0) - max(per_net.values())
    assert stays == sum(p.numel() * p.element_size() for n, m in tiny.components.modules().items()
                        for p in list(m.parameters()) + list(m.buffers())
                        if n not in nets) + sum(p.numel() * 4 for p in tiny.components.animate_net.structure.parameters())
    assert report["min_device_bytes"] == min_offload_bytes(tiny, prefetch=0)
    with_prefetch = max(offload_groups(u)[0][1] + 2 * max(s for _, s in offload_groups(u)[1:]) for u in nets.values())
    assert min_offload_bytes(tiny, prefetch=1) == stays + with_prefetch > min_offload_bytes(tiny, prefetch=0)
    # one load per block group per UNet call, plus the resident group
    calls = len([g for g in loads if g.onload_leader is nets["animate_net"]])
    assert calls >= 1 and len([g for g in loads if g.onload_leader is nets["animate_net"].down_blocks[0]]) == calls


def test_an_offloaded_pipeline_refuses_to_move_and_bad_settings_are_named(tiny):
    from comfyui_portraittalk.models.sampling.offload import OffloadError, offload_pipeline, remove_offload

    with pytest.raises(ValueError, match="num_blocks_per_group"):
        offload_pipeline(tiny, "cpu", num_blocks_per_group=0)
    with pytest.raises(OffloadError, match="use_stream needs a GPU"):
        offload_pipeline(tiny, "cpu", use_stream=True)
    offload_pipeline(tiny, "cpu")
    try:
        with pytest.raises(ValueError, match="remove_offload"):
            tiny.to(dtype=torch.bfloat16)
        with pytest.raises(OffloadError, match="offloaded already"):
            offload_pipeline(tiny, "cpu")
    finally:
        remove_offload(tiny)
    assert tiny.dtype == torch.float32 and next(tiny.components.animate_net.parameters()).dtype == torch.float32
