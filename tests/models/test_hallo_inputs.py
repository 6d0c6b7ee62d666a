"""Hallo's inputs: wav2vec2 run at the video's frame rate, the ArcFace embedding (alignment, ONNX call, zero
fallback with a warning) and the reference analysis that feeds the identity tokens and the region masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def small_wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4)
    return Wav2Vec2Model(config).eval()


def test_wav2vec2_runs_at_the_video_rate_on_the_padded_clip(small_wav2vec2):
    from comfyui_portraittalk.models.networks.audio import Wav2Vec2Encoder

    rng = np.random.default_rng(0)
    wav = rng.standard_normal(16000 + 3200).astype(np.float32) * 0.1  # 1.2 s: 30 frames at 25 fps
    encoder = Wav2Vec2Encoder(small_wav2vec2)
    features = encoder.at_frame_rate(wav, 25.0, pad_frames_to=16)
    assert features.values.shape == (32, 2, 32) and features.rate == 25.0  # padded to two windows of 16
    # by hand: normalise, pad, CNN features interpolated to 32 frames, then projection and encoder
    x = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
    x = torch.from_numpy(np.pad(x, (0, 2 * 640)))[None]
    with torch.no_grad():
        cnn = small_wav2vec2.feature_extractor(x)
        cnn = torch.nn.functional.interpolate(cnn, size=32, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = small_wav2vec2.feature_projection(cnn)
        last = small_wav2vec2.encoder(hidden).last_hidden_state[0]
    assert torch.allclose(features.values[:, -1], last, atol=1e-5)
    assert not torch.equal(encoder(wav).values[:32, -1], features.values[:, -1])  # the 50 Hz path differs


def _mesh(size: int = 256) -> np.ndarray:
    """A plausible face mesh: every point on the face's centre, the five ArcFace points where they belong."""
    pts = np.full((478, 2), size / 2, np.float64)
    pts[468], pts[473] = (100, 110), (156, 110)  # iris centres
    pts[1] = (128, 140)
    pts[61], pts[291] = (105, 170), (151, 170)
    return pts


def test_alignment_puts_the_five_points_on_arcfaces_template():
    from comfyui_portraittalk.models.networks.arcface import TEMPLATE, five_points, similarity

    pts = five_points(_mesh())
    matrix = similarity(pts, TEMPLATE)
    mapped = pts @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - TEMPLATE).max() < 3.0  # a similarity fit of five roughly placed points


class FakeSession:
    """Stands for an onnxruntime session of a recognition model: records its input, returns a fixed vector."""

    def __init__(self):
        self.blob = None

    def get_inputs(self):
        return [type("Input", (), {"name": "input.1"})()]

    def run(self, outputs, feeds):
        self.blob = feeds["input.1"]
        return [np.arange(512, dtype=np.float32)[None]]


def test_embedding_runs_the_model_on_the_aligned_face():
    from comfyui_portraittalk.models.networks.arcface import embed

    image = np.zeros((256, 256, 3), np.uint8)
    image[90:190, 80:176] = (200, 150, 120)
    session = FakeSession()
    vector, how = embed(image, _mesh(), session=session)
    assert vector.shape == (512,) and vector[3] == 3.0 and how.startswith("arcface")
    assert session.blob.shape == (1, 3, 112, 112) and session.blob.dtype == np.float32
    assert session.blob.min() >= -1.0 and session.blob.max() <= 1.0 and session.blob[0, 0, 56, 56] > 0.5


def test_without_a_model_the_embedding_is_zeros_with_a_warning():
    from comfyui_portraittalk.models.networks.arcface import embed

    warnings = []
    vector, how = embed(np.zeros((64, 64, 3), np.uint8), _mesh(64), None, warn=warnings.append)
    assert not vector.any() and how.startswith("zeros")
    assert warnings and "identity will be weaker" in warnings[0]
    vector, how = embed(np.zeros((64, 64, 3), np.uint8), None, "unused.onnx", warn=warnings.append)
    assert not vector.any() and "no face landmarks" in how


def test_reference_analysis_without_face_tools_gives_box_masks_and_zero_embeddings(monkeypatch, tmp_path):
    from comfyui_portraittalk.faces import detect
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from hallo_fixtures import tiny_hallo_config

    monkeypatch.setattr(detect.mediapipe_backend, "is_available", lambda path=None: False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.insightface models
    pipe = PortraitTalkPipeline.from_config(tiny_hallo_config(), seed=0)
    warnings = []
    embeds, regions, notes = pipe.reference_analysis(np.zeros((1, 64, 64, 3), np.uint8), warn=warnings.append)
    assert embeds.shape == (1, 32) and not embeds.any()
    assert regions.source == "box" and regions.face_box.shape == (64, 64)
    assert notes[0].startswith("zeros")
