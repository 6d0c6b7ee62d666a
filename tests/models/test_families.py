"""Model families: each shipped config is its family, and the tests' tiny model in Hallo's layout gets Hallo's
answers from its keys while keeping the tiny family's name and size."""

from __future__ import annotations

import pytest

from hallo_fixtures import tiny_hallo_config


@pytest.mark.parametrize("name", ["tiny", "sd15", "hallo"])
def test_a_shipped_config_is_its_family(name):
    from comfyui_portraittalk.models.config import load_config
    from comfyui_portraittalk.models.families import SHIPPED, family_of

    assert family_of(load_config(name)) == SHIPPED[name]


def test_the_families_answer_the_questions_the_generic_code_asks():
    from comfyui_portraittalk.models.families import HALLO, SD15, TINY

    for family in (TINY, SD15):
        assert not family.arcface_identity and not family.identity_is_base and not family.joint_guidance
        assert family.identity_source == "clip" and family.base_stream == "text" and family.motion_frames == 0
        assert family.long_audio_scheme() == "blended" and family.long_audio_scheme("motion_frames") == "blended"
        assert family.reference_side(512, 300, 900) == 512
    assert HALLO.arcface_identity and HALLO.identity_is_base and HALLO.joint_guidance
    assert HALLO.identity_source == "arcface" and HALLO.base_stream == "identity" and HALLO.motion_frames == 2
    assert HALLO.long_audio_scheme() == "motion_frames" and HALLO.long_audio_scheme("blended") == "blended"
    assert HALLO.reference_side(512, 300, 900) == 256  # the shorter side, down to a multiple of 64
    assert HALLO.reference_side(512, 40, 40) == 64 and HALLO.reference_side(512, 2000, 3000) == 1024


def test_the_tiny_hallo_layout_answers_as_hallo_from_its_keys():
    from comfyui_portraittalk.models.families import Family, family_of

    assert family_of(tiny_hallo_config()) == Family("tiny", "arcface", "identity", "joint", "motion_frames", 2, False)


def test_an_unknown_long_audio_scheme_is_an_error():
    from comfyui_portraittalk.models.families import HALLO, TINY

    for family in (TINY, HALLO):
        with pytest.raises(ValueError, match="long_audio must be"):
            family.long_audio_scheme("overlapping")


def test_the_pipeline_asks_its_family():
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.families import TINY

    pipe = PortraitTalkPipeline.from_config("tiny")
    assert pipe.family == TINY and pipe.reference_size(300, 900) == pipe.size
    assert pipe.components.identity_net.identity_is_base is False


def test_the_families_say_whose_encoders_they_use():
    from comfyui_portraittalk.models.families import HALLO, SD15, TINY, family_name

    assert not TINY.pretrained_encoders and not TINY.pretrained_audio_encoder  # its own encoders and codec, mel
    for family in (SD15, HALLO):  # CLIP, the SD VAE and wav2vec2, from the user's files
        assert family.pretrained_encoders and family.pretrained_audio_encoder
    assert family_name({"family": "sd15"}) == "sd15" and family_name({}) is None and family_name([1]) is None
