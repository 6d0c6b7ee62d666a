"""The audio front end: any rate and layout to mono 16 kHz, features on the video clock, windows, tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_portraittalk.models.networks.audio import (AudioFeatures, AudioInputError, MelEncoder, Wav2Vec2Encoder,
                                               features_from_encoder_output, features_per_frame, frame_windows,
                                               loudness_normalise, prepare_waveform)
from comfyui_portraittalk.models.audio_contract import num_video_frames

from audio_signals import tone


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 96000])
def test_any_rate_becomes_16k_of_the_same_duration(sr):
    wav = prepare_waveform(tone(0.5, sr), sr)
    assert wav.dtype == np.float32 and abs(len(wav) - 8000) <= 2


def test_channels_and_comfyui_batch_layout_become_mono():
    left, right = tone(0.25, 16000, 200), tone(0.25, 16000, 300)
    stereo = np.stack([left, right])
    six = np.concatenate([stereo, np.zeros((4, len(left)), np.float32)])
    a = prepare_waveform(stereo, 16000, normalise=False)
    np.testing.assert_allclose(a, (left + right) / 2, atol=1e-6)
    b = prepare_waveform(torch.from_numpy(six)[None], 16000, normalise=False)
    np.testing.assert_allclose(b, (left + right) / 6, atol=1e-6)


@pytest.mark.parametrize("bad,message", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(1, np.float32), "empty"),
    (np.array([0.1, np.nan, 0.2] * 100, np.float32), "NaN"),
    (np.array([0.1, np.inf] * 100, np.float32), "NaN or infinite"),
    (np.zeros((2, 1, 1600), np.float32), "batch of 2"),
    (np.zeros((2, 2, 2, 10), np.float32), "expected a waveform"),
])
def test_unusable_audio_gets_an_error_that_names_it(bad, message):
    with pytest.raises(AudioInputError, match=message) as info:
        prepare_waveform(bad, 16000, name="speech.wav")
    assert "speech.wav" in str(info.value)


def test_int16_range_floats_are_rescaled():
    wav = tone(0.2, 16000) * 32767 / 0.3 * 0.5
    out = prepare_waveform(wav, 16000, normalise=False)
    assert np.abs(out).max() == pytest.approx(0.5, rel=1e-3)


def test_loudness_normalisation_removes_recording_level_but_keeps_silence():
    quiet, loud = tone(1.0, 16000, amp=0.01), tone(1.0, 16000, amp=0.8)
    a, b = loudness_normalise(quiet), loudness_normalise(loud)
    assert np.sqrt(np.mean(a**2)) == pytest.approx(np.sqrt(np.mean(b**2)), rel=1e-3)
    silence = np.zeros(16000, np.float32)
    assert np.array_equal(loudness_normalise(silence), silence)


def test_frame_count_is_the_ceiling_of_duration_times_fps():
    assert num_video_frames(16000, 16000, 25) == 25
    assert num_video_frames(16001, 16000, 25) == 26
    assert num_video_frames(640, 16000, 25) == 1
    assert num_video_frames(1, 16000, 25) == 1
    assert num_video_frames(int(0.37 * 44100), 44100, 30) == 12


def test_mel_features_follow_loudness_on_the_video_clock():
    sr = 16000
    wav = np.concatenate([tone(0.4, sr, amp=0.5), np.zeros(int(0.4 * sr), np.float32), tone(0.4, sr, amp=0.5)])
    feats = MelEncoder()(wav)
    per_frame = features_per_frame(feats, 30, 25.0)[:, 0]  # [F, 80]
    energy = per_frame.amax(1)  # the loudest band of each frame
    assert energy[2:8].min() > energy[12:18].max() + 0.5  # loud frames well above the silent ones
    assert energy[22:28].min() > energy[12:18].max() + 0.5
    assert torch.allclose(energy[12:18], energy[12:18].min().expand(6), atol=1e-3)  # silence hits the floor


def test_mel_keeps_absolute_level_relative_to_a_fixed_reference():
    quiet, loud = MelEncoder()(tone(0.5, 16000, amp=0.01)), MelEncoder()(tone(0.5, 16000, amp=0.5))
    assert loud.values.amax(-1).mean() > quiet.values.amax(-1).mean() + 0.5  # 34 dB apart


def test_features_per_frame_averages_each_frames_span():
    values = torch.arange(100, dtype=torch.float32).view(100, 1, 1)  # 100 Hz, frame i centred at i/100
    per_frame = features_per_frame(AudioFeatures(values, rate=100.0, offset=0.0), 25, 25.0)
    assert per_frame.shape == (25, 1, 1)
    assert per_frame[0, 0, 0] == pytest.approx(1.5)  # mean of 0, 1, 2, 3
    assert per_frame[10, 0, 0] == pytest.approx(41.5)


def test_features_per_frame_upsamples_sparse_features():
    values = torch.tensor([0.0, 10.0]).view(2, 1, 1)  # 2 Hz
    per_frame = features_per_frame(AudioFeatures(values, rate=2.0, offset=0.25), 25, 25.0)
    assert per_frame[0, 0, 0] == 0 and per_frame[-1, 0, 0] == 10


def test_frame_windows_take_two_neighbours_each_side_clamped():
    per_frame = torch.arange(6, dtype=torch.float32).view(6, 1)
    windows = frame_windows(per_frame, radius=2)
    assert windows.shape == (6, 5, 1)
    assert windows[0, :, 0].tolist() == [0, 0, 0, 1, 2]
    assert windows[3, :, 0].tolist() == [1, 2, 3, 4, 5]
    assert windows[5, :, 0].tolist() == [3, 4, 5, 5, 5]


def test_comfyui_audio_encoder_output_is_accepted():
    layers = [torch.randn(1, 50, 16) for _ in range(3)]
    feats = features_from_encoder_output({"encoded_audio": layers[-1], "encoded_audio_all_layers": layers,
                                          "audio_samples": 16000})
    assert feats.values.shape == (50, 3, 16) and feats.rate == pytest.approx(50.0)
    assert torch.equal(feats.values[:, 1], layers[1][0])
    with pytest.raises(AudioInputError, match="AUDIO_ENCODER_OUTPUT"):
        features_from_encoder_output({"waveform": torch.zeros(1, 1, 10)})


def _tiny_wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    return Wav2Vec2Model(config)


def test_wav2vec2_gives_all_hidden_layers_at_50hz():
    encoder = Wav2Vec2Encoder(_tiny_wav2vec2())
    feats = encoder(prepare_waveform(tone(1.0, 16000), 16000))
    assert feats.values.shape[1:] == (2, 32) and abs(feats.values.shape[0] - 50) <= 1
    assert feats.rate == 50.0


def test_wav2vec2_chunks_long_audio_with_flat_memory_and_consistent_length():
    model = _tiny_wav2vec2()
    wav = prepare_waveform(np.random.default_rng(0).normal(0, 0.1, 16000 * 7).astype(np.float32), 16000)
    whole = Wav2Vec2Encoder(model, chunk_seconds=100)(wav)
    chunked = Wav2Vec2Encoder(model, chunk_seconds=2.0, context_seconds=1.0)(wav)
    assert abs(chunked.values.shape[0] - whole.values.shape[0]) <= 2
    # away from the edges, chunking with context gives features close to the whole-clip pass
    middle = slice(60, 90)
    cos = torch.nn.functional.cosine_similarity(whole.values[middle].flatten(1), chunked.values[middle].flatten(1))
    assert cos.min() > 0.9


def test_pipeline_audio_embeds_have_one_token_set_per_frame(tiny_pipe):
    embeds = tiny_pipe.encode_audio(tone(1.01, 44100), 44100)
    assert embeds.num_frames == 26 and embeds.tokens.shape == (26, 4, 64)
    assert embeds.duration == pytest.approx(1.01, abs=1e-3)
