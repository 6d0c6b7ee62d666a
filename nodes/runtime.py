"""ComfyUI plumbing shared by the nodes: precision, progress bars (which are also interrupt points), previews,
and loaded-model caching (nodes/managed.py puts the networks on the device)."""

from __future__ import annotations

import weakref
from pathlib import Path

import comfy.model_management as mm
import comfy.utils
import numpy as np
from PIL import Image
from comfy.cli_args import LatentPreviewMethod, args

# Weak: a pipeline lives as long as ComfyUI keeps a node output that holds it, so "Unload models" / /free
# (which drops ComfyUI's output cache) gives its memory back, as it does for core models.
_PIPELINES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


WEIGHT_DTYPES = ("auto", "fp16", "bf16", "fp32")
WEIGHT_DTYPE_TOOLTIP = ("Precision of the networks' weights. auto: ComfyUI's choice for diffusion models "
                        "(--fp16-unet, --bf16-unet, --fp32-unet, else what the device does well); the codec/VAE "
                        "stays in fp32.")


def weight_dtype(choice: str, parameters: int = 0):
    """The torch dtype for a loader's `weight_dtype` input: the named one, or ComfyUI's UNet dtype for
    "auto" (a dtype the pack does not run, fp8 or fp64, falls back to fp16 or fp32)."""
    import torch

    from ..models.dtypes import torch_dtype

    if choice not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype: {choice!r} is not one of {', '.join(WEIGHT_DTYPES)}")
    if choice != "auto":
        return torch_dtype(choice)
    supported = [torch.float16, torch.bfloat16, torch.float32]
    chosen = mm.unet_dtype(mm.get_torch_device(), parameters, supported_dtypes=supported)
    if chosen in supported:
        return chosen
    return torch.float32 if chosen == torch.float64 else torch.float16


def load_pipeline(path: Path, weight_dtype_choice: str = "auto"):
    """A PortraitTalkPipeline for a model file in the chosen precision, shared by every loader node that
    names the same file and precision (the IdentityNet and AnimateNet loaders of one model share one copy)
    while any of them is cached."""
    from ..models.pipeline import PortraitTalkPipeline

    stat = path.stat()
    dtype = weight_dtype(weight_dtype_choice, _parameter_count(path))
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(dtype))
    pipeline = _PIPELINES.get(key)
    if pipeline is None:
        pipeline = PortraitTalkPipeline.from_pretrained(path, device=mm.unet_offload_device(), dtype=dtype)
        _PIPELINES[key] = pipeline
    return pipeline


def _parameter_count(path: Path) -> int:
    """Elements in a safetensors model file, from its checked header (what ComfyUI weighs its dtype choice by);
    0 for anything unreadable: the loader that follows refuses a broken file with its own clear message."""
    import math

    from ..models.files.weights import ModelFileError, _check_safetensors_header

    if path.suffix != ".safetensors" or not path.is_file():
        return 0
    try:
        header = _check_safetensors_header(path)
        return sum(math.prod(int(d) for d in info["shape"]) for name, info in header.items() if name != "__metadata__")
    except (ModelFileError, OSError, ValueError, TypeError, KeyError):
        return 0


class Progress:
    """A ComfyUI progress bar driven by the sampler's per-window callback. Every update is an interrupt
    point: ComfyUI raises InterruptProcessingException from inside it, and nothing here catches it.

    With previews on, it also sends the current x0 estimate as the step preview image and, when given a
    node id, assembles each step's estimates into a partial video for the node's player (throttled)."""

    def __init__(self, total: int, pipeline=None, node_id=None, num_frames: int = 0, fps: float = 25.0):
        self.bar = comfy.utils.ProgressBar(total)
        previews = pipeline is not None and args.preview_method != LatentPreviewMethod.NoPreviews
        self.pipeline = pipeline if previews else None
        self.node_id, self.num_frames, self.fps = node_id, num_frames, fps
        self.video = None  # uint8 [F, h, w, 3]: this step's estimates so far

    def __call__(self, event) -> None:
        image = None
        if self.pipeline is not None and event.denoised is not None:
            frames = self.pipeline.preview_frames(event.denoised)
            image = ("JPEG", Image.fromarray(frames[len(frames) // 2]), args.preview_size)
            if self.node_id is not None:
                if self.video is None:
                    self.video = np.zeros((self.num_frames, *frames.shape[1:]), np.uint8)
                self.video[event.frames[0]: event.frames[1]] = frames
                if event.window == event.num_windows - 1:
                    from .preview import publish_partial_video

                    publish_partial_video(self.node_id, self.video, self.fps)
        self.bar.update_absolute(event.completed, event.total, image)
