"""The bad-input matrix, against a real ComfyUI 0.3.75 server that refuses every non-loopback socket
and runs with HF_HUB_OFFLINE=1 (tests/comfyui_harness/offline.py).

Every case is one API graph. It either succeeds with the properties it should have (frame count,
even sizes, at most two audio channels, audio within -1..1 and as long as the video), or fails with
an `execution_error` raised by one of the pack's nodes whose message names the input and what is
wrong, or is refused by POST /prompt (400) with such a message. After every case the server must
still answer; at the end a valid prompt must still succeed, and nothing may have tried the network.

Hostile model files are written into the server's models/portraittalk and models/audio_encoders;
the pickles carry a `__reduce__` payload that would create a file, which must never appear.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import uuid
from pathlib import Path

import pytest

from comfyui_harness import reliability as R
from comfyui_harness.graphs import MEL
from comfyui_harness.server import PromptRejected

pytestmark = pytest.mark.comfyui

LOADERS = {"PortraitTalkLoadIdentityNet", "PortraitTalkLoadAnimateNet", "PortraitTalkLoadTextEncoder",
           "PortraitTalkLoadImageEncoder"}
PWNED = "PWNED_BY_PICKLE"


# ---- the server and its files ---------------------------------------------------------------------

class Boom:
    """Unpickling this runs `exec`, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def ctx(comfy_server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability-matrix")
    model = R.save_tiny_model(tmp / R.MODEL)
    server = R.start_offline_server(comfy_server_factory, tmp, model_file=model)
    client = server.client()
    client.connect()
    context = Ctx(server, client, tmp, model)
    context.write_model_files()
    try:
        yield context
    finally:
        client.close()
        server.stop()


class Ctx:
    def __init__(self, server, client, tmp: Path, model: Path):
        self.server, self.client, self.tmp, self.model = server, client, tmp, model
        self.marker = tmp / PWNED  # what the pickles' payload would create

    # hostile and broken model files, by name
    def write_model_files(self) -> None:
        import torch
        from safetensors.torch import save_file

        from comfyui_portraittalk.models.files.weights import read_model

        good = self.model.read_bytes()
        state, config = read_model(self.model)
        meta = {"format": "portraittalk", "version": "1", "config": json.dumps(config)}
        add = self.server.add_model

        def header_file(header: dict, data: bytes = b"") -> bytes:
            raw = json.dumps(header).encode()
            return struct.pack("<Q", len(raw)) + raw + data

        add("portraittalk", good[: len(good) // 2], "bad_truncated.safetensors")
        add("portraittalk", good[: 5], "bad_tiny_file.safetensors")
        add("portraittalk", b"", "bad_empty.safetensors")
        rng = __import__("random").Random(0)
        add("portraittalk", bytes(rng.randrange(256) for _ in range(4096)), "bad_random_bytes.safetensors")
        add("portraittalk", struct.pack("<Q", 2 ** 62) + b"{}", "bad_huge_header.safetensors")
        add("portraittalk", struct.pack("<Q", 8) + b"\xff\xfe{{{{{{", "bad_not_json.safetensors")
        add("portraittalk", header_file({"a": {"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
            "bad_dtype.safetensors")
        add("portraittalk", header_file({"a": {"dtype": "F64", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
            "bad_dtype_size.safetensors")
        add("portraittalk", header_file({"a": {"dtype": "F32", "shape": [2 ** 31, 2 ** 31], "data_offsets": [0, 16]}},
                                        bytes(16)), "bad_huge_shape.safetensors")
        add("portraittalk", header_file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
            "bad_overlap.safetensors")
        add("portraittalk", header_file({"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}},
                                        bytes(16)), "bad_outside.safetensors")
        add("portraittalk", header_file({"__metadata__": {"format": "portraittalk", "config": "{"},
                                         "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
            "bad_config_json.safetensors")
        # a file of another model: SD-1.5 UNet keys, no PortraitTalk metadata
        other = self.tmp / "other.safetensors"
        save_file({"conv_in.weight": torch.zeros(320, 4, 3, 3), "conv_in.bias": torch.zeros(320)}, str(other))
        add("portraittalk", other, "wrong_model_sd_unet.safetensors")
        # PortraitTalk metadata, but weights of other shapes
        shrunk = dict(state)
        shrunk["animate_net.unet.conv_in.weight"] = torch.zeros(64, 47, 3, 3)
        save_file(shrunk, str(self.tmp / "mismatch.safetensors"), metadata=meta)
        add("portraittalk", self.tmp / "mismatch.safetensors", "wrong_shapes.safetensors")
        # metadata that is Python, not JSON: must be parsed, never evaluated
        code = f"__import__('pathlib').Path({str(self.marker)!r}).write_text('x')"
        save_file({"a": torch.zeros(1)}, str(self.tmp / "evalme.safetensors"),
                  metadata={"format": "portraittalk", "config": code})
        add("portraittalk", self.tmp / "evalme.safetensors", "bad_config_code.safetensors")
        # a config that claims a giant model, with the tiny model's (small) tensors
        giant = json.loads(json.dumps(config))
        giant["unet"]["block_out_channels"] = [8192, 8192, 8192]
        giant["unet"]["norm_num_groups"] = 8
        save_file(state, str(self.tmp / "giant.safetensors"),
                  metadata={**meta, "config": json.dumps(giant)})
        add("portraittalk", self.tmp / "giant.safetensors", "bad_giant_config.safetensors")
        for name, change in (("bad_huge_widths.safetensors", {"block_out_channels": [65536] * 3}),
                             ("bad_many_layers.safetensors", {"layers_per_block": 5000})):
            config_bomb = json.loads(json.dumps(config))
            config_bomb["unet"].update(change)
            save_file(state, str(self.tmp / name), metadata={**meta, "config": json.dumps(config_bomb)})
            add("portraittalk", self.tmp / name, name)
        # pickles, with a payload that would create the marker file
        evil = pickle.dumps({"weight": Boom(self.marker)})
        for suffix in (".ckpt", ".pt", ".bin", ".pth"):
            add("portraittalk", evil, f"evil{suffix}")
        add("portraittalk", evil, "evil_pickle_named.safetensors")
        torch.save({"w": torch.zeros(2), "evil": Boom(self.marker)}, self.tmp / "evil_zip.pt")
        add("portraittalk", self.tmp / "evil_zip.pt", "evil_torch_zip_named.safetensors")
        # audio encoders: wav2vec2 files that are not
        add("audio_encoders", good[: len(good) // 3], "w2v_truncated.safetensors")
        add("audio_encoders", self.model, "w2v_wrong_model.safetensors")
        add("audio_encoders", evil, "w2v_evil.bin")


# ---- checks ---------------------------------------------------------------------------------------

def ok_video(*, frames: int | None = None, samples: int | None = None, rate: int = 16000, size=(64, 64)):
    """Success with `frames` frames of `size` (w, h); audio ≤ 2 channels, within -1..1 and as long as
    the video (within one frame) in the IMAGE/AUDIO outputs and in the saved mp4."""

    def check(ctx: Ctx, result):
        assert result.outcome == "execution_success", result.describe_error()
        facts = R.inspected(result)
        n = frames if frames is not None else R.expected_frames(samples, rate)
        assert facts["images"]["shape"] == [n, size[1], size[0], 3], facts["images"]
        assert facts["images"]["finite"] and 0.0 <= facts["images"]["min"] <= facts["images"]["max"] <= 1.0
        assert facts["number"] == n
        audio = facts["audio"]
        assert audio["shape"][0] == 1 and audio["shape"][1] <= 2, audio
        assert audio["finite"] and -1.0 <= audio["min"] and audio["max"] <= 1.0, audio
        assert abs(audio["seconds"] - n / R.FPS) <= 1 / R.FPS, audio
        videos = R.saved_videos(result, ctx.server)
        assert len(videos) == 1, result.outputs()
        video = R.video_facts(videos[0])
        assert video["frames"] == n and (video["width"], video["height"]) == size, video
        assert video["width"] % 2 == 0 and video["height"] % 2 == 0
        assert video["audio_channels"] <= 2 and abs(video["audio_seconds"] - n / R.FPS) <= 1 / R.FPS, video

    return check


def error(*needles: str, node_types: set[str] | None = None):
    def check(ctx: Ctx, result):
        R.assert_clear_error(result, *needles, node_types=node_types)

    return check


def rejected(*needles: str):
    def check(ctx: Ctx, rejection: PromptRejected):
        R.assert_rejected(rejection, *needles)

    return check


def no_pickle_ran(inner):
    def check(ctx: Ctx, result):
        inner(ctx, result)
        assert not ctx.marker.exists(), "a pickle's payload ran"

    return check


def audio_case(kind="speech", **kw):
    return lambda ctx: R.full_graph(audio=R.audio_node(kind, **kw), prefix="reliability/audio")


def image_case(*, extra=None, **kw):
    def build(ctx):
        graph = R.full_graph(image=R.image_node(**kw), prefix="reliability/image")
        if extra is not None:
            graph["102"] = R.image_node(**extra)
            graph["9"]["inputs"]["extra_references"] = ["102", 0]
        return graph

    return build


def model_case(name: str):
    return lambda ctx: R.full_graph(model=name, prefix="reliability/model")


def encoder_case(name: str):
    def build(ctx):
        graph = R.full_graph(prefix="reliability/encoder")
        graph["7"]["inputs"]["encoder_name"] = name
        return graph

    return build


def encode_audio_only(seconds: float, rate: int = 16000):
    """Audio → Encode Audio → frame count: long clips without sampling them."""

    def build(ctx):
        return {
            R.AUDIO_NODE: R.audio_node("speech", seconds=seconds, rate=rate),
            "4": {"class_type": "PortraitTalkLoadAnimateNet", "inputs": {"model_name": R.MODEL}},
            "7": {"class_type": "PortraitTalkLoadAudioEncoder", "inputs": {"encoder_name": MEL}},
            "10": {"class_type": "PortraitTalkEncodeAudio",
                   "inputs": {"animate_net": ["4", 0], "audio": [R.AUDIO_NODE, 0], "audio_encoder": ["7", 0],
                              "fps": 0.0}},
            R.INSPECT_NODE: {"class_type": "PTTestInspect",
                             "inputs": {"number": ["10", 1], "value": ["10", 2], "tag": uuid.uuid4().hex}},
        }

    return build


def frame_count(n: int):
    def check(ctx: Ctx, result):
        assert result.outcome == "execution_success", result.describe_error()
        facts = R.inspected(result)
        assert facts["number"] == n and facts["value"] == R.FPS, facts

    return check


def crop_graph(size: int, width: int = 64, height: int = 64, kind: str = "face", batch: int = 1):
    def build(ctx):
        return {
            R.IMAGE_NODE: R.image_node(kind, width, height, batch=batch),
            "20": {"class_type": "PortraitTalkCropFace",
                   "inputs": {"image": [R.IMAGE_NODE, 0], "size": size, "expand": 1.2, "align": False,
                              "backend": "fallback"}},
            R.INSPECT_NODE: {"class_type": "PTTestInspect",
                             "inputs": {"images": ["20", 0], "mask": ["20", 2], "tag": uuid.uuid4().hex}},
        }

    return build


def crop_ok(size: int):
    def check(ctx: Ctx, result):
        assert result.outcome == "execution_success", result.describe_error()
        facts = R.inspected(result)
        assert facts["images"]["shape"] == [1, size, size, 3] and facts["mask"]["shape"] == [1, size, size], facts

    return check


def paste_back_graph(width: int, height: int):
    """Generated frames pasted back onto an odd-sized photograph, then saved as a video."""

    def build(ctx):
        graph = R.full_graph(image=R.image_node("face", width, height), prefix="reliability/pasteback",
                             inspect=False)
        graph["20"] = {"class_type": "PortraitTalkCropFace",
                       "inputs": {"image": [R.IMAGE_NODE, 0], "size": 64, "expand": 1.2, "align": False,
                                  "backend": "fallback"}}
        graph["9"]["inputs"]["image"] = ["20", 0]
        graph["21"] = {"class_type": "PortraitTalkPasteBack",
                       "inputs": {"images": ["13", 0], "crop_info": ["20", 1], "original": [R.IMAGE_NODE, 0],
                                  "feather": 0.1, "colour_match": True}}
        graph["14"]["inputs"]["images"] = ["21", 0]
        graph[R.INSPECT_NODE] = {"class_type": "PTTestInspect",
                                 "inputs": {"images": ["21", 0], "tag": uuid.uuid4().hex}}
        return graph

    return build


def even_video(width: int, height: int, frames: int):
    def check(ctx: Ctx, result):
        assert result.outcome == "execution_success", result.describe_error()
        facts = R.inspected(result)
        assert facts["images"]["shape"] == [frames, height - height % 2, width - width % 2, 3], facts
        video = R.video_facts(R.saved_videos(result, ctx.server)[0])
        assert (video["width"], video["height"]) == (width - width % 2, height - height % 2), video
        assert video["frames"] == frames

    return check


def preview_graph(width: int, height: int, frames: int, channels: int = 1, seconds: float | None = None):
    def build(ctx):
        return {
            R.IMAGE_NODE: R.image_node("gradient", width, height, batch=frames),
            R.AUDIO_NODE: R.audio_node("speech", seconds=frames / R.FPS if seconds is None else seconds,
                                       channels=channels),
            "30": {"class_type": "PortraitTalkPreviewVideo",
                   "inputs": {"images": [R.IMAGE_NODE, 0], "fps": 25.0, "audio": [R.AUDIO_NODE, 0]}},
        }

    return build


def preview_ok(width: int, height: int, frames: int):
    def check(ctx: Ctx, result):
        assert result.outcome == "execution_success", result.describe_error()
        item = result.outputs("30")["portraittalk_video"][0]
        path = ctx.server.temp_dir / item["subfolder"] / item["filename"]
        video = R.video_facts(path)
        assert video["width"] % 2 == 0 and video["height"] % 2 == 0, video
        assert video["width"] >= width and video["height"] >= height and video["frames"] == frames, video
        assert video["audio_channels"] <= 2

    return check


def with_graph_change(build, change):
    def wrapped(ctx):
        graph = build(ctx)
        change(graph)
        return graph

    return wrapped


SHORT = int(0.4 * 16000)

CASES = [
    # ---- audio ---------------------------------------------------------------------------------------
    R.Case("audio-empty", audio_case(samples=0), error("audio", "empty", node_types={"PortraitTalkEncodeAudio"})),
    R.Case("audio-one-sample", audio_case(samples=1), error("audio", "1 sample")),
    R.Case("audio-silence", audio_case("silence"), ok_video(samples=SHORT)),
    R.Case("audio-nan", audio_case("nan"), error("audio", "NaN", node_types={"PortraitTalkEncodeAudio"})),
    R.Case("audio-inf", audio_case("inf"), error("audio", "infinite", node_types={"PortraitTalkEncodeAudio"})),
    R.Case("audio-8khz", audio_case(rate=8000), ok_video(samples=int(0.4 * 8000), rate=8000)),
    R.Case("audio-96khz", audio_case(rate=96000), ok_video(samples=int(0.4 * 96000), rate=96000)),
    R.Case("audio-44.1khz-odd-length", audio_case(samples=17641, rate=44100), ok_video(samples=17641, rate=44100)),
    R.Case("audio-6-channels", audio_case(channels=6), ok_video(samples=SHORT)),
    R.Case("audio-stereo", audio_case(channels=2), ok_video(samples=SHORT)),
    R.Case("audio-batch-of-2", audio_case(batch=2), error("audio", "batch of 2", node_types={"PortraitTalkEncodeAudio"})),
    R.Case("audio-int16-range-floats", audio_case("int16_range"), ok_video(samples=SHORT)),
    R.Case("audio-beyond-int16", audio_case("huge"), error("audio", "-1..1", node_types={"PortraitTalkEncodeAudio"})),
    R.Case("audio-rate-zero", audio_case(rate=0, samples=SHORT), error("audio", "sample rate")),
    R.Case("audio-rate-negative", audio_case(rate=-16000, samples=SHORT), error("audio", "sample rate")),
    R.Case("audio-rate-absurdly-low", audio_case(rate=1, samples=SHORT), error("audio", "sample rate")),
    R.Case("audio-rate-absurdly-high", audio_case(rate=50_000_000, samples=SHORT), error("audio", "sample rate")),
    R.Case("audio-11-minutes", encode_audio_only(660.0), frame_count(16500)),
    # ---- images --------------------------------------------------------------------------------------
    R.Case("image-rgba", image_case(kind="rgba"), ok_video(samples=SHORT)),
    R.Case("image-grayscale-as-rgb", image_case(kind="gray_as_rgb"), ok_video(samples=SHORT)),
    R.Case("image-one-channel", image_case(kind="one_channel"), ok_video(samples=SHORT)),
    R.Case("image-1x1", image_case(width=1, height=1), ok_video(samples=SHORT)),
    R.Case("image-8k", image_case(width=7680, height=4320), ok_video(samples=SHORT)),
    R.Case("image-odd-non-square", image_case(width=101, height=37), ok_video(samples=SHORT)),
    R.Case("image-batch-of-3", image_case(batch=3), ok_video(samples=SHORT)),
    R.Case("image-mixed-sizes", image_case(width=64, height=64, extra={"kind": "rgba", "width": 37, "height": 100,
                                                                       "batch": 2}), ok_video(samples=SHORT)),
    R.Case("image-nan", image_case(kind="nan"), error("image", "NaN", node_types={"PortraitTalkEncodeIdentity"})),
    R.Case("image-empty-batch", image_case(batch=0), error("image", node_types={"PortraitTalkEncodeIdentity"})),
    R.Case("crop-face-odd-size", crop_graph(17), rejected("size", "even"), rejected=True),
    R.Case("crop-face-1x1-photo", crop_graph(16, 1, 1), crop_ok(16)),
    R.Case("crop-face-empty-batch", crop_graph(64, batch=0), error("image", "empty")),
    R.Case("crop-face-one-channel", crop_graph(64, kind="one_channel"), crop_ok(64)),
    R.Case("crop-face-rgba", crop_graph(64, kind="rgba"), crop_ok(64)),
    R.Case("crop-face-8k-photo", crop_graph(64, 7680, 4320), crop_ok(64)),
    R.Case("paste-back-odd-photo", paste_back_graph(101, 75), even_video(101, 75, R.expected_frames(SHORT, 16000))),
    R.Case("preview-odd-frames-6ch", preview_graph(33, 17, 5, channels=6), preview_ok(33, 17, 5)),
    R.Case("preview-empty-batch", preview_graph(32, 32, 0, seconds=0.2), error("images", "empty")),
    # ---- model files ---------------------------------------------------------------------------------
    R.Case("model-truncated", model_case("bad_truncated.safetensors"),
           error("bad_truncated.safetensors", "truncated", node_types=LOADERS)),
    R.Case("model-5-bytes", model_case("bad_tiny_file.safetensors"),
           error("bad_tiny_file.safetensors", "too short", node_types=LOADERS)),
    R.Case("model-empty-file", model_case("bad_empty.safetensors"),
           error("bad_empty.safetensors", "too short", node_types=LOADERS)),
    R.Case("model-random-bytes", model_case("bad_random_bytes.safetensors"),
           error("bad_random_bytes.safetensors", "header", node_types=LOADERS)),
    R.Case("model-huge-header-length", model_case("bad_huge_header.safetensors"),
           error("bad_huge_header.safetensors", "header", node_types=LOADERS)),
    R.Case("model-header-not-json", model_case("bad_not_json.safetensors"),
           error("bad_not_json.safetensors", "not JSON", node_types=LOADERS)),
    R.Case("model-unknown-dtype", model_case("bad_dtype.safetensors"),
           error("bad_dtype.safetensors", "dtype", node_types=LOADERS)),
    R.Case("model-dtype-size-mismatch", model_case("bad_dtype_size.safetensors"),
           error("bad_dtype_size.safetensors", "bytes", node_types=LOADERS)),
    R.Case("model-huge-shape", model_case("bad_huge_shape.safetensors"),
           error("bad_huge_shape.safetensors", "shape", node_types=LOADERS)),
    R.Case("model-overlapping-offsets", model_case("bad_overlap.safetensors"),
           error("bad_overlap.safetensors", "overlap", node_types=LOADERS)),
    R.Case("model-offsets-outside-file", model_case("bad_outside.safetensors"),
           error("bad_outside.safetensors", "outside the file", node_types=LOADERS)),
    R.Case("model-config-not-json", model_case("bad_config_json.safetensors"),
           error("bad_config_json.safetensors", "config is invalid", node_types=LOADERS)),
    R.Case("model-config-is-code", model_case("bad_config_code.safetensors"),
           no_pickle_ran(error("bad_config_code.safetensors", "config is invalid", node_types=LOADERS))),
    R.Case("model-giant-config", model_case("bad_giant_config.safetensors"),
           error("bad_giant_config.safetensors", "does not match", node_types=LOADERS)),
    R.Case("model-config-65536-wide", model_case("bad_huge_widths.safetensors"),
           error("bad_huge_widths.safetensors", "too large", node_types=LOADERS)),
    R.Case("model-config-5000-layers-per-block", model_case("bad_many_layers.safetensors"),
           error("bad_many_layers.safetensors", "too large", node_types=LOADERS), timeout=120),
    R.Case("model-of-another-model", model_case("wrong_model_sd_unet.safetensors"),
           error("wrong_model_sd_unet.safetensors", "not a PortraitTalk model", node_types=LOADERS)),
    R.Case("model-wrong-shapes", model_case("wrong_shapes.safetensors"),
           error("wrong_shapes.safetensors", "conv_in.weight", node_types=LOADERS)),
    R.Case("model-pickle-named-safetensors", model_case("evil_pickle_named.safetensors"),
           no_pickle_ran(error("evil_pickle_named.safetensors", "header", node_types=LOADERS))),
    R.Case("model-torch-zip-named-safetensors", model_case("evil_torch_zip_named.safetensors"),
           no_pickle_ran(error("evil_torch_zip_named.safetensors", "header", node_types=LOADERS))),
    *[R.Case(f"model-pickle{suffix}", model_case(f"evil{suffix}"),
             no_pickle_ran(rejected(f"evil{suffix}", "pickle")), rejected=True)
      for suffix in (".ckpt", ".pt", ".bin", ".pth")],
    R.Case("model-missing-file", model_case("no_such_model.safetensors"), rejected("no_such_model.safetensors"),
           rejected=True),
    R.Case("model-path-traversal", model_case("../../../../etc/passwd"), rejected("../../../../etc/passwd"),
           rejected=True),
    R.Case("model-path-traversal-to-a-real-model", model_case(f"../portraittalk/{R.MODEL}"),
           rejected(f"../portraittalk/{R.MODEL}"), rejected=True),
    R.Case("model-absolute-path", model_case("/etc/hostname"), rejected("/etc/hostname"), rejected=True),
    R.Case("encoder-path-traversal", encoder_case(f"../portraittalk/{R.MODEL}"), rejected("portraittalk"),
           rejected=True),
    R.Case("encoder-truncated-wav2vec2", encoder_case("w2v_truncated.safetensors"),
           error("w2v_truncated.safetensors", "truncated", node_types={"PortraitTalkLoadAudioEncoder"})),
    R.Case("encoder-wrong-model", encoder_case("w2v_wrong_model.safetensors"),
           error("w2v_wrong_model.safetensors", "not a wav2vec2 model", node_types={"PortraitTalkLoadAudioEncoder"})),
    R.Case("encoder-pickle", encoder_case("w2v_evil.bin"), no_pickle_ran(rejected("w2v_evil.bin", "pickle")),
           rejected=True),
    # ---- sampler settings ----------------------------------------------------------------------------
    R.Case("sampler-overlap-not-below-window", with_graph_change(
        audio_case(), lambda g: g["12"]["inputs"].update(window=8, overlap=8)), rejected("overlap"), rejected=True),
    R.Case("sampler-window-above-32", with_graph_change(
        audio_case(), lambda g: g["12"]["inputs"].update(window=1000, overlap=4)), rejected("window", "32"),
        rejected=True),
    R.Case("sampler-window-zero", with_graph_change(
        audio_case(), lambda g: g["12"]["inputs"].update(window=0, overlap=0)), rejected("window"), rejected=True),
    R.Case("sampler-overlap-negative", with_graph_change(
        audio_case(), lambda g: g["12"]["inputs"].update(window=8, overlap=-3)), rejected("overlap"), rejected=True),
    R.Case("sampler-structure-mask-count", with_graph_change(audio_case(), lambda g: (
        g.update({"40": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}},
                  "41": {"class_type": "RepeatImageBatch", "inputs": {"image": ["42", 0], "amount": 3}},
                  "42": {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}},
                  "43": {"class_type": "ImageToMask", "inputs": {"image": ["41", 0], "channel": "red"}}}),
        g["12"]["inputs"].update(structure=["43", 0]))), error("structure", "3 masks")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(ctx: Ctx, case: R.Case):
    graph = case.build(ctx)
    for node in graph.values():  # every run is new: no case is answered from the cache of another
        if node["class_type"] in ("PTTestAudio", "PTTestImage", "PTTestInspect"):
            node["inputs"]["tag"] = f"{case.id}-{uuid.uuid4().hex[:6]}"
    try:
        if case.rejected:
            with pytest.raises(PromptRejected) as info:
                ctx.client.queue(graph)
            case.check(ctx, info.value)
        else:
            result = ctx.client.run(graph, timeout=case.timeout, expect=None)
            case.check(ctx, result)
    finally:
        R.assert_serving(ctx.server, ctx.client)


def test_matrix_is_large_enough():
    assert len(CASES) >= 30


def test_a_valid_prompt_still_succeeds_and_nothing_went_online(ctx: Ctx):
    result = ctx.client.run(R.full_graph(audio=R.audio_node(seconds=0.4, tag=uuid.uuid4().hex), seed=11,
                                         prefix="reliability/after-matrix"), timeout=600, expect=None)
    ok_video(samples=SHORT)(ctx, result)
    assert not ctx.marker.exists()
    assert R.refused_attempts(ctx.server) == "", R.refused_attempts(ctx.server)
