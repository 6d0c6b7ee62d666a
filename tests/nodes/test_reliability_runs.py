"""Interrupts, determinism and offline operation, in a real ComfyUI 0.3.75 server started with
--cache-none (every prompt really runs) that refuses every non-loopback socket and has
HF_HUB_OFFLINE=1 (tests/comfyui_harness/offline.py).

Frames are compared exactly: PTTestInspect hashes the bytes of the IMAGE that Decode returns and of
the LATENT the sampler returns (SaveVideo's H.264 is lossy, so the video file cannot be compared).
"""

from __future__ import annotations

import gc
import json
import time
import uuid

import numpy as np
import pytest
import torch

from comfyui_harness import offline
from comfyui_harness import reliability as R
from comfyui_harness.server import outcome

pytestmark = pytest.mark.comfyui

SEED = 1234
STEPS = 4  # 4 steps × 2 windows = 8 sampler updates: room to interrupt after 3, well before the end
SECONDS = 0.8  # 20 frames: two 16-frame windows with overlap 4 (the blend between windows is compared too)
FRAMES = 20
LEAK_MARGIN = 200 * 2**20  # bytes of RSS an interrupted run may leave behind (allocator slack)


def graph(seed: int = SEED, steps: int = STEPS, tag: str = "") -> dict:
    return R.full_graph(audio=R.audio_node(seconds=SECONDS), steps=steps, seed=seed, save=False,
                        tag=tag or uuid.uuid4().hex)


def frames_of(result) -> dict:
    assert result.outcome == "execution_success", result.describe_error()
    facts = R.inspected(result)
    assert facts["images"]["shape"] == [FRAMES, 64, 64, 3], facts
    return {"images": facts["images"]["sha256"], "latent": facts["latent"]["sha256"]}


class Runs:
    def __init__(self, factory, tmp):
        self.factory, self.tmp = factory, tmp
        self.model = R.save_tiny_model(tmp / R.MODEL)
        self.base = tmp / "base"
        self.server = self.client = None
        self.start()

    def start(self):
        self.server = R.start_offline_server(self.factory, self.tmp, model_file=self.model,
                                             extra_args=["--cache-none"], base_dir=self.base)
        self.client = self.server.client()
        self.client.connect()

    def restart(self):
        self.client.close()
        self.server.stop()
        self.start()

    def close(self):
        self.client.close()
        self.server.stop()


@pytest.fixture(scope="module")
def runs(comfy_server_factory, tmp_path_factory):
    r = Runs(comfy_server_factory, tmp_path_factory.mktemp("reliability-runs"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def reference(runs) -> dict:
    """The frames of a fresh run (the first prompt of a fresh server) with SEED."""
    return frames_of(runs.client.run(graph(), timeout=600))


def test_same_seed_same_frames_across_runs(runs, reference):
    assert frames_of(runs.client.run(graph(), timeout=600)) == reference
    other = frames_of(runs.client.run(graph(seed=SEED + 1), timeout=600))
    assert other["images"] != reference["images"], "the hash does not see the seed"


def interrupt_mid_sampling(runs) -> list[dict]:
    pid = runs.client.queue(graph())
    total = None
    deadline = time.monotonic() + 300
    while True:  # interrupt once the sampler has done a few of its window steps, well before the end
        progress = [m["data"] for m in runs.client.all_messages()
                    if m["type"] == "progress" and m["data"].get("prompt_id") == pid and m["data"].get("node") == "12"]
        if progress and progress[-1]["value"] >= 3:
            total = progress[-1]["max"]
            break
        assert time.monotonic() < deadline, "the sampler reported no progress"
        time.sleep(0.01)
    runs.client.interrupt(pid)
    messages = runs.client.wait(pid, timeout=300)
    assert outcome(messages) == "execution_interrupted", [m["type"] for m in messages]
    interrupted = [m["data"] for m in messages if m["type"] == "execution_interrupted"][0]
    assert interrupted["node_type"] == "PortraitTalkSampler", interrupted
    done = [m["data"]["value"] for m in messages if m["type"] == "progress" and m["data"].get("node") == "12"]
    assert max(done) < total, f"the sampler finished ({max(done)}/{total}) before the interrupt"
    return messages


def test_interrupt_releases_memory_and_the_next_prompt_matches_a_fresh_run(runs, reference):
    # `reference` ran a whole prompt on this server: every allocation a run makes has been made once
    baseline = R.server_rss(runs.server)
    after = []
    for _ in range(3):
        interrupt_mid_sampling(runs)
        R.assert_serving(runs.server, runs.client)
        after.append(R.server_rss(runs.server))
    grown = after[-1] - baseline
    assert grown < LEAK_MARGIN, f"RSS grew by {grown / 2**20:.0f} MiB over 3 interrupted runs " \
                                f"(baseline {baseline / 2**20:.0f} MiB, after each: {[a // 2**20 for a in after]})"
    assert frames_of(runs.client.run(graph(), timeout=600)) == reference


def test_same_frames_after_a_server_restart(runs, reference):
    runs.restart()
    assert frames_of(runs.client.run(graph(), timeout=600)) == reference


def test_nothing_went_online_and_the_guard_is_real(runs):
    assert R.refused_attempts(runs.server) == "", R.refused_attempts(runs.server)
    probe = {"1": {"class_type": "PTTestNetwork", "inputs": {"host": "192.0.2.1", "port": 80,
                                                             "tag": uuid.uuid4().hex}}}
    facts = json.loads(runs.client.run(probe, timeout=60).outputs("1")["text"][0])
    assert facts["HF_HUB_OFFLINE"] == "1"
    assert facts["connect"].startswith("NetworkRefused"), facts
    assert "192.0.2.1" in R.refused_attempts(runs.server)
    probe["1"]["inputs"].update(host="huggingface.co", port=443, tag=uuid.uuid4().hex)  # DNS is refused too
    facts = json.loads(runs.client.run(probe, timeout=60).outputs("1")["text"][0])
    assert facts["connect"].startswith("gaierror") and "refused" in facts["connect"], facts
    assert "huggingface.co" in R.refused_attempts(runs.server)


# ---- in process -------------------------------------------------------------------------------------

def test_in_process_generation_is_offline_and_deterministic(reference_images, speechlike):
    from comfyui_portraittalk.models import PortraitTalkPipeline

    with offline.no_network() as refused:
        with pytest.raises(OSError):  # the guard is on
            __import__("socket").create_connection(("192.0.2.1", 80), timeout=2)
        pipe = PortraitTalkPipeline.from_config("tiny", seed=0)
        wave, sr = speechlike
        runs = [pipe([reference_images[0]], wave[: int(0.5 * sr)], sr, "a face with glasses", seed=5,
                     num_inference_steps=2).frames for _ in range(2)]
        gc.collect()
    assert np.array_equal(runs[0], runs[1])
    assert len(refused) == 1 and "192.0.2.1" in refused[0], refused
    assert not offline.installed()
    assert torch.isfinite(torch.from_numpy(runs[0])).all()
