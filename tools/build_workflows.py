"""Write the example workflows in `workflows/` (UI format, for drag and drop) and `workflows/api/` (API format,
for headless POST /prompt), from the graphs defined here.

The UI files need each node's widget order, which comes from a real ComfyUI's /object_info:

    python tools/build_workflows.py            # starts the test harness's ComfyUI to read /object_info
    python tools/build_workflows.py --object-info object_info.json

Edit the graphs here, not the JSON files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from comfyui_harness.workflow import input_names, input_spec, is_widget, widget_slots  # noqa: E402

DEMO = "portraittalk_demo.safetensors (bundled)"
TALL_NODES = {"PortraitTalkPreviewVideo": [400, 470], "PortraitTalkEvaluate": [480, 540]}  # their players/plots
MEL = "mel (built in, no weights)"


def generation(prompt: str = "", *, steps: int = 20, text_guidance: float = 1.0, window: int = 16, overlap: int = 4,
               image=("demo", 0), audio=("demo", 1), extra_references=None, prefix: str = "portraittalk/basic",
               preview: bool = True, evaluate: bool = True) -> dict:
    """The whole path, node by node: loaders → text/identity/audio → patch → sampler → decode → video."""
    g = {
        "demo": ("PortraitTalkDemoInputs", {"reference": "SynthTalk face (demo)", "speech": "English sentence (espeak-ng)"}),
        "identity_net": ("PortraitTalkLoadIdentityNet", {"model_name": DEMO}),
        "animate_net": ("PortraitTalkLoadAnimateNet", {"model_name": DEMO}),
        "text_encoder": ("PortraitTalkLoadTextEncoder", {"model_name": DEMO}),
        "image_encoder": ("PortraitTalkLoadImageEncoder", {"model_name": DEMO}),
        "audio_encoder": ("PortraitTalkLoadAudioEncoder", {"encoder_name": MEL}),
        "text": ("PortraitTalkTextEncode", {"text_encoder": ("text_encoder", 0), "text": prompt}),
        "identity": ("PortraitTalkEncodeIdentity", {"identity_net": ("identity_net", 0), "image": image,
                                                     "image_encoder": ("image_encoder", 0), "positive": ("text", 0),
                                                     "negative": ("text", 1)}),
        "audio_embeds": ("PortraitTalkEncodeAudio", {"animate_net": ("animate_net", 0), "audio": audio,
                                                     "audio_encoder": ("audio_encoder", 0), "fps": 0.0}),
        "patch": ("PortraitTalkApplyDecoupledAttention", {
            "animate_net": ("animate_net", 0), "identity": ("identity", 0), "audio_embeds": ("audio_embeds", 0),
            "positive": ("text", 0), "negative": ("text", 1), "text_scale": 1.0, "identity_scale": 1.0,
            "audio_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        "sampler": ("PortraitTalkSampler", {"animate_net": ("patch", 0), "steps": steps, "scheduler": "ddim",
                                            "karras": False, "seed": 0, "text_guidance": text_guidance,
                                            "audio_guidance": 1.0, "window": window, "overlap": overlap, "frames": 0}),
        "decode": ("PortraitTalkDecode", {"latent": ("sampler", 0), "animate_net": ("animate_net", 0), "audio": audio,
                                          "chunk": 8}),
        "video": ("CreateVideo", {"images": ("decode", 0), "fps": ("decode", 1), "audio": ("decode", 2)}),
        "save": ("SaveVideo", {"video": ("video", 0), "filename_prefix": prefix, "format": "auto", "codec": "auto"}),
    }
    if extra_references is not None:
        g["identity"][1]["extra_references"] = extra_references
    if preview:
        g["preview"] = ("PortraitTalkPreviewVideo", {"images": ("decode", 0), "fps": ("decode", 1),
                                                     "audio": ("decode", 2)})
    if evaluate:
        g["evaluate"] = ("PortraitTalkEvaluate", {"images": ("decode", 0), "audio": ("decode", 2), "fps": ("decode", 1),
                                                  "backend": "colour", "adfd": True, "lmd": True, "csim": True,
                                                  "reference": image})
    return g


def full_frame() -> dict:
    """A real photo in, the whole photo out: Crop Face → generation on the crop → Paste Back Face → video. With the
    demo model (trained on SynthTalk only) this shows the path, not photo quality; the Hallo workflow is for that."""
    g = generation(image=("crop", 0), prefix="portraittalk/full_frame", evaluate=False)
    g["demo"] = ("PortraitTalkDemoInputs", {"reference": "Photo: astronaut Eileen Collins",
                                            "speech": "English sentence (espeak-ng)"})
    g["crop"] = ("PortraitTalkCropFace", {"image": ("demo", 0), "size": 64, "expand": 1.4, "align": False,
                                          "backend": "auto"})
    g["paste"] = ("PortraitTalkPasteBack", {"images": ("decode", 0), "crop_info": ("crop", 1), "original": ("demo", 0),
                                            "feather": 0.15, "colour_match": True})
    g["video"] = ("CreateVideo", {"images": ("paste", 0), "fps": ("decode", 1), "audio": ("decode", 2)})
    g["preview"] = ("PortraitTalkPreviewVideo", {"images": ("paste", 0), "fps": ("decode", 1), "audio": ("decode", 2)})
    return g


HALLO = "hallo_net.portraittalk.safetensors"


def hallo_photo() -> dict:
    """A real photo speaking with Hallo's public weights (docs/hallo.md says where each file goes): crop →
    Hallo model (ArcFace identity, wav2vec2 audio, motion frames) → paste-back → video with sound."""
    return {
        "photo": ("LoadImage", {"image": "grace_hopper.jpg"}),
        "speech": ("LoadAudio", {"audio": "speech.wav"}),
        "crop": ("PortraitTalkCropFace", {"image": ("photo", 0), "size": 512, "expand": 1.2, "align": False,
                                          "backend": "auto"}),
        "identity_net": ("PortraitTalkLoadIdentityNet", {"model_name": HALLO}),
        "animate_net": ("PortraitTalkLoadAnimateNet", {"model_name": HALLO}),
        "vae": ("VAELoader", {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}),
        "audio_encoder": ("PortraitTalkLoadAudioEncoder", {"encoder_name": "wav2vec2-base-960h.safetensors"}),
        "identity": ("PortraitTalkEncodeIdentity", {"identity_net": ("identity_net", 0), "image": ("crop", 0),
                                                     "vae": ("vae", 0)}),
        "audio_embeds": ("PortraitTalkEncodeAudio", {"animate_net": ("animate_net", 0), "audio": ("speech", 0),
                                                     "audio_encoder": ("audio_encoder", 0), "fps": 25.0}),
        "patch": ("PortraitTalkApplyDecoupledAttention", {
            "animate_net": ("animate_net", 0), "identity": ("identity", 0), "audio_embeds": ("audio_embeds", 0),
            "text_scale": 0.0, "identity_scale": 1.0, "audio_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        "hallo": ("PortraitTalkHalloSettings", {"animate_net": ("patch", 0), "pose_weight": 1.0, "face_weight": 1.0,
                                                "lip_weight": 1.0, "long_audio": "motion_frames", "vae": ("vae", 0),
                                                "reference_rows": "hallo", "noise": "hallo"}),
        "sampler": ("PortraitTalkSampler", {"animate_net": ("hallo", 0), "steps": 40, "scheduler": "ddim",
                                            "karras": False, "seed": 42, "text_guidance": 1.0, "audio_guidance": 3.5,
                                            "window": 16, "overlap": 0, "frames": 0}),
        "decode": ("PortraitTalkDecode", {"latent": ("sampler", 0), "vae": ("vae", 0), "audio": ("speech", 0),
                                          "chunk": 8}),
        "paste": ("PortraitTalkPasteBack", {"images": ("decode", 0), "crop_info": ("crop", 1),
                                            "original": ("photo", 0), "feather": 0.1, "colour_match": True}),
        "video": ("CreateVideo", {"images": ("paste", 0), "fps": ("decode", 1), "audio": ("decode", 2)}),
        "save": ("SaveVideo", {"video": ("video", 0), "filename_prefix": "portraittalk/hallo_photo", "format": "auto",
                               "codec": "auto"}),
    }


SD15_FILES = {"checkpoint": "v1-5-pruned-emaonly.safetensors", "motion": "mm_sd_v15_v2.safetensors",
              "clip_vision": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
              "wav2vec2": "wav2vec2-base-960h.safetensors"}


def full_size_sd15() -> dict:
    """The full-size sd15 family from files ComfyUI users already have (docs/full-size-models.md): crop →
    Load Full-Size Model (SD-1.5 + AnimateDiff v2 [+ PortraitTalk weights]) with core CLIP vision and text
    → paste-back → video with sound. Untrained identity/audio streams until PortraitTalk weights exist."""
    return {
        "photo": ("LoadImage", {"image": "astronaut.jpg"}),
        "speech": ("LoadAudio", {"audio": "speech.wav"}),
        "crop": ("PortraitTalkCropFace", {"image": ("photo", 0), "size": 512, "expand": 1.4, "align": False,
                                          "backend": "auto"}),
        "model": ("PortraitTalkLoadFullSizeModel", {"checkpoint_name": SD15_FILES["checkpoint"],
                                                    "motion_name": SD15_FILES["motion"], "weights_name": "none"}),
        "clip_vision": ("CLIPVisionLoader", {"clip_name": SD15_FILES["clip_vision"]}),
        "positive": ("CLIPTextEncode", {"clip": ("model", 2), "text": "a person talking, smiling"}),
        "negative": ("CLIPTextEncode", {"clip": ("model", 2), "text": ""}),
        "audio_encoder": ("PortraitTalkLoadAudioEncoder", {"encoder_name": SD15_FILES["wav2vec2"]}),
        "identity": ("PortraitTalkEncodeIdentity", {"identity_net": ("model", 0), "image": ("crop", 0),
                                                     "clip_vision": ("clip_vision", 0), "positive": ("positive", 0),
                                                     "negative": ("negative", 0)}),
        "audio_embeds": ("PortraitTalkEncodeAudio", {"animate_net": ("model", 1), "audio": ("speech", 0),
                                                     "audio_encoder": ("audio_encoder", 0), "fps": 25.0}),
        "patch": ("PortraitTalkApplyDecoupledAttention", {
            "animate_net": ("model", 1), "identity": ("identity", 0), "audio_embeds": ("audio_embeds", 0),
            "positive": ("positive", 0), "negative": ("negative", 0), "text_scale": 1.0, "identity_scale": 1.0,
            "audio_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        "sampler": ("PortraitTalkSampler", {"animate_net": ("patch", 0), "steps": 25, "scheduler": "ddim",
                                            "karras": False, "seed": 42, "text_guidance": 3.5, "audio_guidance": 1.0,
                                            "window": 16, "overlap": 4, "frames": 0}),
        "decode": ("PortraitTalkDecode", {"latent": ("sampler", 0), "animate_net": ("model", 1),
                                          "audio": ("speech", 0), "chunk": 4}),
        "paste": ("PortraitTalkPasteBack", {"images": ("decode", 0), "crop_info": ("crop", 1),
                                            "original": ("photo", 0), "feather": 0.1, "colour_match": True}),
        "video": ("CreateVideo", {"images": ("paste", 0), "fps": ("decode", 1), "audio": ("decode", 2)}),
        "save": ("SaveVideo", {"video": ("video", 0), "filename_prefix": "portraittalk/full_size_sd15",
                               "format": "auto", "codec": "auto"}),
    }


def workflows() -> dict[str, dict]:
    basic = generation()
    text = generation("a face with glasses and a hat on a blue background, smiling", text_guidance=2.0,
                      prefix="portraittalk/text")
    multi = generation(prefix="portraittalk/multireference", extra_references=("demo_hd", 0))
    multi["demo_hd"] = ("PortraitTalkDemoInputs", {"reference": "SynthTalk face, 256 px (demo)",
                                                   "speech": "English sentence (espeak-ng)"})
    long = generation(window=16, overlap=6, audio=("long_audio", 0), prefix="portraittalk/long", evaluate=False)
    long["twice"] = ("AudioConcat", {"audio1": ("demo", 1), "audio2": ("demo", 1), "direction": "after"})
    long["long_audio"] = ("AudioConcat", {"audio1": ("twice", 0), "audio2": ("twice", 0), "direction": "after"})
    return {"portraittalk_basic": basic, "portraittalk_text": text, "portraittalk_multireference": multi,
            "portraittalk_long_audio": long, "portraittalk_full_frame": full_frame(),
            "portraittalk_hallo_photo": hallo_photo(), "portraittalk_full_size_sd15": full_size_sd15()}


# ------------------------------------------------------------------------------------------ conversion


def to_api(graph: dict) -> dict:
    ids = {name: str(i + 1) for i, name in enumerate(graph)}
    api = {}
    for name, (node_type, inputs) in graph.items():
        api[ids[name]] = {"class_type": node_type, "_meta": {"title": name.replace("_", " ")},
                          "inputs": {k: ([ids[v[0]], v[1]] if isinstance(v, tuple) else v) for k, v in inputs.items()}}
    return api


def _depths(graph: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            parents = [v[0] for v in graph[name][1].values() if isinstance(v, tuple)]
            depth[name] = 1 + max((visit(p) for p in parents), default=-1)
        return depth[name]

    for name in graph:
        visit(name)
    return depth


def to_ui(graph: dict, object_info: dict) -> dict:
    """A LiteGraph workflow: nodes laid out in columns by depth, links, and widgets_values in the order
    the frontend expects."""
    ids = {name: i + 1 for i, name in enumerate(graph)}
    depth = _depths(graph)
    heights: dict[int, int] = {}  # column → next free y
    nodes, links = [], []
    outputs_links: dict[tuple[int, int], list[int]] = {}
    for name, (node_type, inputs) in graph.items():
        info = object_info[node_type]
        for input_name, value in inputs.items():
            if isinstance(value, tuple):
                link_id = len(links) + 1
                spec = input_spec(info, input_name)
                links.append([link_id, ids[value[0]], value[1], ids[name], input_name, spec[1] if spec else "*"])
                outputs_links.setdefault((ids[value[0]], value[1]), []).append(link_id)
    for name, (node_type, inputs) in graph.items():
        info = object_info[node_type]
        column = depth[name]
        size = TALL_NODES.get(node_type, [300, 120 + 26 * len(widget_slots(info)[0])])
        y = heights.get(column, 60)
        heights[column] = y + size[1] + 60
        node_inputs, widget_values = [], []
        for input_name in input_names(info):
            spec = input_spec(info, input_name)
            typ, opts = spec[1], spec[2]
            linked = isinstance(inputs.get(input_name), tuple)
            if not is_widget(typ, opts) or linked:
                link = next((l[0] for l in links if l[3] == ids[name] and l[4] == input_name), None)
                entry = {"name": input_name, "type": typ if isinstance(typ, str) else "COMBO", "link": link}
                if is_widget(typ, opts):
                    entry["widget"] = {"name": input_name}
                node_inputs.append(entry)
        for slot in widget_slots(info)[0]:
            if slot.kind == "input":
                value = inputs.get(slot.name)
                if isinstance(value, tuple):
                    value = slot.options.get("default")
                widget_values.append(value if value is not None else slot.options.get("default"))
            else:
                widget_values.append("fixed")
        out_types = info.get("output", [])
        out_names = info.get("output_name", out_types)
        node_outputs = [{"name": out_names[i], "type": t, "slot_index": i,
                         "links": outputs_links.get((ids[name], i), [])} for i, t in enumerate(out_types)]
        nodes.append({"id": ids[name], "type": node_type, "pos": [60 + 380 * column, y],
                      "size": size, "flags": {}, "order": depth[name], "mode": 0,
                      "title": info.get("display_name", node_type), "inputs": node_inputs, "outputs": node_outputs,
                      "properties": {"Node name for S&R": node_type}, "widgets_values": widget_values})
    for link in links:  # LiteGraph links name the target slot by index
        target = next(n for n in nodes if n["id"] == link[3])
        link[4] = next(i for i, entry in enumerate(target["inputs"]) if entry["name"] == link[4])
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def object_info_from_server() -> dict:
    import tempfile

    from comfyui_harness.environment import ensure_comfyui
    from comfyui_harness.server import ComfyServer

    server = ComfyServer(ensure_comfyui(), Path(tempfile.mkdtemp()), with_testnodes=False)
    server.start()
    try:
        client = server.client()
        return client.object_info()
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object-info", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "workflows")
    args = parser.parse_args(argv)
    info = json.loads(args.object_info.read_text()) if args.object_info else object_info_from_server()
    (args.out / "api").mkdir(parents=True, exist_ok=True)
    for name, graph in workflows().items():
        (args.out / f"{name}.json").write_text(json.dumps(to_ui(graph, info), indent=1) + "\n")
        (args.out / "api" / f"{name}.json").write_text(json.dumps(to_api(graph), indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
