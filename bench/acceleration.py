"""Speed options for a `PortraitTalkPipeline`: half precision, channels-last, `torch.compile`.

`accelerate(pipeline, dtype=..., channels_last=..., compile=...)` changes the pipeline in place and
returns a report of what it did (and what it left alone, with the reason), so that a caller — the
benchmark, a node, the command line — can print it:

- **dtype** ("fp16", "bf16", "fp32" or a `torch.dtype`): every component moves to it through
  `pipeline.to`, which keeps the codec in float32 (the VAE decodes in float32, as ComfyUI does). The
  sampler follows AnimateNet's dtype and returns float32 latents. On a CPU, bf16 is the half type
  that oneDNN runs fast; fp16 works but is slow there (reported as a note).
- **channels_last**: the 4-D weights (convolutions) of IdentityNet, AnimateNet and the structure
  encoder are stored NHWC; cuDNN and oneDNN then run the convolutions in NHWC without transposes.
- **compile** (True or a mode such as "max-autotune"): `nn.Module.compile` on AnimateNet's UNet, the
  only network that runs every step (IdentityNet runs once per generation, so compiling it costs more
  than it saves unless `compile_identity_net`). The module compiles in place, so state-dict keys and
  `save_pretrained` are unchanged. The first call after it compiles (minutes on a CPU).
- **attention**: every attention layer is checked to run through SDPA
  (`torch.nn.functional.scaled_dot_product_attention`); the report counts processors by class and
  lists any that does not.
"""

from __future__ import annotations

import torch

from ..models.dtypes import DTYPE_NAMES, torch_dtype

# Every spelling resolve_dtype accepts: the short names, torch's own names, and "half".
DTYPES = {**{name: torch_dtype(name) for name in DTYPE_NAMES},
          **{attr: getattr(torch, attr) for attr in DTYPE_NAMES.values()}, "half": torch.float16}

# Attention processors known to call F.scaled_dot_product_attention (diffusers' *2_0 ones and ours).
SDPA_PROCESSORS = ("AttnProcessor2_0", "IPAdapterAttnProcessor2_0", "IdentityRecordingProcessor",
                   "IdentityAttnProcessor", "DecoupledCrossAttnProcessor", "FusedAttnProcessor2_0")


def resolve_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of fp32, fp16, bf16") from None


def attention_report(unet: torch.nn.Module) -> dict:
    """Processors of a diffusers UNet by class, and those that do not use SDPA."""
    counts: dict[str, int] = {}
    other = []
    for name, processor in unet.attn_processors.items():
        kind = type(processor).__name__
        counts[kind] = counts.get(kind, 0) + 1
        if kind not in SDPA_PROCESSORS:
            other.append(f"{name}: {kind}")
    return {"processors": counts, "not_sdpa": other}


def _unets(pipeline) -> dict[str, torch.nn.Module]:
    c = pipeline.components
    return {"identity_net.unet": c.identity_net.unet, "animate_net.unet": c.animate_net.unet}


def accelerate(pipeline, *, dtype=None, channels_last: bool = False, compile: bool | str = False,
               compile_identity_net: bool = False, dynamic: bool | None = False) -> dict:
    """Apply the options to `pipeline` (in place); returns what was done.

    `compile` may be True (default mode) or a `torch.compile` mode name. `dynamic=False` compiles for
    the shapes seen (context windows keep one shape; a shorter last video recompiles once).
    """
    report: dict = {"device": str(pipeline.device), "dtype": str(pipeline.dtype).replace("torch.", ""),
                    "channels_last": [], "compiled": [], "notes": []}
    target = resolve_dtype(dtype)
    if target is not None and target != pipeline.dtype:
        if pipeline.device.type == "cpu" and target == torch.float16:
            report["notes"].append("fp16 on a CPU is slow (few fp16 kernels); bf16 is the fast half type there")
        if pipeline.device.type == "cuda" and target == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16; use fp16")
        pipeline.to(dtype=target)
        report["dtype"] = str(target).replace("torch.", "")
        report["notes"].append("codec kept in float32")
    if channels_last:
        modules = {**_unets(pipeline), "animate_net.structure": pipeline.components.animate_net.structure}
        for name, module in modules.items():
            module.to(memory_format=torch.channels_last)
            report["channels_last"].append(name)
    if compile:
        mode = compile if isinstance(compile, str) else None
        targets = {"animate_net.unet": pipeline.components.animate_net.unet}
        if compile_identity_net:
            targets["identity_net.unet"] = pipeline.components.identity_net.unet
        for name, module in targets.items():
            module.compile(mode=mode, dynamic=dynamic)
            report["compiled"].append(name)
        report["compile_mode"] = mode or "default"
    report["attention"] = {name: attention_report(unet) for name, unet in _unets(pipeline).items()}
    not_sdpa = [p for a in report["attention"].values() for p in a["not_sdpa"]]
    report["sdpa_everywhere"] = not not_sdpa
    return report


__all__ = ["accelerate", "attention_report", "resolve_dtype", "DTYPES"]
