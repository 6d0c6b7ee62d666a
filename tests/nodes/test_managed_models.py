"""The pack's networks are models that ComfyUI manages: after a run they are in ComfyUI's list of loaded models with
their sizes, a second run moves no weights, /free empties the list, and a run whose estimated peak does not fit
the device stops with a clear error before sampling starts."""

from __future__ import annotations

import pytest

from comfyui_harness.graphs import generation_graph

pytestmark = pytest.mark.comfyui

MODEL = "portraittalk_demo.safetensors (bundled)"
PACK_NETWORKS = {"identity_net", "animate_net", "image_proj", "audio_proj", "codec", "text_encoder", "image_encoder"}


def _graph(tag: str, seed: int = 0) -> dict:
    graph = generation_graph(MODEL, steps=1, seed=seed, audio=["20", 0], prefix=f"portraittalk/managed_{tag}")
    graph["20"] = {"class_type": "PTTestAudio",
                   "inputs": {"kind": "speech", "seconds": 0.4, "samples": -1, "sample_rate": 16000, "channels": 1,
                              "batch": 1, "tag": tag}}
    return graph


def _loaded(client) -> list[dict]:
    return [m for m in client.get_json("/pt_test/loaded_models") if m["class"] == "PortraitTalkNetwork"]


def _expected_sizes() -> dict[str, int]:
    """Bytes of each network of the bundled model, weights and buffers, as ComfyUI counts a module."""
    from comfyui_portraittalk.models.pipeline import PortraitTalkPipeline

    pipeline = PortraitTalkPipeline.from_pretrained("demo")
    sizes = {name: sum(t.nbytes for t in module.state_dict().values())
             for name, module in pipeline.components.modules().items()}
    return {name: size for name, size in sizes.items() if size}  # a network without weights is not a model


def test_networks_are_loaded_models_that_stay_loaded_and_free_unloads_them(comfy_server_factory):
    server = comfy_server_factory()
    client = server.client()
    client.connect()
    try:
        first = client.run(_graph("first"), timeout=300)
        assert first.outcome == "execution_success", first.describe_error()
        loaded = {m["name"]: m for m in _loaded(client)}
        expected = _expected_sizes()
        # every network the run used, each with its own size; the text and image encoders of the bundled model too
        assert set(loaded) == PACK_NETWORKS & set(expected), loaded
        for name, facts in loaded.items():
            assert facts["size"] == expected[name] and facts["loaded"] == facts["size"], (name, facts)
            assert facts["loads"] == 1 and facts["dtype"] == "torch.float32", (name, facts)

        # new audio and seed: Encode Audio, the patch, the sampler and Decode run again, on the same loaded networks
        second = client.run(_graph("second", seed=1), timeout=300)
        assert second.outcome == "execution_success", second.describe_error()
        executed = {str(d["node"]) for d in second.of("executing")}
        assert {"10", "12", "13"} <= executed, executed
        again = {m["name"]: m for m in _loaded(client)}
        assert {name: m["loads"] for name, m in again.items()} == {name: 1 for name in loaded}

        client.free()
        import time

        deadline = time.monotonic() + 60
        while _loaded(client) and time.monotonic() < deadline:
            client.free()  # see reliability.memory_after_free: a /free may wait for the worker to wake
            time.sleep(1)
        assert _loaded(client) == []
    finally:
        client.close()


def test_an_estimate_over_the_free_memory_stops_before_sampling(comfy_server_factory):
    server = comfy_server_factory(env={"PT_TEST_FREE_MEMORY": str(4 * 2**20)})  # a device with 4 MiB free
    client = server.client()
    client.connect()
    try:
        result = client.run(_graph("budget"), timeout=300, expect=None)
    finally:
        client.close()
    assert result.outcome == "execution_error"
    (error,) = result.of("execution_error")
    assert error["node_id"] == "12", error  # the sampler, at its start: nothing sampled, nothing decoded
    message = error["exception_message"]
    assert "not enough memory on cpu to sample" in message and "0.00 GB is available" in message, message
    for name in ("'window' (now 16)", "'text_guidance'", "'audio_guidance'", "activations"):
        assert name in message, (name, message)
    assert not [p for p in result.of("progress") if str(p["node"]) == "12"], "sampling started"
