"""The pack's networks as models that ComfyUI manages.

Each network a node runs (IdentityNet, AnimateNet, the projections, and the codec and encoders that a model
brings) gets one ComfyUI ModelPatcher, and nodes load what they need with `load_models_gpu`, as core does for its
CLIP vision and audio encoders. So ComfyUI counts the networks in its memory budget, keeps them on the GPU between
nodes and between runs while there is room, moves them off when another model needs the room, honours
--highvram / --gpu-only (their offload device is the GPU), and drops them on "Unload models" (/free).
"""

from __future__ import annotations

import dataclasses
import weakref
from contextlib import contextmanager

import comfy.model_management as mm
import torch
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import CallbacksMP

# owner (a pipeline, or an audio encoder) → {network name: ModelPatcher}. Weak: the patchers live as long as the
# node output that holds their owner, so dropping ComfyUI's output cache frees the weights, as for core models.
_PATCHERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PortraitTalkNetwork(torch.nn.Module):
    """One network as ComfyUI's model manager sees it. A holder, so that the patcher's bookkeeping (its `device`
    and loaded-memory attributes) lands here, not on the network (diffusers' `device` is read-only)."""

    def __init__(self, name: str, network: torch.nn.Module):
        super().__init__()
        self.network_name = name
        self.network = network
        self.loads = 0  # weight transfers onto the load device; a run that finds its networks loaded adds none

    def get_dtype(self) -> torch.dtype:
        first = next(self.network.parameters(), None)
        return first.dtype if first is not None else torch.float32


def _count_load(patcher: ModelPatcher, *args) -> None:
    patcher.model.loads += 1


def _patcher(owner, name: str, module: torch.nn.Module) -> ModelPatcher:
    patchers = _PATCHERS.setdefault(owner, {})
    patcher = patchers.get(name)
    if patcher is None or patcher.model.network is not module:
        patcher = ModelPatcher(PortraitTalkNetwork(name, module), load_device=mm.get_torch_device(),
                               offload_device=mm.unet_offload_device())
        patcher.add_callback(CallbacksMP.ON_LOAD, _count_load)
        patchers[name] = patcher
    return patcher


def networks(pipeline, *names: str) -> list[ModelPatcher]:
    """The patchers of a pipeline's named networks, of those it has with weights (a full-size model has no codec of
    its own; the tiny codec is a pixel shuffle)."""
    modules = pipeline.components.modules()
    return [_patcher(pipeline, name, modules[name]) for name in names if name in modules and _has_weights(modules[name])]


def _has_weights(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


def encoder_network(encoder) -> list[ModelPatcher]:
    """The patcher of an audio encoder's weights (wav2vec2); none for one without weights (the mel encoder)."""
    model = getattr(encoder, "model", None)
    if not isinstance(model, torch.nn.Module) or next(model.parameters(), None) is None:
        return []
    return [_patcher(encoder, "audio_encoder", model)]


def load(pipeline, *names: str, also: list[ModelPatcher] = (), memory_required: int = 0) -> torch.device:
    """Load a pipeline's named networks (and `also`) on ComfyUI's device, making room for `memory_required`
    more bytes of activations, and point the pipeline's inputs there. A network already loaded does not move.

    Full loads only: the networks are diffusers modules, not comfy.ops layers, so ComfyUI cannot run them
    partly loaded (the caller checks the fit first, see nodes/memory.py)."""
    patchers = networks(pipeline, *names) + list(also)
    if patchers:
        mm.load_models_gpu(patchers, memory_required=memory_required, force_full_load=True)
    pipeline.device = mm.get_torch_device()
    return pipeline.device


def loaded_networks() -> list[dict]:
    """The pack's networks in ComfyUI's list of loaded models: name, dtype, size and loaded bytes, loads."""
    out = []
    for loaded in mm.current_loaded_models:
        patcher = loaded.model
        if patcher is not None and isinstance(patcher.model, PortraitTalkNetwork):
            out.append({"name": patcher.model.network_name, "dtype": str(patcher.model.get_dtype()),
                        "size": patcher.model_size(), "loaded": patcher.loaded_size(), "loads": patcher.model.loads,
                        "device": str(loaded.device)})
    return out


class NotEnoughMemory(RuntimeError):
    """Sampling would run out of memory: said before it starts, with the estimate and what to change."""


def weights_to_load(patchers: list[ModelPatcher]) -> int:
    """Bytes of these networks not yet on their load device (none where the load device is where they live)."""
    return sum(0 if p.load_device == p.offload_device else
               (p.model_size() - p.loaded_size() if p.current_loaded_device() == p.load_device else p.model_size())
               for p in patchers)


def available_memory(device: torch.device, keep: list[ModelPatcher]) -> int:
    """Free memory on the device, plus what ComfyUI can free there by unloading other models (on a GPU)."""
    free = mm.get_free_memory(device)
    if mm.is_device_cpu(device):
        return free
    others = sum(loaded.model_loaded_memory() for loaded in mm.current_loaded_models
                 if loaded.model is not None and loaded.device == device and loaded.model not in keep)
    return max(0, free + others - mm.extra_reserved_memory())


def _unload(patchers: list[ModelPatcher]) -> None:
    """Take these networks out of ComfyUI's loaded list, their weights back on the offload device."""
    for i in reversed(range(len(mm.current_loaded_models))):
        loaded = mm.current_loaded_models[i]
        if loaded.model is not None and loaded.model in patchers:
            loaded.model_unload()
            mm.current_loaded_models.pop(i)


@contextmanager
def sampling_memory(pipeline, conditioning, options):
    """Put what sampling runs on ComfyUI's device for the `with` block: loaded whole when the estimated peak fits,
    else, on a GPU, with AnimateNet's and IdentityNet's blocks streamed from the CPU (diffusers' group offloading;
    also under --lowvram and --novram). When even that cannot fit, stop now
    with the estimate (NotEnoughMemory), not with an out-of-memory error at the end of a long run."""
    from ..models.sampling.offload import min_offload_bytes, offload_pipeline, remove_offload

    needed = networks(pipeline, *pipeline.sampling_networks)
    device = mm.get_torch_device()
    whole = pipeline.memory_estimate(conditioning, options, weights=weights_to_load(needed))
    available = available_memory(device, keep=needed)
    gpu = not mm.is_device_cpu(device)
    low_vram = mm.vram_state in (mm.VRAMState.LOW_VRAM, mm.VRAMState.NO_VRAM)
    if whole.total <= available and not (gpu and low_vram):
        load(pipeline, *pipeline.sampling_networks, memory_required=whole.activations)
        yield "loaded"
        return
    prefetch = 1 if device.type == "cuda" else 0  # with streams, the next block group is copied during compute
    streamed = dataclasses.replace(whole, weights=min_offload_bytes(pipeline, prefetch=prefetch))
    everything = available_memory(device, keep=[])  # with the pack's own networks unloaded too
    if not gpu or streamed.total > everything:
        raise NotEnoughMemory(_message(whole, available, device, options.window,
                                       streamed if gpu else None))
    _unload(list(_PATCHERS.get(pipeline, {}).values()))
    mm.free_memory(streamed.total, device)
    offload_pipeline(pipeline, device)
    try:
        yield "offloaded"
    finally:
        remove_offload(pipeline, mm.unet_offload_device())


def _message(estimate, available: int, device, window: int, streamed=None) -> str:
    from ..models.sampling.memory import gigabytes

    h, w = estimate.latent_size
    offload = (f"; with the weights streamed from the CPU it would still need {gigabytes(streamed.total)}"
               if streamed is not None else "")
    return (f"not enough memory on {device} to sample: this run needs about {gigabytes(estimate.total)} "
            f"(weights to load {gigabytes(estimate.weights)} + activations {gigabytes(estimate.activations)} for "
            f"{estimate.frames}-frame windows × {estimate.passes} guidance pass(es) at {h}×{w} latents) and "
            f"{gigabytes(available)} is available{offload}. Lower 'window' (now {window}), set 'text_guidance' or "
            f"'audio_guidance' to 1 (each guidance adds a pass), or use smaller references or a smaller model "
            f"size; half precision (weight_dtype fp16 or bf16) halves both.")
