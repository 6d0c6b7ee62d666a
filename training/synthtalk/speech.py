"""What a SynthTalk clip says: synthetic syllables from a formant model, or words spoken by espeak-ng."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from ...models.audio_contract import SAMPLE_RATE
from .audio_to_mouth import normalize_speech_level

F0_RANGE = (90.0, 260.0)
SYLLABLE_SECONDS = (0.08, 0.30)
SYLLABLE_LEVEL_DB = (-26.0, -14.0)
VOWEL_FORMANTS = {  # Hz, (F1, F2, F3): adult averages, enough to move the centroid
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (300.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (320.0, 870.0, 2240.0),
}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)

TTS_WORDS = ("we", "can", "see", "the", "blue", "sky", "over", "green", "hills", "today", "my", "friend", "made",
             "a", "warm", "cup", "of", "tea", "please", "open", "that", "window", "now", "music", "is", "playing",
             "in", "small", "room", "good", "morning", "everyone", "let", "us", "talk", "about", "your", "day",
             "quiet", "river", "runs", "past", "old", "stone", "bridge", "yellow", "birds", "sing")
TTS_VOICES = ("en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4", "en+m2")


def _formant_gain(freqs: np.ndarray, formants: tuple) -> np.ndarray:
    """Cascade of second-order resonances (unit gain at 0 Hz, peak F/B at each formant)."""
    gain = np.ones_like(freqs)
    for f, b in zip(formants, FORMANT_BANDWIDTHS):
        gain *= f * f / np.sqrt((f * f - freqs * freqs) ** 2 + (b * freqs) ** 2)
    return gain


def _syllable_wave(duration: float, f0_start: float, f0_end: float, vowel: str, level_db: float,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    n = int(round(duration * sample_rate))
    t = np.arange(n) / n
    f0 = f0_start + (f0_end - f0_start) * t
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    k = np.arange(1, int(4000.0 // max(f0_start, f0_end)) + 1, dtype=np.float64)
    # Harmonic amplitudes at the mean pitch: a flat source through the vowel's formants (the
    # formant cascade gives the spectral tilt; brightness then is close to espeak-ng's).
    amps = _formant_gain(k * 0.5 * (f0_start + f0_end), VOWEL_FORMANTS[vowel])
    wave_ = (amps[:, None] * np.sin(k[:, None] * phase[None, :] + rng.uniform(0, 2 * np.pi, len(k))[:, None])).sum(0)
    wave_ /= np.sqrt(np.mean(wave_ ** 2)) + 1e-12
    envelope = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 0.6  # rises and falls within the syllable
    return (wave_ * envelope * 10.0 ** (level_db / 20.0)).astype(np.float32)


def synth_speech(num_samples: int, rng: np.random.Generator, f0_base: float = 150.0,
                 sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[dict]]:
    """Voiced syllables of 80-300 ms separated by silences, over a faint noise floor.

    Returns the audio and one dict per syllable: start and duration (s), vowel, f0_start,
    f0_end (Hz, within F0_RANGE) and level_db (RMS of the syllable's carrier)."""
    audio = np.zeros(num_samples, np.float32)
    total = num_samples / sample_rate
    syllables = []
    t = float(rng.uniform(0.1, 0.4))
    vowels = list(VOWEL_FORMANTS)
    while True:
        duration = float(rng.uniform(*SYLLABLE_SECONDS))
        if t + duration > total:
            break
        f0_start = float(np.clip(f0_base * 2.0 ** rng.uniform(-0.2, 0.2), *F0_RANGE))
        f0_end = float(np.clip(f0_start * 2.0 ** rng.uniform(-0.25, 0.12), *F0_RANGE))
        vowel = vowels[rng.integers(len(vowels))]
        level = float(rng.uniform(*SYLLABLE_LEVEL_DB))
        start = int(round(t * sample_rate))
        piece = _syllable_wave(duration, f0_start, f0_end, vowel, level, sample_rate, rng)
        audio[start:start + len(piece)] += piece[: num_samples - start]
        syllables.append({"start": round(start / sample_rate, 5), "duration": round(len(piece) / sample_rate, 5),
                          "vowel": vowel, "f0_start": round(f0_start, 2), "f0_end": round(f0_end, 2),
                          "level_db": round(level, 2)})
        # Mostly short gaps, sometimes a pause long enough to close the mouth for several frames.
        t += duration + float(rng.uniform(0.3, 0.8) if rng.random() < 0.25 else rng.uniform(0.05, 0.2))
    noise_db = float(rng.uniform(-75.0, -62.0))
    audio += (rng.standard_normal(num_samples) * 10.0 ** (noise_db / 20.0)).astype(np.float32)
    return audio, syllables


def tts_available() -> bool:
    return shutil.which("espeak-ng") is not None


def tts_speech(text: str, voice: str = "en-us+m3", speed: int = 160, pitch: int = 50,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speak `text` with espeak-ng (must be installed) and return mono float32 at `sample_rate`,
    level-normalised with `normalize_speech_level`."""
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); TTS speech is unavailable")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tts.wav"
        subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    g = math.gcd(int(sample_rate), int(rate))
    audio = resample_poly(pcm, sample_rate // g, rate // g) if rate != sample_rate else pcm
    return normalize_speech_level(audio.astype(np.float32), sample_rate)


def tts_clip_speech(num_samples: int, rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Random words spoken by espeak-ng, placed after a short lead silence and cut to length."""
    seconds = num_samples / sample_rate
    words = [TTS_WORDS[i] for i in rng.integers(len(TTS_WORDS), size=max(2, int(seconds * 2.6)))]
    text = " ".join(words)
    voice = TTS_VOICES[rng.integers(len(TTS_VOICES))]
    speed, pitch = int(rng.integers(140, 181)), int(rng.integers(30, 71))
    lead = int(rng.uniform(0.1, 0.4) * sample_rate)
    speech = tts_speech(text, voice, speed, pitch, sample_rate)
    audio = np.zeros(num_samples, np.float32)
    piece = speech[: num_samples - lead]
    fade = min(len(piece), int(0.02 * sample_rate))
    if len(speech) > len(piece) and fade:  # cut mid-word: fade out rather than click
        piece = piece.copy()
        piece[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    audio[lead:lead + len(piece)] = piece
    return audio, {"kind": "tts", "engine": "espeak-ng", "text": text, "voice": voice, "speed": speed,
                   "pitch": pitch}
