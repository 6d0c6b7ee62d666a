"""Shared pieces of the reliability tests (test_reliability_*.py): an offline-guarded server with a
random tiny model, graph builders that use the PTTest* helper nodes, and checks of results and
errors."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import offline
from .graphs import generation_graph
from .server import ComfyClient, ComfyServer, PromptRejected, RunResult

MODEL = "tiny_random.safetensors"
FPS = 25.0
AUDIO_NODE, IMAGE_NODE, INSPECT_NODE = "100", "101", "150"
# What an error raised by the pack may be: our own classes (all ValueErrors) or plain ValueError /
# FileNotFoundError with our message. A RuntimeError, IndexError... means an unchecked input reached
# torch or numpy.
CLEAR_ERROR_TYPES = {"ModelFileError", "AudioInputError", "ImageInputError", "ValueError", "FileNotFoundError",
                     "ConfigError"}


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    from comfyui_portraittalk.models import PortraitTalkPipeline

    return PortraitTalkPipeline.from_config("tiny", seed=seed).save_pretrained(path)


def start_offline_server(factory, tmp_path: Path, *, model_file: Path, extra_args=(), base_dir=None) -> ComfyServer:
    """A ComfyUI server that refuses every non-loopback socket (tests/comfyui_harness/offline.py) and runs with
    HF_HUB_OFFLINE=1, with the tiny model in models/portraittalk."""
    log = tmp_path / "offline_refused.log"
    kwargs = {"base_dir": base_dir} if base_dir is not None else {}
    server = factory(before_start=lambda s: s.add_model("portraittalk", model_file, MODEL),
                     env=offline.server_env(log), extra_args=list(extra_args), **kwargs)
    server.offline_log = log
    return server


def refused_attempts(server: ComfyServer) -> str:
    return offline.read_log(server.offline_log)


def audio_node(kind: str = "speech", *, seconds: float = 0.4, samples: int = -1, rate: int = 16000,
               channels: int = 1, batch: int = 1, tag: str = "") -> dict:
    return {"class_type": "PTTestAudio", "inputs": {"kind": kind, "seconds": seconds, "samples": samples,
                                                     "sample_rate": rate, "channels": channels, "batch": batch,
                                                     "tag": tag}}


def image_node(kind: str = "face", width: int = 64, height: int = 64, batch: int = 1, tag: str = "") -> dict:
    return {"class_type": "PTTestImage", "inputs": {"kind": kind, "width": width, "height": height, "batch": batch,
                                                     "tag": tag}}


def full_graph(*, model: str = MODEL, audio: dict | None = None, image: dict | None = None, steps: int = 1,
               seed: int = 0, prefix: str = "reliability/run", save: bool = True, inspect: bool = True,
               tag: str = "") -> dict:
    """Reference + audio → frames → (Inspect) and CreateVideo → SaveVideo, with the test nodes as
    inputs (defaults: a 64×64 synthetic face and 0.4 s of speech-like audio)."""
    graph = generation_graph(model, steps=steps, seed=seed, prefix=prefix, image=[IMAGE_NODE, 0],
                             audio=[AUDIO_NODE, 0])
    del graph["1"]  # the demo inputs: replaced by the test nodes
    graph[AUDIO_NODE] = audio or audio_node()
    graph[IMAGE_NODE] = image or image_node()
    if inspect:
        graph[INSPECT_NODE] = {"class_type": "PTTestInspect",
                               "inputs": {"images": ["13", 0], "audio": ["13", 2], "latent": ["12", 0],
                                          "number": ["10", 1], "tag": tag}}
    if not save:
        del graph["14"], graph["15"]
    return graph


def expected_frames(samples: int, rate: int, fps: float = FPS) -> int:
    """F = ceil(duration · fps) of the clip after resampling to 16 kHz (as Encode Audio counts)."""
    resampled = samples if rate == 16000 else math.ceil(samples * 16000 / rate)
    return max(0, math.ceil(resampled * fps / 16000 - 1e-6))


def inspected(result: RunResult, node: str = INSPECT_NODE) -> dict:
    texts = result.outputs(node).get("text") or []
    assert texts, f"no PTTestInspect output in the history: {result.outputs()}"
    return json.loads(texts[0])


def video_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = {"width": video.width, "height": video.height, "rate": float(video.average_rate),
                 "frames": sum(1 for _ in container.decode(video=0))}
    with av.open(str(path)) as container:
        sound = [s for s in container.streams if s.type == "audio"]
        if sound:
            # The stream's duration is what players play (AAC pads the last 1024-sample packet; the
            # container's edit list cuts it); the decoded total counts that padding too.
            stream = sound[0]
            samples = sum(f.samples for f in container.decode(stream))
            seconds = float(stream.duration * stream.time_base) if stream.duration else samples / stream.rate
            facts.update(audio_channels=stream.channels, audio_rate=stream.rate, audio_seconds=seconds,
                         audio_decoded_seconds=samples / stream.rate)
    return facts


def saved_videos(result: RunResult, server: ComfyServer) -> list[Path]:
    return [p for p in result.output_files(server.output_dir) if p.suffix == ".mp4"]


def assert_clear_error(result: RunResult, *needles: str, node_types: set[str] | None = None) -> dict:
    """An execution_error raised by one of our nodes, of a clear type, whose message contains every
    needle (case-insensitive) and is a sentence rather than a stack trace."""
    assert result.outcome == "execution_error", f"expected an execution_error, got {result.outcome}: " \
                                                f"{result.describe_error()}"
    error = result.of("execution_error")[0]
    message = error["exception_message"]
    if node_types is not None:
        assert error["node_type"] in node_types, (error["node_type"], message)
    assert error["exception_type"].rsplit(".", 1)[-1] in CLEAR_ERROR_TYPES, \
        f"{error['exception_type']}: {message}\n{''.join(error.get('traceback') or [])}"
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in the message: {message!r}"
    assert "Traceback" not in message and len(message) < 1500, message
    return error


def assert_rejected(rejection: PromptRejected, *needles: str) -> str:
    """A 400 from POST /prompt whose node errors contain every needle."""
    text = json.dumps(rejection.node_errors) or json.dumps(rejection.body)
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in the node errors: {text[:2000]}"
    return text


def assert_serving(server: ComfyServer, client: ComfyClient) -> None:
    assert server.is_running(), f"the server died:\n{server.log_tail(40)}"
    stats = client.system_stats()
    assert stats["system"]["comfyui_version"], stats


def server_rss(server: ComfyServer) -> int:
    """Resident memory of the server process in bytes (Linux /proc; psutil where there is no /proc)."""
    pid = server.proc.pid
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read_text(), re.M)
        if match:
            return int(match.group(1)) * 1024
    import psutil

    return psutil.Process(pid).memory_info().rss


def memory_after_free(server: ComfyServer, client: ComfyClient, expect_bytes: float,
                      timeout: float = 60.0) -> tuple[int, int]:
    """POST /free (ComfyUI's "Unload models") until the server's resident memory has fallen by `expect_bytes`
    or `timeout` passes; returns (RSS before, RSS after) in bytes.

    Sent again every second: ComfyUI 0.3.75's prompt worker reads the flag only when its queue wakes it, and a
    request that lands while the worker is still collecting garbage after the last prompt wakes nobody (the
    worker then sleeps up to 1000 s); the flag stays set, so a later request wakes it and both are served."""
    import time

    before = server_rss(server)
    deadline = time.monotonic() + timeout
    while True:
        client.free()
        time.sleep(1)
        if server_rss(server) <= before - expect_bytes or time.monotonic() > deadline:
            return before, server_rss(server)


@dataclass
class Case:
    """One row of the bad-input matrix. `build(ctx)` returns the API graph; `check(ctx, result)`
    asserts on the outcome. `rejected`: the POST itself must fail with 400 (validation)."""

    id: str
    build: Callable
    check: Callable
    rejected: bool = False
    timeout: float = 600.0
    marks: list = field(default_factory=list)
