"""Low-VRAM running: diffusers' block-level group offloading on a `PortraitTalkPipeline`'s big networks.

`offload_pipeline(pipeline, device)` keeps the UNets of AnimateNet and IdentityNet on the CPU and moves
each top-level block (`down_blocks.i`, `up_blocks.i`, `num_blocks_per_group` at a time) to `device` just
before it runs, and back after; the rest of the UNet (`conv_in`, time embedding, `mid_block`, `conv_out`)
is on the device for the whole UNet call. On CUDA the next group is copied on a side stream while the
current one computes. Everything else (projections, structure encoder, codec, encoders) is small and
stays on `device`. `remove_offload(pipeline)` undoes it. `min_offload_bytes` says how much device memory
the weights then need at least; `execution_device` is where an offloaded network computes (its
parameters report the CPU). Plain torch and diffusers: no ComfyUI here.

Why per UNet and not per network: diffusers groups the `ModuleList`s among a module's children. The
networks' only big child is their UNet, so offloading the network itself would make one group of it all.
PortraitTalk's processors, audio modules and hooks live inside the UNet's blocks, so each block's group
carries them; the side channels (`AttentionContext`, IdentityNet's recording, motion frames) pass
through diffusers' input mover untouched, because they are neither tensors nor have a `.to`.

The order matters: convert the dtype, channels-last and `torch.compile` first (`accelerate`), then
offload. Moving or casting an offloaded pipeline is refused: the CPU copies would go stale.
"""

from __future__ import annotations

import torch
from torch import nn

NETWORKS = ("animate_net", "identity_net")
_MARK = "_portraittalk_offload"  # on an offloaded network: its settings, for `execution_device` and undoing


class OffloadError(RuntimeError):
    """Group offloading cannot run here (missing package, bad setting), with what to do about it."""


def _hook_names() -> tuple[str, ...]:
    from diffusers.hooks import group_offloading as g

    return g._GROUP_OFFLOADING, g._LAYER_EXECUTION_TRACKER, g._LAZY_PREFETCH_GROUP_OFFLOADING


def _check_available() -> None:
    try:
        from diffusers.hooks import apply_group_offloading  # noqa: F401
        from diffusers.utils import is_accelerate_available
    except ImportError as err:
        raise OffloadError(f"group offloading needs diffusers >= 0.33 ({err})") from None
    if not is_accelerate_available():  # diffusers moves a group's inputs with accelerate's send_to_device
        raise OffloadError("group offloading needs the accelerate package: pip install accelerate")


def is_offloaded(target) -> bool:
    """Whether a pipeline (any of its networks) or a network is under `offload_pipeline`'s offloading."""
    components = getattr(target, "components", None)
    if components is not None:
        return any(hasattr(getattr(components, name), _MARK) for name in NETWORKS)
    return hasattr(target, _MARK)


def execution_device(module: nn.Module) -> torch.device:
    """Where `module` computes: the onload device when it is offloaded (by us, or by diffusers directly on
    it or a submodule), else the device of its first parameter."""
    mark = getattr(module, _MARK, None)
    if mark is not None:
        return mark["device"]
    try:
        from diffusers.hooks.group_offloading import _GROUP_OFFLOADING
    except ImportError:
        _GROUP_OFFLOADING = None
    if _GROUP_OFFLOADING is not None:
        for sub in module.modules():
            registry = getattr(sub, "_diffusers_hook", None)
            hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
            if hook is not None:
                return hook.config.onload_device
    return next(module.parameters()).device


def _bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _module_tensors(module: nn.Module):
    return list(module.parameters()) + list(module.buffers())


def offload_groups(unet: nn.Module, num_blocks_per_group: int = 1) -> list[tuple[str, int]]:
    """The groups diffusers' block-level offloading makes of `unet`, with their sizes in bytes at the
    current dtype: first "resident" (what is not in a `ModuleList`/`Sequential` child: on the device for the
    whole call), then each block group, named as diffusers names them (`down_blocks_0_0`)."""
    _check_blocks(num_blocks_per_group)
    grouped: set[int] = set()
    groups = []
    for name, child in unet.named_children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            for i in range(0, len(child), num_blocks_per_group):
                blocks = list(child[i: i + num_blocks_per_group])
                tensors = [t for b in blocks for t in _module_tensors(b)]
                grouped.update(id(t) for t in tensors)
                groups.append((f"{name}_{i}_{i + len(blocks) - 1}", _bytes(tensors)))
    resident = _bytes(t for t in _module_tensors(unet) if id(t) not in grouped)
    return [("resident", resident)] + groups


def min_offload_bytes(pipeline, num_blocks_per_group: int = 1, prefetch: int | None = None) -> int:
    """The least device memory the weights of an offloaded pipeline take: the components that stay on the
    device, plus, for the network that needs most, its resident group and its largest block group × (1 +
    `prefetch`) (1 with streams: the next group is copied while one computes; default: 1 on CUDA, else 0).
    The networks run one after another, so only one of them is on the device at a time. Activations are
    not included."""
    device = torch.device(getattr(pipeline, "device", "cpu"))
    prefetch = (1 if device.type == "cuda" else 0) if prefetch is None else int(prefetch)
    components = pipeline.components
    stays = 0
    worst = 0
    for name, module in components.modules().items():
        if name in NETWORKS:
            net = module
            in_unet = {id(u) for u in _module_tensors(net.unet)}
            stays += _bytes(t for t in _module_tensors(net) if id(t) not in in_unet)
            groups = offload_groups(net.unet, num_blocks_per_group)
            largest = max((size for _, size in groups[1:]), default=0)
            worst = max(worst, groups[0][1] + largest * (1 + prefetch))
        else:
            stays += _bytes(_module_tensors(module))
    encoder = getattr(pipeline, "audio_encoder", None)
    if isinstance(getattr(encoder, "model", None), nn.Module):  # wav2vec2 stays on the device
        stays += _bytes(_module_tensors(encoder.model))
    return stays + worst


def _check_blocks(num_blocks_per_group) -> None:
    if isinstance(num_blocks_per_group, bool) or not isinstance(num_blocks_per_group, int) or num_blocks_per_group < 1:
        raise ValueError(f"num_blocks_per_group must be a whole number >= 1, got {num_blocks_per_group!r}")


def offload_pipeline(pipeline, device=None, *, num_blocks_per_group: int = 1, use_stream: bool | None = None,
                     low_cpu_mem_usage: bool = False) -> dict:
    """Put AnimateNet's and IdentityNet's UNets under block-level group offloading, computing on `device`
    (default: the pipeline's), stored on the CPU; move every other component to `device`. The pipeline
    may be anywhere before (on the CPU, it never holds the whole model on the device). `use_stream`
    (default: on CUDA) overlaps the copies with compute; it needs a CUDA-like device. Returns a report:
    device, num_blocks_per_group, use_stream, the networks, each network's groups (`offload_groups`) and
    `min_device_bytes` (`min_offload_bytes`)."""
    from diffusers.hooks import apply_group_offloading

    _check_available()
    _check_blocks(num_blocks_per_group)
    if is_offloaded(pipeline):
        raise OffloadError("this pipeline is offloaded already; call remove_offload first")
    device = torch.device(device) if device is not None else torch.device(pipeline.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if use_stream is None:
        use_stream = device.type == "cuda"
    if use_stream and device.type == "cpu":
        raise OffloadError("use_stream needs a GPU: streams overlap host-to-device copies with compute")
    components = pipeline.components
    report = {"device": str(device), "num_blocks_per_group": num_blocks_per_group, "use_stream": bool(use_stream),
              "networks": list(NETWORKS), "groups": {}}
    for name, module in components.modules().items():
        if name not in NETWORKS:
            module.to(device)
    encoder = getattr(pipeline, "audio_encoder", None)
    if isinstance(getattr(encoder, "model", None), nn.Module):
        encoder.model.to(device)
    for name in NETWORKS:
        net = getattr(components, name)
        unet_tensors = {id(t) for t in _module_tensors(net.unet)}
        for child_name, child in net.named_children():  # e.g. the structure encoder: small, stays on the device
            if child is not net.unet:
                child.to(device)
        if any(id(t) not in unet_tensors for t in net.parameters(recurse=False)):
            raise OffloadError(f"{name} has parameters outside its UNet and children; cannot offload it")
        report["groups"][name] = offload_groups(net.unet, num_blocks_per_group)
        apply_group_offloading(net.unet, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=num_blocks_per_group,
                               use_stream=bool(use_stream), low_cpu_mem_usage=low_cpu_mem_usage)
        setattr(net, _MARK, {"device": device, "num_blocks_per_group": num_blocks_per_group,
                             "use_stream": bool(use_stream)})
    pipeline.device = device
    report["min_device_bytes"] = min_offload_bytes(pipeline, num_blocks_per_group, 1 if use_stream else 0)
    return report


def remove_offload(pipeline, device=None) -> None:
    """Undo `offload_pipeline`: remove diffusers' hooks (and their forward wrappers) from the UNets and move
    every component to `device` (default: the pipeline's). A pipeline that is not offloaded is only moved."""
    from diffusers.hooks import HookRegistry

    components = pipeline.components
    device = torch.device(device) if device is not None else torch.device(pipeline.device)
    for name in NETWORKS:
        net = getattr(components, name)
        if not hasattr(net, _MARK):
            continue
        registry = HookRegistry.check_if_exists_or_initialize(net.unet)
        for hook in _hook_names():
            registry.remove_hook(hook, recurse=True)
        _drop_empty_registries(net.unet)
        delattr(net, _MARK)
    pipeline.to(device)


def _drop_empty_registries(root: nn.Module) -> None:
    """diffusers leaves an empty hook registry and the module's bound `forward` as an instance attribute
    behind; remove both, so the modules are plain again (and `torch.compile` sees ordinary modules)."""
    for module in root.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None or registry.hooks:
            continue
        del module._diffusers_hook
        forward = module.__dict__.get("forward")
        if forward is not None and getattr(forward, "__func__", None) is type(module).forward:
            del module.__dict__["forward"]


__all__ = ["OffloadError", "execution_device", "is_offloaded", "min_offload_bytes", "offload_groups",
           "offload_pipeline", "remove_offload"]
