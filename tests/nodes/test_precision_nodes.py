"""Precision that follows ComfyUI: a server started with --bf16-unet or --fp16-unet loads the pack's networks in
that dtype, a loader's weight_dtype input overrides it, and the video stays finite and close to the fp32 one."""

from __future__ import annotations

import av
import numpy as np
import pytest

from comfyui_harness.graphs import generation_graph
from comfyui_harness.reliability import inspected

MODEL = "portraittalk_demo.safetensors (bundled)"  # trained weights: random ones amplify rounding
LOADERS = ("3", "4", "5", "6")  # IdentityNet, AnimateNet, text and image encoder loaders of generation_graph


def _graph(weight_dtype: str | None, tag: str) -> dict:
    graph = generation_graph(MODEL, steps=2, audio=["20", 0], prefix=f"portraittalk/precision_{tag}")
    graph["20"] = {"class_type": "PTTestAudio", "inputs": {"kind": "speech", "seconds": 0.6, "samples": -1,
                                                            "sample_rate": 16000, "channels": 1, "batch": 1, "tag": tag}}
    graph["21"] = {"class_type": "PTTestInspect", "inputs": {"identity_net": ["3", 0], "animate_net": ["4", 0],
                                                              "images": ["13", 0], "tag": tag}}
    if weight_dtype is not None:
        for node in LOADERS:
            graph[node]["inputs"]["weight_dtype"] = weight_dtype
    return graph


def _run(server, weight_dtype: str | None, tag: str) -> tuple[dict, np.ndarray]:
    client = server.client()
    client.connect()
    try:
        result = client.run(_graph(weight_dtype, tag), timeout=300)
    finally:
        client.close()
    assert result.outcome == "execution_success", result.describe_error()
    (video,) = [p for p in result.output_files(server.output_dir) if p.suffix == ".mp4"]
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)
    return inspected(result, "21"), frames


def _dtypes(facts: dict, net: str) -> set[str]:
    return {d for dtypes in facts[net].values() for d in dtypes}


@pytest.fixture(scope="module")
def runs(comfy_server_factory):
    out = {}
    for flag, dtype in (("--bf16-unet", "bfloat16"), ("--fp16-unet", "float16")):
        server = comfy_server_factory(extra_args=[flag])
        out[dtype] = _run(server, None, dtype)
        if dtype == "float16":  # the input overrides the server's flag
            out["float32"] = _run(server, "fp32", "fp32")
    return out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_servers_unet_dtype_loads_the_networks_in_it(runs, dtype):
    facts, _ = runs[dtype]
    assert _dtypes(facts, "identity_net") == {dtype} and _dtypes(facts, "animate_net") == {dtype}
    assert facts["images"]["finite"] and 0.0 <= facts["images"]["min"] <= facts["images"]["max"] <= 1.0


def test_weight_dtype_overrides_the_server_and_half_precision_stays_close(runs):
    facts, reference = runs["float32"]
    assert _dtypes(facts, "identity_net") == {"float32"}
    # mean error of 255, through H.264 both ways; bf16 keeps 8 bits of mantissa, fp16 11 (measured: 3.3 and
    # 1.9–2.4 in different runs; the bounds leave room for the encoder's rounding)
    for dtype, tolerance in (("bfloat16", 6.0), ("float16", 4.0)):
        _, frames = runs[dtype]
        assert frames.shape == reference.shape
        assert np.abs(frames - reference).mean() < tolerance, dtype


def test_an_unknown_weight_dtype_names_the_input(comfy_client):
    from comfyui_harness.server import PromptRejected

    graph = {"1": {"class_type": "PortraitTalkLoadIdentityNet",
                   "inputs": {"model_name": MODEL, "weight_dtype": "fp8"}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(graph)
    assert "weight_dtype: 'fp8' is not one of auto, fp16, bf16, fp32" in str(rejected.value.node_errors)
