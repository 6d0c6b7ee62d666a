"""ComfyUI plumbing shared by the nodes: devices, progress bars (which are also interrupt points),
previews, and loaded-model caching."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import comfy.model_management as mm
import comfy.utils
from comfy.cli_args import LatentPreviewMethod, args

_PIPELINES: OrderedDict = OrderedDict()
_CACHE_SIZE = 2


def load_pipeline(path: Path):
    """A PortraitTalkPipeline for a model file, shared by every loader node that names the same file
    (the IdentityNet and AnimateNet loaders of one model share one copy)."""
    from ..models.pipeline import PortraitTalkPipeline

    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _PIPELINES:
        _PIPELINES[key] = PortraitTalkPipeline.from_pretrained(path, device=mm.unet_offload_device())
        while len(_PIPELINES) > _CACHE_SIZE:
            _PIPELINES.popitem(last=False)
    _PIPELINES.move_to_end(key)
    return _PIPELINES[key]


@contextmanager
def on_compute_device(pipeline):
    """Run on ComfyUI's torch device, and give the memory back afterwards."""
    device = mm.get_torch_device()
    if pipeline.device != device:
        mm.free_memory(mm.get_total_memory(device) // 2, device)
        pipeline.to(device)
    try:
        yield pipeline
    finally:
        offload = mm.unet_offload_device()
        if pipeline.device != offload:
            pipeline.to(offload)
            mm.soft_empty_cache()


class Progress:
    """A ComfyUI progress bar driven by the sampler's per-window callback. Every update is an interrupt
    point: ComfyUI raises InterruptProcessingException from inside it, and nothing here catches it."""

    def __init__(self, total: int, preview=None):
        self.bar = comfy.utils.ProgressBar(total)
        self.preview = preview if args.preview_method != LatentPreviewMethod.NoPreviews else None

    def __call__(self, event) -> None:
        image = None
        if self.preview is not None and event.denoised is not None:
            image = ("JPEG", self.preview(event.denoised), args.preview_size)
        self.bar.update_absolute(event.completed, event.total, image)

    def step(self, done: int, total: int) -> None:
        self.bar.update_absolute(done, total)


def check_interrupted() -> None:
    mm.throw_exception_if_processing_interrupted()
