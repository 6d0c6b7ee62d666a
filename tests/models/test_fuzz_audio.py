"""Fuzzing the audio front end (hypothesis): whatever a graph hands to `prepare_waveform`, the answer is
mono float32 16 kHz audio of the right length with finite samples, or an `AudioInputError` whose
message names the input. Nothing else escapes, nothing hangs, and nothing touches the network.

Derandomised by default, so CI sees the same examples every run; set PORTRAITTALK_FUZZ_EXAMPLES
(e.g. 5000) and PORTRAITTALK_FUZZ_RANDOM=1 to search further locally.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from comfyui_portraittalk.models.networks.audio import (MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATE, AudioInputError,
                                               MelEncoder, prepare_waveform)
from comfyui_portraittalk.models.audio_contract import num_video_frames

from comfyui_harness.offline import no_network  # tests/nodes (tests/ is on sys.path, as for conftest)

EXAMPLES = int(os.environ.get("PORTRAITTALK_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("PORTRAITTALK_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The whole front end (mel features + the tiny model's audio projection) costs more per example: a third.
FRONT_END = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))
NAME = "fuzzed.wav"
SECONDS_PER_CALL = 10.0  # far above what any example needs: a hang, not a slow machine


@pytest.fixture(scope="module", autouse=True)
def offline_and_warm():
    with no_network() as refused:
        prepare_waveform(np.zeros(1600, np.float32), 8000)  # import librosa/soxr once, outside the timings
        yield
    assert not refused, refused


SPECIALS = [0.0, -0.0, 1.0, -1.0, 1.5, -1.5, 32767.0, -32768.0, 33200.0, 1e-30, 1e30, float("nan"), float("inf"),
            -float("inf")]
WIDTHS = {np.float16: 16, np.float32: 32, np.float64: 64}


def in_dtype(x: float, dtype) -> float:
    with np.errstate(over="ignore"):
        return float(np.array(x, dtype=dtype))  # what the value becomes in that dtype (1e30 → inf in float16)


def elements_for(dtype):
    width = WIDTHS[dtype]
    return st.one_of(st.floats(-1.0, 1.0, width=width), st.floats(-40000.0, 40000.0, width=width),
                     st.sampled_from(SPECIALS).map(lambda x: in_dtype(x, dtype)))


shapes = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=4000),
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=8).map(lambda s: (s[0], s[1] * 300)),
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=6).map(lambda s: (s[0], s[1], s[2] * 400)),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
)
dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8, np.bool_])
rates = st.one_of(
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000]),
    st.integers(-10, 2 * MAX_SAMPLE_RATE),
    st.sampled_from([0, 1, 999, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MAX_SAMPLE_RATE + 1, 10**12, -16000]),
    st.sampled_from([16000.0, 44100.0, 44100.5, float("nan"), float("inf"), True, None, "16000", [16000]]),
)


@st.composite
def waveforms(draw):
    dtype = draw(dtypes)
    shape = draw(shapes)
    elements = elements_for(dtype) if dtype in WIDTHS else None
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    kind = draw(st.sampled_from(["numpy", "torch", "list"]))
    if kind == "torch":
        return torch.from_numpy(np.ascontiguousarray(array))
    if kind == "list" and array.size < 500:
        return array.tolist()
    return array


def resampled_length(n: int, rate: int) -> int:
    return n if rate == SAMPLE_RATE else math.ceil(n * SAMPLE_RATE / rate)


@FUZZ
@given(wave=waveforms(), rate=rates)
def test_prepare_waveform_gives_audio_or_a_clear_error(wave, rate):
    start = time.monotonic()
    try:
        out = prepare_waveform(wave, rate, name=NAME)
    except AudioInputError as err:
        message = str(err)
        assert message.startswith(f"{NAME}: "), message
        assert len(message) < 500 and "Traceback" not in message, message
        return
    finally:
        assert time.monotonic() - start < SECONDS_PER_CALL
    array = np.asarray(wave.numpy() if isinstance(wave, torch.Tensor) else wave, dtype=np.float64)
    n = array.shape[-1]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - resampled_length(n, int(rate))) <= 1, (len(out), n, rate)
    assert np.isfinite(out).all()


@FRONT_END
@given(wave=waveforms(), rate=rates)
def test_the_whole_front_end_gives_one_token_set_per_frame(tiny_pipe, wave, rate):
    try:
        wav = prepare_waveform(wave, rate, name=NAME)
    except AudioInputError:
        return
    embeds = tiny_pipe.encode_audio(features=MelEncoder()(wav), num_samples=len(wav), fps=25.0)
    frames = num_video_frames(len(wav), SAMPLE_RATE, 25.0)
    assert embeds.num_frames == frames and embeds.tokens.shape[0] == frames
    assert torch.isfinite(embeds.tokens).all()


@pytest.mark.parametrize("rate", [8000, 96000])
def test_known_rates_keep_the_duration(rate):
    n = int(0.37 * rate)
    out = prepare_waveform(np.sin(np.arange(n) / 5.0).astype(np.float32) * 0.3, rate, name=NAME)
    assert abs(len(out) / SAMPLE_RATE - n / rate) < 1 / SAMPLE_RATE * 2


@pytest.mark.parametrize("rate", [0, 1, 999, MAX_SAMPLE_RATE + 1, 44100.5, float("nan"), "16000", None, True])
def test_impossible_sample_rates_are_named(rate):
    with pytest.raises(AudioInputError, match=f"^{NAME}: sample rate"):
        prepare_waveform(np.zeros(1600, np.float32), rate, name=NAME)


def test_integral_float_rates_are_accepted():
    out = prepare_waveform(np.zeros(441, np.float32), 44100.0, name=NAME)
    assert len(out) == 160
