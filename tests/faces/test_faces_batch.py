"""faces.batch, the helpers behind Crop Face and Paste Back, without a ComfyUI server."""

import numpy as np
import pytest

from comfyui_portraittalk.faces import analyze_synthtalk, crop_face, crop_with_info
from comfyui_portraittalk.faces.batch import (check_count, crop_mask, crop_report, feathered_weights, match_colours,
                                              paste_infos)
from comfyui_portraittalk.faces.testing import draw_face


def _photo(size=96, mouth=8):
    return draw_face(size, mouth)


def test_crop_mask_covers_the_face_and_a_faceless_photo_still_gets_a_central_ellipse():
    photo = _photo()
    obs = analyze_synthtalk(photo)[0]
    _, info = crop_face(photo, obs, 64)
    mask = crop_mask(obs, info)
    assert mask.shape == (64, 64) and 0 < mask.mean() < 1
    blank = np.full((80, 120, 3), 200, np.uint8)
    _, blank_info = crop_face(blank, None, 64)
    guess = crop_mask(None, blank_info)
    assert guess.shape == (64, 64) and guess[32, 32] > 0 and guess[0, 0] == 0


def test_crop_report_groups_faceless_images_by_reason():
    photo = _photo()
    found = crop_face(photo, analyze_synthtalk(photo)[0], 64)[1]
    lost = crop_face(photo, None, 64)[1]
    assert crop_report([found], "colour") == "face found in the image (colour)"
    assert crop_report([found] * 3, "colour") == "face found in all 3 images (colour)"
    line = crop_report([found, lost, found, lost], "colour")
    assert line.startswith("images 2, 4 of 4: ") and lost.message in line
    assert crop_report([lost] * 2, "fallback").startswith("all 2 images: ")
    assert crop_report([found] * 11 + [lost] * 12, "colour").count(",") == 10  # ten numbers, then "…"


def test_paste_infos_repeats_one_crop_resized_to_the_frames_and_refuses_another_original():
    photo = _photo()
    info = crop_face(photo, analyze_synthtalk(photo)[0], 64)[1]
    infos = paste_infos([info], 5, 32, 96, 96)
    assert len(infos) == 5 and all(i.size == 32 and i.side == info.side for i in infos)
    assert info.size == 64  # the node's crop_info is not changed
    with pytest.raises(ValueError, match="made on a 96×96 image, but the original is 100×96"):
        paste_infos([info], 5, 32, 96, 100)
    with pytest.raises(ValueError, match="2 crop_info entries for 5 frames"):
        paste_infos([info, info], 5, 32, 96, 96)


def test_match_colours_moves_the_generated_crops_towards_the_original():
    photo = _photo()
    info = crop_face(photo, analyze_synthtalk(photo)[0], 64)[1]
    originals = photo[None].astype(np.float32) / 255.0  # the node's IMAGE, float 0..1
    ramp = np.linspace(-0.1, 0.1, 64, dtype=np.float32)[None, :, None, None]
    gen = np.broadcast_to(np.float32(0.5) + ramp, (3, 64, 64, 3)).copy()
    out = match_colours(gen, [info] * 3, originals, 0.1)
    target = (crop_with_info(photo, info).astype(np.float32) / 255.0).reshape(-1, 3).mean(axis=0)
    assert out.shape == gen.shape
    before = np.abs(gen.reshape(-1, 3).mean(axis=0) - target).sum()
    after = np.abs(out.reshape(-1, 3).mean(axis=0) - target).sum()
    assert after < before
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)  # pooled over frames: identical frames stay identical


def test_feathered_weights_soften_the_edge_and_keep_the_range():
    hard = np.zeros((1, 40, 40), np.float32)
    hard[:, 10:30, 10:30] = 1.0
    assert feathered_weights(hard, 0.0) is hard
    soft = feathered_weights(hard, 0.2)
    assert soft.shape == hard.shape and 0.0 <= soft.min() and soft.max() <= 1.0
    assert 0.1 < soft[0, 20, 10] < 0.9  # the edge is now a ramp
    assert soft[0, 20, 20] > 0.9 and soft[0, 0, 0] < 0.1


def test_check_count_takes_one_or_one_per_frame():
    check_count(1, 7, "masks")
    check_count(7, 7, "masks")
    with pytest.raises(ValueError, match="3 masks for 7 frames"):
        check_count(3, 7, "masks")
