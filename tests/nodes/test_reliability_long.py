"""A ten-minute audio file through the whole graph at the tiny config, in a real ComfyUI 0.3.75 server
(offline-guarded, HF_HUB_OFFLINE=1): LoadAudio → Encode Audio → sampler (1 step, 32-frame windows,
overlap 2: the longest windows, the cheapest way through 15,000 frames) → Decode → CreateVideo → SaveVideo.

It must complete with flat memory while sampling (the sampler holds the latents and one window, so
its memory must not grow with the frames done; a whole-video copy at the end of the node, as its latent
scaling once made, shows here as +30% on a fast machine), and the saved video must be as long as the
audio, within one frame, with its soundtrack as long as the video.

Marked `slow`: the server's resident memory is sampled twice a second; the runtime is printed.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import numpy as np
import pytest

from comfyui_harness import reliability as R

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

MINUTES = 10
RATE = 16000
FRAMES = MINUTES * 60 * 25
FLAT = 0.15  # the sampler's RSS may grow at most this much after its first minute (or first quarter)


def long_speech(path, seconds: float) -> None:
    """Speech-like bursts with a slowly drifting pitch, as 16-bit PCM (what LoadAudio gets from users)."""
    import soundfile as sf

    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 150 + 40 * np.sin(2 * np.pi * t / 7.0)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    envelope = (np.sin(2 * np.pi * 2.7 * t + np.sin(t)) > 0.1).astype(np.float64)
    wave = (0.3 * np.sin(phase) + 0.08 * np.sin(3.1 * phase)) * envelope
    sf.write(str(path), wave.astype(np.float32), RATE, subtype="PCM_16")


class RssSampler(threading.Thread):
    def __init__(self, server, every: float = 0.5):
        super().__init__(daemon=True)
        self.server, self.every = server, every
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), R.server_rss(self.server)))
            except (OSError, AttributeError):
                pass
            self.stop.wait(self.every)


def test_ten_minutes_of_audio_complete_with_flat_memory(comfy_server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability-long")
    model = R.save_tiny_model(tmp / R.MODEL)
    name = f"long_{MINUTES}min.wav"
    long_speech(tmp / name, MINUTES * 60)
    server = R.start_offline_server(comfy_server_factory, tmp, model_file=model)
    server.add_input(tmp / name)
    client = server.client()
    client.connect()
    try:
        graph = R.full_graph(prefix="reliability/long", inspect=False)
        graph["12"]["inputs"].update(window=32, overlap=2)
        graph["13"]["inputs"]["chunk"] = 32
        graph[R.AUDIO_NODE] = {"class_type": "LoadAudio", "inputs": {"audio": name}}
        graph[R.INSPECT_NODE] = {"class_type": "PTTestInspect",
                                 "inputs": {"audio": ["13", 2], "number": ["10", 1], "tag": uuid.uuid4().hex}}
        sampler = RssSampler(server)
        before = R.server_rss(server)
        sampler.start()
        started = time.monotonic()
        try:
            result = client.run(graph, timeout=3000, expect=None)
        finally:
            sampler.stop.set()
            sampler.join()
        runtime = time.monotonic() - started
        assert result.outcome == "execution_success", result.describe_error()

        # ---- the output is as long as the audio -----------------------------------------------------
        facts = R.inspected(result)
        assert facts["number"] == FRAMES
        assert abs(facts["audio"]["seconds"] - MINUTES * 60) <= 1 / R.FPS, facts["audio"]
        video = R.video_facts(R.saved_videos(result, server)[0])
        assert video["frames"] == FRAMES and video["rate"] == R.FPS, video
        assert abs(video["frames"] / video["rate"] - MINUTES * 60) <= 1 / R.FPS
        assert abs(video["audio_seconds"] - MINUTES * 60) <= 1 / R.FPS, video

        # ---- memory stays flat while sampling --------------------------------------------------------
        executing = [(m["received"], m["data"]["node"]) for m in result.messages if m["type"] == "executing"]
        t0 = next(t for t, node in executing if node == "12")
        t1 = next(t for t, node in executing if t > t0 and node != "12")
        settle = t0 + min(60.0, (t1 - t0) / 4)
        during = [rss for t, rss in sampler.samples if settle <= t <= t1]
        assert len(during) >= 4, f"too few RSS samples while sampling ({len(during)}; {t1 - t0:.0f} s)"
        growth = (max(during) - during[0]) / during[0]
        peak = max(rss for _, rss in sampler.samples)
        report = (f"{MINUTES} min of audio: {runtime:.0f} s in all, sampling {t1 - t0:.0f} s; RSS before "
                  f"{before / 2**20:.0f} MiB, sampling from {during[0] / 2**20:.0f} to {max(during) / 2**20:.0f} MiB "
                  f"({growth:+.1%}), peak {peak / 2**20:.0f} MiB")
        print(report)
        assert growth < FLAT, report
        # latents and frames of a 10-minute tiny video are 0.7 GiB each (float32): the whole run stays
        # within a few copies of them, not a copy per window
        frame_bytes = FRAMES * 64 * 64 * 3 * 4
        assert peak - before < 6 * frame_bytes, report
        assert math.isfinite(runtime)
        R.assert_serving(server, client)
    finally:
        client.close()
        server.stop()
