"""Face tools on synthetic frames: no model files needed."""

import json

import numpy as np
import pytest

from comfyui_portraittalk.faces import (
    CropInfo, FaceObservation, FaceTrack, analyze_synthtalk, analyze_video, crop_face,
    detect_faces, face_region_mask, feather_mask, masks_for_frames, paste_back,
)
from comfyui_portraittalk.faces.testing import draw_face, draw_talking_clip


def test_colour_aperture_is_monotone_in_drawn_mouth_height():
    heights = [0, 2, 4, 6, 8, 10, 12, 14]
    obs = analyze_synthtalk(np.stack([draw_face(96, h) for h in heights]))
    apertures = [o.mouth_open for o in obs]
    assert apertures[0] == 0.0
    assert all(b > a for a, b in zip(apertures, apertures[1:])), apertures
    # Aperture is the mouth height over the face height (0.66·96 px), within a pixel.
    face_h = obs[-1].height
    assert abs(apertures[-1] * face_h - 14) < 1.0


def test_colour_tolerance_accepts_drifted_mouth_colour():
    img = draw_face(96, 10)
    mouth = np.all(img == (110, 20, 35), axis=-1)
    drifted = img.astype(int)
    drifted[mouth] += (15, 12, -10)  # distance ~22: a generated frame's drift
    drifted = np.clip(drifted, 0, 255).astype(np.uint8)
    assert analyze_synthtalk(drifted)[0].mouth_open > 0.1
    assert analyze_synthtalk(drifted, tolerance=1.0)[0].mouth_open == 0.0


def test_colour_analyser_accepts_float_frames_and_blank_frames():
    img = draw_face(64, 8)
    a = analyze_synthtalk(img)[0]
    b = analyze_synthtalk(img.astype(np.float32) / 255.0)[0]
    assert a.mouth_open == pytest.approx(b.mouth_open)
    assert analyze_synthtalk(np.full((1, 64, 64, 3), 80, np.uint8)) == [None]
    assert a.landmarks.shape == (32, 2) and a.source == "colour"


def test_faceless_frames_never_raise():
    frames = np.zeros((3, 48, 48, 3), np.uint8)
    assert detect_faces(frames, "colour") == [None, None, None]
    fb = detect_faces(frames, "fallback")
    assert all(o.source == "fallback" and o.landmarks is None for o in fb)
    crop, info = crop_face(frames[0], None, 32)
    assert crop.shape == (32, 32, 3) and not info.face_found and "no face" in info.message
    crop, info = crop_face(frames[0], fb[0], 32)
    assert not info.face_found and info.message
    assert detect_faces(np.zeros((0, 8, 8, 3), np.uint8), "colour") == []
    with pytest.raises(ValueError, match="unknown face backend"):
        detect_faces(frames, "insightface")


def test_face_track_fills_gaps_and_reports_them():
    good = analyze_synthtalk(draw_face(64, 6))[0]
    track = FaceTrack.from_observations([None, good, None, None, good], 64, 64)
    assert track.filled_frames == [0, 2, 3]
    assert all(o is not None for o in track.observations)
    assert track.observations[2].filled and not track.observations[1].filled
    assert track.boxes.shape == (5, 4) and track.smoothed_boxes(3).shape == (5, 4)
    empty = FaceTrack.from_observations([None, None], 64, 64)
    assert not empty.found_any and empty.filled_frames == [0, 1]


@pytest.mark.parametrize("size", [64, 65])
def test_crop_paste_round_trip_restores_face_and_gives_even_sizes(size):
    img = draw_face(size * 2 + 1, 12, centre=(0.45, 0.55))  # odd original size
    obs = analyze_synthtalk(img)[0]
    crop, info = crop_face(img, obs, size, expand=1.3)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    back = paste_back(crop[None].astype(np.float32) / 255.0, info, img, colour_match=True)
    h, w = back.shape[1:3]
    assert h % 2 == 0 and w % 2 == 0 and (h, w) == (img.shape[0] - 1, img.shape[1] - 1)
    face = face_region_mask(obs, img.shape[0], img.shape[1])[:h, :w] > 0.5
    err = np.abs(back[0] - img[:h, :w] / 255.0).mean(axis=-1)
    assert err[face].mean() < 0.03
    # Outside the crop square the original is untouched.
    assert np.array_equal(np.rint(back[0, :2, :2] * 255), img[:2, :2])


def test_paste_back_colour_match_removes_a_global_tint():
    img = draw_face(128, 10)
    obs = analyze_synthtalk(img)[0]
    crop, info = crop_face(img, obs, 64)
    tinted = np.clip(crop.astype(int) + (40, -30, 20), 0, 255).astype(np.uint8)[None]
    face = face_region_mask(obs, 128, 128) > 0.5
    plain = paste_back(tinted, info, img, colour_match=False)[0].astype(float)
    matched = paste_back(tinted, info, img, colour_match=True)[0].astype(float)
    assert np.abs(matched - img)[face].mean() < 0.5 * np.abs(plain - img)[face].mean()


def test_paste_back_takes_per_frame_infos_and_originals():
    clip = draw_talking_clip([0, 6, 12], size=96, head_motion=0.03)
    obs = analyze_synthtalk(clip)
    crops, infos = zip(*(crop_face(f, o, 48) for f, o in zip(clip, obs)))
    back = paste_back(np.stack(crops), list(infos), clip, feather=0.2)
    assert back.shape == (3, 96, 96, 3) and back.dtype == np.uint8
    with pytest.raises(ValueError):
        paste_back(np.stack(crops), list(infos)[:2], clip)


def test_cropinfo_round_trips_through_json_and_maps_points():
    img = draw_face(100, 8)
    obs = analyze_synthtalk(img)[0]
    _, info = crop_face(img, obs, 50)
    again = CropInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    centre = info.to_crop_points(np.array([[info.centre_x, info.centre_y]]))
    assert np.allclose(centre, [[25, 25]])


def test_masks_shapes_and_ranges():
    img = draw_face(80, 10)
    obs = analyze_synthtalk(img)[0]
    face = face_region_mask(obs, 80, 80, "face")
    lip = face_region_mask(obs, 80, 80, "lip")
    assert face.shape == (80, 80) and face.dtype == np.float32
    assert 0 <= face.min() and face.max() <= 1 and lip.sum() < face.sum()
    # The lip hull covers the drawn mouth.
    mouth = np.all(img == (110, 20, 35), axis=-1)
    assert lip[mouth].mean() > 0.8
    # No landmarks: ellipses from the box; None: empty mask.
    boxed = FaceObservation(box=(20, 10, 60, 70), source="fallback")
    assert face_region_mask(boxed, 80, 80, "lip").sum() > 0
    assert face_region_mask(None, 80, 80).sum() == 0
    assert masks_for_frames([obs, None], 80, 80, "lip").shape == (2, 80, 80)
    with pytest.raises(ValueError):
        face_region_mask(obs, 80, 80, "eyes")


def test_feather_mask_is_one_inside_and_soft_at_the_edge():
    m = feather_mask(40, 0.1)
    assert m[20, 20] == 1.0 and m[0, 20] < 0.1 and m.min() >= 0


def test_analyze_video_caches_by_content(tmp_path):
    clip = draw_talking_clip([0, 4, 8, 4], size=48)
    first = analyze_video(clip, "colour", cache_dir=tmp_path)
    files = list(tmp_path.glob("faces-*.npz"))
    assert len(files) == 1
    second = analyze_video(clip, "colour", cache_dir=tmp_path)
    assert [o.mouth_open for o in first] == pytest.approx([o.mouth_open for o in second])
    assert np.allclose(first[2].landmarks, second[2].landmarks)
    analyze_video(clip[::-1].copy(), "colour", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("faces-*.npz"))) == 2


def test_observation_dict_round_trip():
    obs = analyze_synthtalk(draw_face(64, 6))[0]
    again = FaceObservation.from_dict(json.loads(json.dumps(obs.to_dict())))
    assert again.box == obs.box and np.allclose(again.landmarks, obs.landmarks)
    blank = FaceObservation(box=(0, 0, 1, 1))
    assert json.dumps(blank.to_dict())  # NaN mouth values become null
