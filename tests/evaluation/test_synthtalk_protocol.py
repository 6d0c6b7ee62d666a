"""The SynthTalk protocol's per-frame measures, on SynthTalk's own ground-truth renders: an attribute the
render has is found in every frame and one it lacks in none, flicker counts the frames against the
majority, feature error is zero on the reference and grows with blur, and a changed background is seen."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from comfyui_portraittalk.evaluation import synthtalk_protocol as protocol
from comfyui_portraittalk.training import synthtalk as st

SIZE = 64
PLAIN = {"glasses": False, "hat": False, "smiling": False, "background": "gray"}


@pytest.fixture(scope="module")
def identity():
    return st.make_identity(2 * 50_000 + 1)


def _mouth(frames=12):
    """The (openness, width) per frame of `_clip`: the mouth opens and closes."""
    t = np.linspace(0, 1, frames)
    return 0.5 + 0.5 * np.sin(9 * t), np.full(frames, 0.5)


def _clip(identity, attributes, frames=12):
    """Ground-truth frames of a speaking face: the mouth opens and closes, the eyes blink once, the head moves
    a little."""
    t = np.linspace(0, 1, frames)
    pose = [(0.01 * np.sin(6 * x), 0.0, 1.0, 0.0) for x in t]
    blink = np.clip(1.0 - np.abs(t - 0.5) * 8, 0.0, 1.0)  # shut at mid-clip
    rendered, _, _ = st.render_frames(identity, attributes, SIZE, *_mouth(frames), blink, pose)
    return rendered


def _blurred(frames):
    return np.stack([gaussian_filter(f.astype(np.float64), (1.0, 1.0, 0)) for f in frames]).round().astype(np.uint8)


@pytest.mark.parametrize("attribute", ["glasses", "hat", "smiling"])
def test_an_attribute_is_found_in_every_frame_that_has_it_and_in_none_that_lacks_it(identity, attribute):
    wanted = dict(PLAIN, **{attribute: True})
    with_it = protocol.attribute_per_frame(_clip(identity, wanted), identity, PLAIN, wanted, SIZE, _mouth())
    without = protocol.attribute_per_frame(_clip(identity, PLAIN), identity, PLAIN, wanted, SIZE, _mouth())
    assert with_it.all() and not without.any()
    assert protocol.flicker(with_it) == 0.0 and protocol.flicker(without) == 0.0


@pytest.mark.parametrize("attribute", ["glasses", "hat", "smiling"])
def test_blinks_and_blur_do_not_read_as_an_attribute(identity, attribute):
    """Blinks narrow the eyes as a smile does, and blur softens them: neither is a smile (or glasses, or a hat)."""
    wanted = dict(PLAIN, **{attribute: True})
    plain, with_it = (protocol.attribute_per_frame(_blurred(_clip(identity, look)), identity, PLAIN, wanted, SIZE,
                                                   _mouth()) for look in (PLAIN, wanted))
    assert not plain.any() and with_it.mean() > 0.5


def test_a_smile_is_read_frame_by_frame_beside_a_speaking_mouth():
    """A speaking mouth covers most of a smile's blush when it opens wide. With the mouth SynthTalk draws for the
    audio, each frame leaves out only where its own lips reach (a frame whose lips hide the smile takes its
    neighbour's reading), so a smile is found in every frame of a speaking, blinking, moving smiling clip and in
    none of a plain one, sharp or blurred."""
    wanted = dict(PLAIN, smiling=True)
    for index, attributes in enumerate((PLAIN, wanted)):
        clip = st.make_clip([31, index], 1.6, SIZE, identity=st.make_identity(2 * 50_003 + 1), attributes=attributes)
        identity = st.Identity.from_dict(clip.meta["identity"])
        mouth = protocol.speech_mouth(clip.audio, clip.sample_rate, len(clip.frames))
        assert np.abs(mouth[0] - clip.meta["per_frame"]["mouth_height"]).max() < 0.1  # the clip's own mouth
        assert max(clip.meta["per_frame"]["mouth_height"]) > 0.8  # it does open wide
        for frames in (clip.frames, _blurred(clip.frames)):
            present = protocol.attribute_per_frame(frames, identity, PLAIN, wanted, SIZE, mouth)
            assert present.all() if attributes["smiling"] else not present.any()


def test_flicker_is_the_share_of_frames_against_the_majority(identity):
    wanted = dict(PLAIN, glasses=True)
    frames = np.concatenate([_clip(identity, PLAIN, 9), _clip(identity, wanted, 3)])  # glasses in 3 of 12
    present = protocol.attribute_per_frame(frames, identity, PLAIN, wanted, SIZE)
    assert present.sum() == 3
    assert protocol.flicker(present) == pytest.approx(0.25)
    assert not protocol.shows_attribute(frames, identity, PLAIN, wanted, SIZE)


def test_feature_error_is_zero_on_the_reference_and_grows_with_blur_and_invented_glasses(identity):
    reference = st.render_reference(identity, PLAIN, size=SIZE)
    mouth = protocol._dilate(protocol._lip_region(identity, PLAIN, SIZE), 3)
    same = protocol.feature_error(reference[None], reference, mouth)
    blurred = lambda sigma: gaussian_filter(reference.astype(np.float64), (sigma, sigma, 0)).round().astype(np.uint8)  # noqa: E731
    slight, strong = (protocol.feature_error(blurred(s)[None], reference, mouth) for s in (0.7, 1.5))
    glasses = protocol.feature_error(st.render_reference(identity, dict(PLAIN, glasses=True), size=SIZE)[None],
                                     reference, mouth)
    assert same == 0.0 and 0.0 < slight < strong and glasses > 3.0
    # the mouth's neighbourhood is left out: a wide-open mouth alone costs nothing there
    speaking = _clip(identity, PLAIN, 12)
    assert protocol.feature_error(speaking, reference, mouth) < slight


def test_another_background_is_seen_per_frame(identity):
    region = protocol._regions(identity, PLAIN, SIZE)[1]
    frames = np.concatenate([_clip(identity, PLAIN, 4), _clip(identity, dict(PLAIN, background="blue"), 2)])
    assert protocol.other_background_per_frame(frames, region, "gray").tolist() == [False] * 4 + [True] * 2


def test_the_protocol_runs_only_the_parts_asked_for(tiny_pipe, tmp_path, capsys):
    """`--parts prompted` measures the text attributes alone (text guidance moves nothing else), and a part the
    protocol lacks is a usage error that names the choices."""
    import json

    from comfyui_portraittalk.cli import main

    model = tiny_pipe.save_pretrained(tmp_path / "tiny.safetensors")
    out = tmp_path / "prompted.json"
    assert main(["eval", "synthtalk", "--model", str(model), "--steps", "2", "--parts", "prompted", "--trials", "1",
                 "--text-guidance", "3.0", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"settings", "attributes", "prompted_attribute_flicker", "seconds"}
    assert set(results["attributes"]) == {"glasses", "hat", "smiling", "background"}
    assert results["settings"]["text_guidance"] == 3.0
    assert all(0.0 <= v <= 1.0 for v in results["attributes"].values())
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["eval", "synthtalk", "--model", str(model), "--parts", "prompted,lips"])
    assert stop.value.code == 2 and "held_out" in capsys.readouterr().err
