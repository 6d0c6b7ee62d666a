"""Crop Face and Paste Back Face in a real ComfyUI: round trips on real photographs, faceless photos,
mixed batches, odd sizes, and a whole generation from a photograph to a full-frame video with sound.

The photos are assets/examples/ (public domain), loaded with core LoadImage. Results come back through
core SaveImage as PNGs; SaveImage(LoadImage(x)) reproduces x's pixels exactly, so "unchanged" can be
checked bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_portraittalk.faces import crop_face, detect_faces, face_region_mask, layouts, mediapipe_available

from comfyui_harness.graphs import generation_graph
from .test_nodes_generate import speech_frames, video_summary

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
PHOTOS = ["astronaut.jpg", "grace_hopper.jpg"]
MODEL = "tiny_random_faces.safetensors"

needs_mediapipe = pytest.mark.skipif(not mediapipe_available(),
                                     reason="mediapipe or face_landmarker.task not installed (faces extra)")
pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def inputs(comfy_server):
    """The example photos plus made-up ones in the server's input folder; name → RGB uint8 pixels."""
    made = {name: _rgb(EXAMPLES / name) for name in PHOTOS}
    rng = np.random.default_rng(0)
    made["astronaut_odd.png"] = made["astronaut.jpg"][:385, 20:469]  # 449×385, the face kept
    made["noise_odd.png"] = rng.integers(0, 256, (203, 301, 3), dtype=np.uint8)
    made["noise_512.png"] = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    made["flat_512.png"] = np.full((512, 512, 3), (40, 150, 90), np.uint8)
    for name, pixels in made.items():
        if name in PHOTOS:
            comfy_server.add_input(EXAMPLES / name)
        else:
            comfy_server.add_input(_png_bytes(pixels), name)
    return made


@pytest.fixture(scope="module")
def tiny_model(comfy_server, tmp_path_factory):
    from comfyui_portraittalk.models import PortraitTalkPipeline

    path = tmp_path_factory.mktemp("models") / MODEL
    PortraitTalkPipeline.from_config("tiny", seed=0).save_pretrained(path)
    comfy_server.add_model("portraittalk", path)
    return MODEL


def crop_graph(image: str, prefix: str, size: int = 256, align: bool = True, backend: str = "auto",
               generated: list | None = None, feather: float = 0.1) -> dict:
    """LoadImage → Crop Face → Paste Back Face (of the crop itself, or of `generated`), saving the
    original, the crop, the mask and the pasted result."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "PortraitTalkCropFace",
              "inputs": {"image": ["1", 0], "size": size, "expand": 1.2, "align": align, "backend": backend}},
        "3": {"class_type": "PortraitTalkPasteBack",
              "inputs": {"images": generated or ["2", 0], "crop_info": ["2", 1], "original": ["1", 0],
                         "feather": feather, "colour_match": True}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"{prefix}_orig"}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"{prefix}_crop"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": f"{prefix}_mask"}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"{prefix}_back"}},
    }


@needs_mediapipe
@pytest.mark.parametrize("photo", PHOTOS)
def test_crop_and_paste_back_round_trip_on_a_photo(comfy_server, comfy_client, inputs, photo):
    result = comfy_client.run(crop_graph(photo, f"faces/{Path(photo).stem}"), timeout=300)
    assert ui_text(result) == "face found in the image (mediapipe)"
    orig, crop, mask, back = (saved(result, comfy_server, n)[0] for n in ("10", "11", "12", "13"))
    h, w = orig.shape[:2]
    assert crop.shape == (256, 256, 3) and mask.shape == (256, 256, 3)
    assert back.shape == (h - h % 2, w - w % 2, 3)

    obs = detect_faces(orig[None], "mediapipe")[0]
    _, info = crop_face(orig, obs, 256, expand=1.2, align=True)
    orig = orig[: back.shape[0], : back.shape[1]].astype(int)
    outside = ~square_region(info, back.shape[:2], margin=4)
    assert outside.mean() > 0.3
    assert np.array_equal(back[outside], orig[outside])  # bit for bit outside the pasted square
    face = face_region_mask(obs, h, w)[: back.shape[0], : back.shape[1]] > 0.5
    assert 0.1 < np.abs(back[face] - orig[face]).mean() < 6  # pasted, through two resamplings (0..255)

    values = mask[..., 0] / 255.0
    assert values.min() == 0.0 and values.max() == 1.0 and 0.2 < values.mean() < 0.8
    interior = np.delete(obs.landmarks, layouts.MP_FACE_OVAL, axis=0)
    x, y = np.clip(np.round(info.to_crop_points(interior)).astype(int), 0, 255).T
    assert (values[y, x] > 0.5).mean() > 0.95  # the mask covers the detected face


@needs_mediapipe
def test_odd_sizes_and_generated_frames_of_another_size_give_even_outputs(comfy_server, comfy_client, inputs):
    graph = crop_graph("astronaut_odd.png", "faces/odd", generated=["5", 0])
    graph["5"] = {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "area", "width": 64,
                                                         "height": 64, "crop": "disabled"}}
    result = comfy_client.run(graph, timeout=300)
    orig, back = saved(result, comfy_server, "10")[0], saved(result, comfy_server, "13")[0]
    assert orig.shape == (385, 449, 3) and back.shape == (384, 448, 3)
    assert np.array_equal(back[:, :40], orig[:384, :40])  # the flag side is far from the face
    face = face_region_mask(detect_faces(orig[None], "mediapipe")[0], 384, 448) > 0.5
    assert 1 < np.abs(back[face].astype(int) - orig[:384, :448][face]).mean() < 8  # a 64-pixel face, upscaled


@pytest.mark.parametrize("image", ["noise_odd.png", "flat_512.png"])
def test_a_faceless_photo_gets_the_centre_crop_and_a_message(comfy_server, comfy_client, inputs, image):
    result = comfy_client.run(crop_graph(image, f"faces/{Path(image).stem}", size=128), timeout=300)
    assert result.outcome == "execution_success"
    assert ui_text(result) == "image 1 of 1: no face found: centre crop used"
    assert "PortraitTalk Crop Face: image 1 of 1: no face found" in comfy_server.log_text()
    orig, crop, mask, back = (saved(result, comfy_server, n)[0] for n in ("10", "11", "12", "13"))
    h, w = orig.shape[:2]
    assert crop.shape == (128, 128, 3) and back.shape == (h - h % 2, w - w % 2, 3)
    values = mask[..., 0] / 255.0
    assert values[64, 64] == 1.0 and values[0, 0] == 0.0
    assert abs(values.mean() - math.pi * 0.4 ** 2) < 0.02  # the fallback guess's ellipse, 80% of the crop
    if image.startswith("flat"):
        assert np.abs(crop.astype(int) - orig[0, 0]).max() <= 1
        assert np.abs(back.astype(int) - orig).max() <= 1


@needs_mediapipe
def test_a_mixed_batch_crops_every_image(comfy_server, comfy_client, inputs):
    graph = crop_graph("astronaut.jpg", "faces/batch")
    graph["5"] = {"class_type": "LoadImage", "inputs": {"image": "noise_512.png"}}
    graph["6"] = {"class_type": "LoadImage", "inputs": {"image": "flat_512.png"}}
    graph["7"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["5", 0]}}
    graph["8"] = {"class_type": "ImageBatch", "inputs": {"image1": ["7", 0], "image2": ["6", 0]}}
    graph["2"]["inputs"]["image"] = graph["3"]["inputs"]["original"] = graph["10"]["inputs"]["images"] = ["8", 0]
    result = comfy_client.run(graph, timeout=300)
    assert ui_text(result) == "images 2, 3 of 3: no face found: centre crop used"
    origs, backs = saved(result, comfy_server, "10"), saved(result, comfy_server, "13")
    assert len(backs) == 3 and all(b.shape == (512, 512, 3) for b in backs)
    assert len(saved(result, comfy_server, "11")) == 3 and len(saved(result, comfy_server, "12")) == 3
    face = face_region_mask(detect_faces(origs[0][None], "mediapipe")[0], 512, 512) > 0.5
    assert np.abs(backs[0][face].astype(int) - origs[0][face]).mean() < 6
    assert np.abs(backs[2].astype(int) - origs[2]).max() <= 1


def test_fallback_backend_and_wrong_original_are_reported(comfy_server, comfy_client, inputs):
    result = comfy_client.run(crop_graph("grace_hopper.jpg", "faces/fallback", backend="fallback"), timeout=300)
    assert "no face detector available: centre crop used" in ui_text(result)
    assert saved(result, comfy_server, "13")[0].shape == (512, 436, 3)

    graph = crop_graph("grace_hopper.jpg", "faces/wrong", backend="fallback")
    graph["5"] = {"class_type": "LoadImage", "inputs": {"image": "astronaut.jpg"}}
    graph["3"]["inputs"]["original"] = ["5", 0]
    result = comfy_client.run(graph, timeout=300, expect="execution_error")
    assert "connect the image that was cropped" in result.describe_error()


def test_backend_is_validated(comfy_client, inputs):
    graph = crop_graph("grace_hopper.jpg", "faces/bad", backend="insightface")
    del graph["10"]  # every output depends on the bad node, so the prompt is refused as a whole
    with pytest.raises(Exception) as info:
        comfy_client.queue(graph)
    assert "backend" in str(getattr(info.value, "body", info.value))


@needs_mediapipe
@pytest.mark.slow  # about a minute on 2 CPU cores
def test_generation_from_a_photo_to_a_full_frame_video(comfy_server, comfy_client, inputs, tiny_model):
    graph = generation_graph(tiny_model, steps=2, prefix="portraittalk/photo", image=["20", 0])
    graph["19"] = {"class_type": "LoadImage", "inputs": {"image": "grace_hopper.jpg"}}
    graph["20"] = {"class_type": "PortraitTalkCropFace",
                   "inputs": {"image": ["19", 0], "size": 64, "expand": 1.2, "align": True, "backend": "auto"}}
    graph["12"]["inputs"]["structure"] = ["20", 2]
    graph["21"] = {"class_type": "PortraitTalkPasteBack",
                   "inputs": {"images": ["13", 0], "crop_info": ["20", 1], "original": ["19", 0], "feather": 0.1,
                              "colour_match": True}}
    graph["14"]["inputs"]["images"] = ["21", 0]
    result = comfy_client.run(graph, timeout=900)
    videos = [p for p in result.output_files(comfy_server.output_dir) if p.suffix == ".mp4"]
    assert len(videos) == 1
    assert video_summary(videos[0]) == {"frames": speech_frames(), "width": 436, "height": 512, "rate": 25.0,
                                        "audio": 1}

    # The generated face is in the video, and the rest of the photograph around it.
    photo = inputs["grace_hopper.jpg"][:, :436].astype(int)
    obs = detect_faces(photo[None].astype(np.uint8), "mediapipe")[0]
    _, info = crop_face(photo.astype(np.uint8), obs, 64, expand=1.2, align=True)
    frame = first_frame(videos[0]).astype(int)
    face = face_region_mask(obs, 512, 436) > 0.5
    outside = ~square_region(info, (512, 436), margin=2)
    assert np.abs(frame[outside] - photo[outside]).mean() < 4  # video compression only
    assert np.abs(frame[face] - photo[face]).mean() > 10  # a random model's face, not the photo's


def square_region(info, shape, margin: float) -> np.ndarray:
    """Pixels of the original whose centres fall inside the crop square, grown by `margin` crop pixels."""
    ys, xs = np.mgrid[0: shape[0], 0: shape[1]]
    points = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    u, v = info.to_crop_points(points).T
    inside = (u > -margin) & (u < info.size + margin) & (v > -margin) & (v < info.size + margin)
    return inside.reshape(shape)


def first_frame(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def ui_text(result) -> str:
    return result.outputs("2")["text"][0]  # Crop Face's message


def saved(result, server, node: str) -> list[np.ndarray]:
    return [_rgb(Path(server.output_dir) / item.get("subfolder", "") / item["filename"])
            for item in result.outputs(node)["images"]]


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
