"""mediapipe landmark backend on real public-domain photos; skipped without mediapipe.

Photos: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain) and
matplotlib's ``grace_hopper.jpg`` (US Navy, public domain).
"""

import logging

import numpy as np
import pytest

from comfyui_portraittalk.faces import (
    crop_face, detect_faces, face_region_mask, layouts, mediapipe_backend, paste_back, resolve_backend,
)

needs_mediapipe = pytest.mark.skipif(
    not mediapipe_backend.is_available(), reason="mediapipe or face_landmarker.task not installed (faces extra)"
)


def _astronaut():
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def _grace_hopper():
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def test_auto_backend_without_mediapipe_falls_back_with_install_hint(monkeypatch, caplog):
    from comfyui_portraittalk.faces import detect
    monkeypatch.setattr(mediapipe_backend, "is_available", lambda *a, **k: False)
    monkeypatch.setattr(detect, "_warned_missing", False)
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto") == "fallback"
    assert "pip install comfyui-portraittalk[faces]" in caplog.text
    obs = detect_faces(np.zeros((2, 40, 60, 3), np.uint8), "auto")
    assert [o.source for o in obs] == ["fallback", "fallback"]


def test_missing_explicit_model_path_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.task"):
        mediapipe_backend.find_model_path(tmp_path / "nowhere.task")


@needs_mediapipe
def test_layout_indices_match_mediapipe_connections():
    from mediapipe.tasks.python import vision
    conns = vision.FaceLandmarksConnections
    oval = {c.start for c in conns.FACE_LANDMARKS_FACE_OVAL}
    lips = {c.start for c in conns.FACE_LANDMARKS_LIPS} | {c.end for c in conns.FACE_LANDMARKS_LIPS}
    assert set(layouts.MP_FACE_OVAL) == oval
    assert set(layouts.MP_LIPS_OUTER) | set(layouts.MP_LIPS_INNER) == lips


@needs_mediapipe
@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_real_photo_gives_landmarks_crop_and_round_trip(photo):
    img = _astronaut() if photo == "astronaut" else _grace_hopper()
    obs = detect_faces(img[None], "mediapipe")[0]
    assert obs is not None and obs.source == "mediapipe"
    assert obs.landmarks.shape == (478, 2)
    x0, y0, x1, y1 = obs.box
    assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    assert 0.0 <= obs.mouth_open < 0.3 and 0.2 < obs.mouth_width < 0.7

    crop, info = crop_face(img, obs, 128, align=True)
    assert crop.shape == (128, 128, 3) and info.face_found and abs(info.angle) < 20
    back = paste_back(crop[None], info, img)
    h, w = back.shape[1:3]
    assert h % 2 == 0 and w % 2 == 0
    face = face_region_mask(obs, img.shape[0], img.shape[1])[:h, :w] > 0.5
    assert face.sum() > 1000
    err = np.abs(back[0].astype(float) - img[:h, :w]).mean(axis=-1)
    assert err[face].mean() < 12  # two resamplings of a detailed photo, on a 0..255 scale

    lip = face_region_mask(obs, img.shape[0], img.shape[1], "lip")
    assert 0 < lip.sum() < 0.2 * face.sum()


@needs_mediapipe
def test_astronaut_face_is_where_it_is():
    obs = detect_faces(_astronaut()[None], "mediapipe")[0]
    cx, cy = obs.centre
    assert 190 < cx < 260 and 90 < cy < 160  # her face, not the flag or the suit


@needs_mediapipe
def test_faceless_frames_give_none_within_a_batch():
    img = _astronaut()
    noise = np.random.default_rng(0).integers(0, 255, img.shape, dtype=np.uint8)
    obs = detect_faces(np.stack([np.zeros_like(img), img, noise]), "mediapipe")
    assert obs[0] is None and obs[1] is not None and obs[2] is None
