"""Load Full-Size Model: an `sd15` PortraitTalk model assembled in memory from the files ComfyUI users already
have (models/files/assemble.py does the work), plus the checkpoint's CLIP for core CLIPTextEncode."""

from __future__ import annotations

import gc
import logging
import weakref
from pathlib import Path

from comfy_api.v0_0_2 import io

from . import folders, handles, io_types
from .runtime import WEIGHT_DTYPE_TOOLTIP, WEIGHT_DTYPES

NONE = "none"
SD15_PARAMETERS = 2_400_000_000  # IdentityNet + AnimateNet + VAE at full size: what ComfyUI weighs its dtype by
log = logging.getLogger(__name__)
# Weak, like runtime.load_pipeline: a model lives while a cached node output holds it, so /free releases it.
_ASSEMBLED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _safetensors(folder: str) -> list[str]:
    import folder_paths

    folders.register()
    return [n for n in folder_paths.get_filename_list(folder) if n.lower().endswith(".safetensors")]


def _weights_names() -> list[str]:
    return [NONE] + _safetensors(folders.PORTRAITTALK)


class LoadFullSizeModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkLoadFullSizeModel", display_name="Load Full-Size Model (PortraitTalk, SD-1.5)",
            category="PortraitTalk/loaders",
            description="Assembles a full-size PortraitTalk model (sd15 family) from an SD-1.5 checkpoint (UNets "
                        "and VAE), an AnimateDiff v2 motion module (temporal layers) and, optionally, "
                        "PortraitTalk-trained weights. Without those, the identity and audio streams are "
                        "untrained (at init). Also returns the checkpoint's CLIP for CLIPTextEncode; use "
                        "CLIPVisionLoader (CLIP ViT-H) for Encode Identity.",
            inputs=[
                io.Combo.Input("checkpoint_name", options=_safetensors("checkpoints"),
                               tooltip="SD-1.5 single-file checkpoint with its VAE (models/checkpoints)."),
                io.Combo.Input("motion_name", options=_safetensors(folders.ANIMATEDIFF),
                               tooltip="AnimateDiff v2 motion module mm_sd_v15_v2 (models/animatediff_models)."),
                io.Combo.Input("weights_name", options=_weights_names(), default=NONE,
                               tooltip="PortraitTalk-trained sd15 weights laid over the result (models/portraittalk); "
                                       "'none' leaves the identity/audio streams and projections untrained."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="auto", optional=True,
                               tooltip=WEIGHT_DTYPE_TOOLTIP),
            ],
            outputs=[io_types.IdentityNet.Output("identity_net"), io_types.AnimateNet.Output("animate_net"),
                     io.Clip.Output("clip")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint_name, motion_name, weights_name, weight_dtype="auto"):
        # names are looked up in the folders' listings, never joined onto a path ('../' cannot escape).
        # ComfyUI shows a validator's one message under every input it takes, so the message names each
        # wrong input with its own value and what it should be.
        problems = [f"{name}: " + folders.unknown_name_message(folder, value, what)
                    for name, value, listed, folder, what in (
                        ("checkpoint_name", checkpoint_name, _safetensors("checkpoints"), "checkpoints",
                         "an SD-1.5 .safetensors checkpoint"),
                        ("motion_name", motion_name, _safetensors(folders.ANIMATEDIFF), folders.ANIMATEDIFF,
                         "an AnimateDiff .safetensors motion module"),
                        ("weights_name", weights_name, _weights_names(), folders.PORTRAITTALK,
                         "a .safetensors PortraitTalk weights file (or 'none')"))
                    if value not in listed]
        if weight_dtype not in WEIGHT_DTYPES:
            problems.append(f"weight_dtype: {weight_dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, checkpoint_name: str, motion_name: str, weights_name: str = NONE,
                weight_dtype: str = "auto") -> io.NodeOutput:
        import comfy.sd
        import folder_paths

        checkpoint = Path(folders.full_path("checkpoints", checkpoint_name))
        motion = Path(folders.full_path(folders.ANIMATEDIFF, motion_name))
        weights = None if weights_name == NONE else Path(folders.full_path(folders.PORTRAITTALK, weights_name))
        pipeline = assembled(checkpoint, motion, weights, weight_dtype)
        clip = comfy.sd.load_checkpoint_guess_config(str(checkpoint), output_vae=False, output_clip=True,
                                                     output_model=False,
                                                     embedding_directory=folder_paths.get_folder_paths("embeddings"))[1]
        return io.NodeOutput(handles.IdentityNet(pipeline), handles.AnimateNet(pipeline), clip)


def assembled(checkpoint: Path, motion: Path, weights: Path | None, weight_dtype_choice: str = "auto"):
    """The pipeline for these files in the chosen precision, assembled once and shared (both outputs' handles, and
    later runs) while ComfyUI keeps an output that holds it, until a file changes."""
    import comfy.model_management as mm
    import comfy.utils

    from ..models.files.assemble import assemble_sd15
    from ..models.pipeline import PortraitTalkPipeline
    from .runtime import weight_dtype

    dtype = weight_dtype(weight_dtype_choice, SD15_PARAMETERS)
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in (checkpoint, motion, weights) if p)
    key += (str(dtype),)
    pipeline = _ASSEMBLED.get(key)
    if pipeline is None:
        gc.collect()  # a model no output holds any more may still wait in a reference cycle: ~9 GB
        bar = comfy.utils.ProgressBar(4)  # reading ~3 GB and allocating ~9 GB takes a while: show it
        components, report = assemble_sd15(checkpoint, motion, weights, dtype=dtype,
                                           progress=lambda done, total, what: bar.update_absolute(done, total))
        (log.warning if report.untrained else log.info)("PortraitTalk full-size model assembled:\n%s", report.summary())
        if components.codec is not None:
            components.codec.float()  # the VAE decodes in fp32: SD's VAE overflows in fp16
        pipeline = _ASSEMBLED[key] = PortraitTalkPipeline(components, device=mm.unet_offload_device(), dtype=dtype)
    return pipeline


NODES = [LoadFullSizeModel]
