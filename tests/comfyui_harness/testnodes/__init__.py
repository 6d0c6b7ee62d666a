"""Helper nodes for the harness's own tests; the test server links this folder into
custom_nodes/portraittalk-testnodes. Not part of the pack.

PTTestSleep loops `steps` times with comfy.utils.ProgressBar, so it sends `progress`
messages and is an interrupt point at every step (the same contract our sampler follows).
PTTestFail raises, to exercise `execution_error`. Both are output nodes, so one node is a
whole prompt. Vary `tag` to defeat the execution cache.

For the reliability tests (tests/nodes/test_reliability_*.py):
PTTestAudio emits AUDIO values a graph might produce, hostile ones included (NaN, inf, empty, one
sample, silence, int16-range floats, any rate, channel count and batch size).
PTTestImage emits IMAGE values (RGBA, grey-as-RGB, one channel, NaN, any size up to 8K and beyond).
PTTestInspect is an output node that reports exact facts about whatever reaches it: the sha256 of an
IMAGE's bytes and its shape, an AUDIO's shape, rate, peak and duration, a LATENT's shape, a number.
All are deterministic: the same inputs give the same values.
PTTestNetwork tries one outgoing connection and reports what happened, with HF_HUB_OFFLINE: the
positive control of the offline guard (tests/comfyui_harness/offline.py).
"""

import hashlib
import json
import math
import time

from comfy_api.v0_0_2 import ComfyExtension, io


class PTTestSleep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestSleep",
            display_name="PortraitTalk test: sleep with progress",
            category="testing/portraittalk",
            is_output_node=True,
            inputs=[
                io.Int.Input("steps", default=5, min=1, max=100000, tooltip="progress steps"),
                io.Float.Input("seconds_per_step", default=0.01, min=0.0, max=10.0, step=0.01, tooltip="sleep per step"),
                io.String.Input("tag", default="", tooltip="anything; vary it to defeat the cache"),
            ],
            outputs=[io.Int.Output(display_name="steps_done")],
        )

    @classmethod
    def execute(cls, steps: int, seconds_per_step: float, tag: str) -> io.NodeOutput:
        import comfy.utils

        bar = comfy.utils.ProgressBar(steps)
        done = 0
        for _ in range(steps):
            time.sleep(seconds_per_step)
            bar.update(1)  # raises InterruptProcessingException when interrupted
            done += 1
        return io.NodeOutput(done, ui={"text": [f"{done} steps {tag}"]})


class PTTestFail(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestFail",
            display_name="PortraitTalk test: raise",
            category="testing/portraittalk",
            is_output_node=True,
            inputs=[io.String.Input("message", default="boom", tooltip="exception text")],
            outputs=[],
        )

    @classmethod
    def execute(cls, message: str) -> io.NodeOutput:
        raise ValueError(message)


AUDIO_KINDS = ["speech", "silence", "nan", "inf", "int16_range", "huge"]
IMAGE_KINDS = ["face", "gradient", "rgba", "gray_as_rgb", "one_channel", "nan"]


def _speechlike(samples: int, rate: int):
    """The tests' speech-like signal (tests/audio_signals.py, found above this folder's real path: the server
    imports it from custom_nodes through a link)."""
    import importlib.util
    from pathlib import Path

    path = next(p / "audio_signals.py" for p in Path(__file__).resolve().parents if (p / "audio_signals.py").is_file())
    spec = importlib.util.spec_from_file_location("portraittalk_test_audio_signals", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.speechlike(samples, rate)


class PTTestAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestAudio", display_name="PortraitTalk test: audio", category="testing/portraittalk",
            inputs=[
                io.Combo.Input("kind", options=AUDIO_KINDS, tooltip="what the samples are"),
                io.Float.Input("seconds", default=0.5, min=0.0, max=100000.0, step=0.01, tooltip="duration"),
                io.Int.Input("samples", default=-1, min=-1, max=2**40, tooltip="exact length; -1: from seconds"),
                io.Int.Input("sample_rate", default=16000, min=-10**9, max=10**9, tooltip="any value"),
                io.Int.Input("channels", default=1, min=1, max=64, tooltip="channel count"),
                io.Int.Input("batch", default=1, min=1, max=64, tooltip="batch size"),
                io.String.Input("tag", default="", tooltip="vary to defeat the cache"),
            ],
            outputs=[io.Audio.Output("audio")],
        )

    @classmethod
    def execute(cls, kind, seconds, samples, sample_rate, channels, batch, tag) -> io.NodeOutput:
        import numpy as np
        import torch

        n = samples if samples >= 0 else int(round(seconds * max(sample_rate, 1)))
        mono = np.zeros(n, np.float32) if kind == "silence" else _speechlike(n, sample_rate)
        if kind == "nan" and n:
            mono[n // 2] = np.nan
        elif kind == "inf" and n:
            mono[n // 3] = np.inf
        elif kind == "int16_range":
            mono = np.round(mono / 0.4 * 30000.0).astype(np.float32)  # int16 values as floats
        elif kind == "huge":
            mono = mono * 1e7
        channel_gain = np.linspace(1.0, 0.5, channels, dtype=np.float32)[:, None]
        wave = np.broadcast_to(mono[None] * channel_gain, (batch, channels, n)).copy()
        return io.NodeOutput({"waveform": torch.from_numpy(wave), "sample_rate": sample_rate})


class PTTestImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestImage", display_name="PortraitTalk test: image", category="testing/portraittalk",
            inputs=[
                io.Combo.Input("kind", options=IMAGE_KINDS, tooltip="what the pixels are"),
                io.Int.Input("width", default=64, min=0, max=65536, tooltip="width"),
                io.Int.Input("height", default=64, min=0, max=65536, tooltip="height"),
                io.Int.Input("batch", default=1, min=0, max=4096, tooltip="batch size"),
                io.String.Input("tag", default="", tooltip="vary to defeat the cache"),
            ],
            outputs=[io.Image.Output("image")],
        )

    @classmethod
    def execute(cls, kind, width, height, batch, tag) -> io.NodeOutput:
        import torch

        ys = torch.linspace(0.0, 1.0, height).view(height, 1).expand(height, width)
        xs = torch.linspace(0.0, 1.0, width).view(1, width).expand(height, width)
        if kind == "face":  # a light disc with two dark eyes and a red mouth on blue, like SynthTalk
            cy, cx = (ys - 0.5) / 0.35, (xs - 0.5) / 0.28
            face = (cy ** 2 + cx ** 2 < 1).float()
            eyes = (((xs - 0.38) ** 2 + (ys - 0.42) ** 2 < 0.002) | ((xs - 0.62) ** 2 + (ys - 0.42) ** 2 < 0.002)).float()
            mouth = (((xs - 0.5) / 0.12) ** 2 + ((ys - 0.68) / 0.04) ** 2 < 1).float()
            r = 0.2 + 0.7 * face - 0.6 * eyes + 0.1 * mouth
            g = 0.3 + 0.5 * face - 0.5 * eyes - 0.5 * mouth
            b = 0.8 - 0.2 * face - 0.4 * eyes - 0.3 * mouth
            rgb = torch.stack([r, g, b], -1).clamp(0, 1)
        else:
            rgb = torch.stack([xs, ys, 0.5 * (xs + ys)], -1)
        if kind == "rgba":
            image = torch.cat([rgb, xs[..., None]], -1)  # alpha ramps from 0 (left) to 1 (right)
        elif kind == "gray_as_rgb":
            image = rgb.mean(-1, keepdim=True).expand(height, width, 3)
        elif kind == "one_channel":
            image = rgb.mean(-1, keepdim=True)
        else:
            image = rgb.clone()
            if kind == "nan" and height and width:
                image[height // 2, width // 2, 0] = float("nan")
        return io.NodeOutput(image[None].expand(batch, *image.shape).contiguous())


class PTTestClipVisionOutput(io.ComfyNode):
    """A core CLIP_VISION_OUTPUT with random image embeddings of a chosen shape (what 'CLIP Vision Encode'
    returns), so the nodes that take one can be tested without a CLIP vision model."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestClipVisionOutput", display_name="PortraitTalk test: CLIP vision output",
            category="testing/portraittalk",
            inputs=[io.Int.Input("rows", default=1, min=0, max=64, tooltip="images encoded"),
                    io.Int.Input("width", default=1024, min=1, max=4096, tooltip="embedding width"),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="random values")],
            outputs=[io.ClipVisionOutput.Output("clip_vision_output")],
        )

    @classmethod
    def execute(cls, rows, width, seed) -> io.NodeOutput:
        import comfy.clip_vision
        import torch

        out = comfy.clip_vision.Output()
        out["image_embeds"] = torch.randn((rows, width), generator=torch.Generator().manual_seed(seed))
        return io.NodeOutput(out)


def _tensor_facts(t) -> dict:
    """Shape, dtype, sha256 of the bytes, finite range. Works a slice at a time along the first dimension,
    so inspecting a long video costs no second copy of it."""
    import torch

    t = t.detach()
    digest = hashlib.sha256()
    lo = hi = None
    finite = True
    rows = t.reshape(1, *t.shape) if t.ndim == 0 else t
    for i in range(0, rows.shape[0], 64):
        part = rows[i: i + 64].cpu().contiguous()
        digest.update(part.numpy().tobytes() if part.dtype != torch.bfloat16 else part.view(torch.int16).numpy().tobytes())
        if part.is_floating_point():
            ok = torch.isfinite(part)
            finite = finite and bool(ok.all())
            part = part[ok] if not bool(ok.all()) else part
        if part.numel():
            a, b = float(part.min()), float(part.max())
            lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "sha256": digest.hexdigest(),
            "min": lo, "max": hi, "finite": finite}


class PTTestInspect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestInspect", display_name="PortraitTalk test: inspect", category="testing/portraittalk",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", optional=True, tooltip="IMAGE: shape, sha256 of the bytes, range"),
                io.Audio.Input("audio", optional=True, tooltip="AUDIO: shape, rate, peak, duration"),
                io.Latent.Input("latent", optional=True, tooltip="LATENT: shape and sha256"),
                io.Mask.Input("mask", optional=True, tooltip="MASK: shape"),
                io.Int.Input("number", optional=True, tooltip="an INT"),
                io.Float.Input("value", optional=True, tooltip="a FLOAT"),
                io.Custom("PORTRAITTALK_IDENTITYNET").Input("identity_net", optional=True,
                                                            tooltip="the dtypes of each network's parameters"),
                io.Custom("PORTRAITTALK_ANIMATENET").Input("animate_net", optional=True,
                                                           tooltip="the dtypes of each network's parameters"),
                io.String.Input("tag", default="", tooltip="vary to defeat the cache"),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, images=None, audio=None, latent=None, mask=None, number=None, value=None,
                identity_net=None, animate_net=None, tag="") -> io.NodeOutput:
        facts: dict = {"tag": tag}
        for name, net in (("identity_net", identity_net), ("animate_net", animate_net)):
            if net is not None:  # a PortraitTalkPipeline, or a patched AnimateNet wrapping one
                pipeline = getattr(net, "pipeline", net)
                facts[name] = {part: sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()})
                               for part, module in pipeline.components.modules().items()}
        if images is not None:
            facts["images"] = _tensor_facts(images)
        if audio is not None:
            wave, rate = audio["waveform"], int(audio["sample_rate"])
            facts["audio"] = {**_tensor_facts(wave), "sample_rate": rate,
                              "seconds": wave.shape[-1] / rate if rate > 0 else None}
        if latent is not None:
            facts["latent"] = _tensor_facts(latent["samples"])
        if mask is not None:
            facts["mask"] = _tensor_facts(mask)
        if number is not None:
            facts["number"] = int(number)
        if value is not None:
            facts["value"] = float(value) if math.isfinite(value) else str(value)
        return io.NodeOutput(ui={"text": [json.dumps(facts)]})


class PTTestNetwork(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestNetwork", display_name="PortraitTalk test: network probe", category="testing/portraittalk",
            is_output_node=True,
            inputs=[
                io.String.Input("host", default="192.0.2.1", tooltip="where to connect (TEST-NET-1 by default)"),
                io.Int.Input("port", default=80, min=1, max=65535, tooltip="TCP port"),
                io.String.Input("tag", default="", tooltip="vary to defeat the cache"),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, host, port, tag) -> io.NodeOutput:
        import os
        import socket

        try:
            socket.create_connection((host, port), timeout=2.0).close()
            outcome = "connected"
        except OSError as err:
            outcome = f"{type(err).__name__}: {err}"
        facts = {"connect": outcome, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"), "tag": tag}
        return io.NodeOutput(ui={"text": [json.dumps(facts)]})


def _loaded_models() -> list[dict]:
    """ComfyUI's list of loaded models (comfy.model_management.current_loaded_models): for each, the class of what
    the patcher holds, the pack's network name, dtype, size and loaded bytes, and how many times its weights were
    loaded onto the device."""
    import comfy.model_management as mm

    models = []
    for loaded in mm.current_loaded_models:
        patcher = loaded.model
        if patcher is None:
            continue
        held = patcher.model
        models.append({"class": type(held).__name__, "name": getattr(held, "network_name", None),
                       "dtype": str(patcher.model_dtype()), "size": patcher.model_size(),
                       "loaded": patcher.loaded_size(), "loads": getattr(held, "loads", None),
                       "device": str(loaded.device)})
    return models


def _add_routes() -> None:
    """GET /pt_test/loaded_models: the list, read between prompts (a prompt of its own would first drop the cached
    outputs of the last one, and the models with them)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None:
        return

    @PromptServer.instance.routes.get("/pt_test/loaded_models")
    async def loaded_models(request):
        return web.json_response(_loaded_models())


_add_routes()


def _fake_free_memory() -> None:
    """PT_TEST_FREE_MEMORY (bytes): ComfyUI reports that much free memory on every device, a device of any size
    for the memory-estimate tests."""
    import os

    budget = os.environ.get("PT_TEST_FREE_MEMORY")
    if budget:
        import comfy.model_management as mm

        mm.get_free_memory = lambda dev=None, torch_free_too=False: (
            (int(budget), int(budget)) if torch_free_too else int(budget))


_fake_free_memory()


class _TestExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [PTTestSleep, PTTestFail, PTTestAudio, PTTestImage, PTTestInspect, PTTestNetwork,
                PTTestClipVisionOutput]


async def comfy_entrypoint() -> ComfyExtension:
    return _TestExtension()
