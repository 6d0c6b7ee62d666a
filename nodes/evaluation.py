"""Evaluation node: ADFD (and LMD, CSIM) of a generated video, as JSON, a plot, and a panel in the node."""

from __future__ import annotations

import json
import math
import os
import uuid

import numpy as np
from comfy_api.v0_0_2 import io

UI_KEY = "portraittalk_eval"  # the web extension (web/portraittalk.js) reads this ui key
SUBFOLDER = "portraittalk"
BACKENDS = ["auto", "colour", "mediapipe", "fallback"]
ADFD_PARTS = ("score", "spatial", "temporal", "jitter", "lag", "landmarks", "spatial_mode", "version", "notes")


class Evaluate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkEvaluate", display_name="Evaluate Talking Face (PortraitTalk)",
            category="PortraitTalk/evaluation", is_output_node=True,
            description="Scores a generated video against its audio: ADFD (mouth shapes, timing and steadiness; "
                        "this project's reading of the paper's metric, see evaluation/README.md), LMD against a "
                        "ground-truth video and CSIM against the reference. Shows the score, its parts and a "
                        "mouth-vs-audio plot in the node. A metric that cannot be measured on these frames (no "
                        "face, too short) is reported with its reason instead of stopping the workflow.",
            inputs=[
                io.Image.Input("images", tooltip="The generated frames, e.g. 'images' from 'Decode Frames'."),
                io.Audio.Input("audio", tooltip="The audio the video should follow (any rate, mono or stereo)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Frame rate of the frames; connect 'fps' from 'Decode Frames'."),
                io.Combo.Input("backend", options=BACKENDS, default="auto",
                               tooltip="Face analysis: 'colour' for SynthTalk / demo-model frames, 'mediapipe' "
                                       "for real faces (pip install comfyui-portraittalk[faces]), 'fallback' has "
                                       "no landmarks (ADFD and LMD then report why they are missing); 'auto' "
                                       "takes mediapipe when installed, else the fallback."),
                io.Boolean.Input("adfd", default=True,
                                 tooltip="ADFD in [0, 1], higher is better: 0.4·spatial + 0.4·temporal + "
                                         "0.2·jitter, with the audio-video lag in frames. Needs 5+ frames."),
                io.Boolean.Input("lmd", default=True,
                                 tooltip="Landmark distance to the ground-truth video (lower is better); skipped "
                                         "without ground_truth."),
                io.Boolean.Input("csim", default=True,
                                 tooltip="Identity similarity to the reference (colour-histogram embedder, not a "
                                         "face-recognition model); skipped without reference."),
                io.Image.Input("reference", optional=True,
                               tooltip="The reference portrait (first image of the batch), for CSIM."),
                io.Image.Input("ground_truth", optional=True,
                               tooltip="The real video of the same speech, for LMD and a landmark-based ADFD "
                                       "spatial part."),
            ],
            outputs=[io.String.Output("scores", display_name="scores",
                                      tooltip="JSON: every metric with the model and version behind it."),
                     io.Image.Output("plot", display_name="plot",
                                     tooltip="Mouth aperture (red) against loudness (blue) over time.")],
        )

    @classmethod
    def validate_inputs(cls, fps=25.0, backend="auto", adfd=True, lmd=True, csim=True):
        if fps is not None and not _positive(fps):  # None: linked, known only when it runs
            return f"fps must be a positive number, got {fps!r}"
        if backend is not None and backend not in BACKENDS:  # 0.3.75 does not check V3 combo values itself
            return f"backend must be one of {BACKENDS}, got {backend!r}"
        if adfd is False and lmd is False and csim is False:
            return "select at least one metric (adfd, lmd, csim)"
        return True

    @classmethod
    def execute(cls, images, audio, fps, backend, adfd, lmd, csim, reference=None,
                ground_truth=None) -> io.NodeOutput:
        import folder_paths
        import torch
        from PIL import Image

        from ..evaluation import evaluate_each, finite, message_image, plot_mouth_vs_audio, summary_row
        from ..media import audio_clip

        if not _positive(fps):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        selected = [name for name, on in (("adfd", adfd), ("lmd", lmd), ("csim", csim)) if on]
        if not selected:
            raise ValueError("select at least one metric (adfd, lmd, csim)")
        frames = _frames(images, "images")
        waveform, rate = audio_clip(audio)  # the first item of an audio batch
        reference = None if reference is None else _frames(reference, "reference")[0]
        ground_truth = None if ground_truth is None else _frames(ground_truth, "ground_truth")
        folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
        result = evaluate_each(frames, waveform, rate, float(fps), selected, backend, reference=reference,
                               ground_truth=ground_truth, cache_dir=os.path.join(folder, "faces"))

        if "series" in result:
            plot = plot_mouth_vs_audio(result)
        else:
            plot = message_image(result["metrics"].get("adfd", {}).get("error") or "ADFD was not measured")
        name = f"eval_{uuid.uuid4().hex[:12]}.png"
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(plot).save(os.path.join(folder, name), compress_level=1)

        result = finite(result)  # NaN is not JSON: the browser's JSON.parse would reject the message
        scores = {k: v for k, v in result.items() if k != "series"}
        adfd_result = result["metrics"].get("adfd", {})
        panel = {
            "adfd": {k: adfd_result[k] for k in ADFD_PARTS + ("error", "skipped") if k in adfd_result},
            "summary": summary_row(result),
            "other": {k: _headline(v) for k, v in result["metrics"].items() if k != "adfd"},
            "frames": result["frames"], "fps": result["fps"],
            "face_backend": result.get("face_backend", {}).get("name"),
            "frames_without_face": len(result.get("frames_without_face", [])),
            "plot": {"filename": name, "subfolder": SUBFOLDER, "type": "temp"},
        }
        plot_tensor = torch.from_numpy(plot.astype(np.float32) / 255.0)[None]
        return io.NodeOutput(json.dumps(scores, indent=2), plot_tensor, ui={UI_KEY: [panel]})


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _frames(images, name: str) -> np.ndarray:
    """IMAGE → uint8 numpy [F, H, W, 3] (a quarter of the float video's memory); an error that names
    the input for anything else."""
    from ..media import as_frames, frame_uint8

    frames = as_frames(images, name)
    return np.stack([frame_uint8(f) for f in frames])


def _headline(metric: dict) -> dict:
    """What the node's panel shows of a metric other than ADFD."""
    keep = ("value", "skipped", "error", "model", "version")
    out = {k: metric[k] for k in keep if k in metric}
    if isinstance(out.get("model"), dict):
        out["model"] = out["model"].get("name")
    return out


NODES = [Evaluate]
