"""The SynthTalk protocol: does a model really work? Lip sync, colour, text attributes and identity drift,
measured on held-out SynthTalk identities and on real recorded speech.

    portraittalk eval synthtalk --model demo --json demo_eval.json
    portraittalk eval synthtalk --model demo --parts prompted --text-guidance 3.0   # a few minutes

- **Lip sync**: Pearson r between the mouth opening in generated frames (rows of the exact SynthTalk mouth
  colour, within a tolerance) and the audio's loudness envelope, at the best lag within ±2 frames. On
  held-out SynthTalk clips, and on real speech (pytest-audioeval's recordings, espeak-ng and the bundled
  demo speech, each levelled as SynthTalk's TTS is).
- **Colour**: mean absolute error (0..255) of the background and skin colour of generated frames against
  the reference, with no prompt.
- **Attributes**: for each of glasses, hat, smiling and background colour, references that lack it are
  prompted with it; a frame shows the attribute when it is nearer (over the attribute's footprint) to the
  ground-truth render with the attribute than to the one without, each at its best-fitting blink and head
  wobble, the lips' reach for that frame's sound left out. The same test on the unprompted held-out clips
  gives how often an attribute appears that nobody asked for.
- **Attribute flicker**: in each of those clips, for each attribute, the share of frames whose presence
  differs from the clip's majority; reported per attribute as the mean over clips, and the worst clip.
- **Feature error**: mean absolute error (0..255) against the reference over its features (the pixels
  where the reference has an edge: face outline, eyebrows, eyes, hair line), leaving out the mouth's
  neighbourhood, which speech moves. Blur, a lost outline and invented glasses all raise it.
- **Bundled reference**: the same measures on what `portraittalk demo` makes (the bundled reference and speech).
- **Drift**: a 20-second clip; the colour error of its last two seconds against its first two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..faces.colour import mouth_mask
from .signals import best_lag

MOUTH_TOLERANCE = 40.0
MAX_LAG = 2
FOOTPRINT_DIFFERENCE = 12  # summed RGB difference that marks an attribute's pixels (a smile's blush: ~15-40)
EYE_CLOSURES = np.linspace(0.0, 1.0, 11)  # the blink states the attribute test tries on both sides
MIN_FOOTPRINT = 8  # pixels; a frame whose lips hide more of the attribute than this leaves is not judged alone
MOUTH_STATE_STEPS = 5  # the attribute test draws mouths to the nearest 1/5 of openness and width
# head poses (dx, dy, scale, roll) the attribute test tries on both sides: about a pixel of SynthTalk's wobble
RENDER_POSES = np.array([(dx, dy, 1.0, 0.0) for dx in (0.0, -0.015, 0.015) for dy in (0.0, -0.01, 0.01)])


@dataclass
class Setup:
    pipeline: object
    steps: int = 20
    text_guidance: float = 1.0
    audio_guidance: float = 1.0
    seed: int = 0
    scheduler: str | None = None  # None: the model's default
    karras: bool = False
    denoise: float | None = None  # None: the model's default

    def generate(self, reference: np.ndarray, audio: np.ndarray, sample_rate: int, prompt: str | None = None):
        out = self.pipeline([reference], audio, sample_rate, prompt, num_inference_steps=self.steps,
                            text_guidance_scale=self.text_guidance, audio_guidance_scale=self.audio_guidance,
                            seed=self.seed, scheduler=self.scheduler, karras=self.karras, denoise=self.denoise)
        return np.clip(out.frames * 255 + 0.5, 0, 255).astype(np.uint8)


def mouth_opening(frames: np.ndarray, tolerance: float = MOUTH_TOLERANCE) -> np.ndarray:
    """Rows of mouth-coloured pixels per frame (0 for a closed mouth)."""
    return np.array([mouth_mask(f, tolerance).any(axis=1).sum() for f in frames], dtype=np.float64)


def lip_sync(frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float = 25.0) -> dict:
    from ..models.audio_contract import absolute_loudness_envelope

    envelope = absolute_loudness_envelope(audio, sample_rate, fps, len(frames))
    search = best_lag(mouth_opening(frames), envelope, MAX_LAG)
    return {"r": round(search.r, 4), "lag": search.lag, "defined": search.defined}


def _regions(identity, attributes: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(skin, background) boolean masks of a neutral render: the face oval minus eyes/mouth/glasses, and
    the frame border away from the face and hat."""
    from ..training.synthtalk.rendering import render_frames

    frames, face, lip = render_frames(identity, attributes, size, [0.0], [0.5], [0.0], [(0.0, 0.0, 1.0, 0.0)])
    face = face[0] > 127
    yy, xx = np.mgrid[:size, :size]
    border = (xx < size // 10) | (xx >= size - size // 10)
    background = border & (yy > size // 2) & ~face
    reference = frames[0].astype(np.int16)
    skin_colour = np.median(reference[face], axis=0)
    skin = face & (np.abs(reference - skin_colour).sum(-1) < 12)
    return skin, background


def colour_error(frames: np.ndarray, reference: np.ndarray, skin: np.ndarray, background: np.ndarray) -> dict:
    out = {}
    for name, region in (("skin", skin), ("background", background)):
        ref = np.median(reference[region].astype(np.float64), axis=0)
        gen = np.median(frames[:, region].reshape(-1, 3).astype(np.float64), axis=0)
        out[name] = round(float(np.abs(gen - ref).mean()), 2)
    return out


def attribute_per_frame(frames: np.ndarray, identity, base: dict, wanted: dict, size: int,
                        mouth: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """For each frame, whether it looks more like `wanted` than like `base` over the attribute's footprint.

    A blink narrows the eyes as a smile does, so both sides are rendered at every eye closure: the footprint
    is where no blink of one render looks like any blink of the other, and each side is scored by its nearest
    render. Speech moves the lips, so the footprint leaves out, frame by frame, where the lips of either side
    reach for that frame's sound: `mouth` is the (openness, width) per frame that SynthTalk draws for the
    clip's audio (`speech_mouth`), and the reach is the widest mouth within ±MAX_LAG frames. Without it, the
    widest mouth of all is left out in every frame, and with it most of a smile's blush. A smile then shows
    by its own marks, the blushed cheeks and the arc beside the mouth, not by the eyes (the eyes alone made
    blinks, and a 1-pixel blur of plain ground truth, read as a smile)."""
    n = len(frames)
    if mouth is None:  # a closed mouth drawn, the widest left out
        openness, width, reach_open, reach_wide = np.zeros(n), np.full(n, 0.5), np.ones(n), np.ones(n)
    else:
        openness, width = (np.asarray(m, np.float64)[:n] for m in mouth)
        reach_open, reach_wide = _window_max(openness), _window_max(width)
    # Frames are judged in groups of (nearly) the same mouth, each against renders of that mouth.
    keys = np.round(np.stack([openness, width, reach_open, reach_wide], 1) * MOUTH_STATE_STEPS).astype(int)
    present, seen = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for key in np.unique(keys, axis=0):
        members = (keys == key).all(1)
        drawn, reach = key[:2] / MOUTH_STATE_STEPS, key[2:] / MOUTH_STATE_STEPS
        with_attr = _blink_renders(identity, wanted, size, *drawn)  # [P, K, S, S, 3], neutral pose first
        without = _blink_renders(identity, base, size, *drawn)
        footprint = np.abs(with_attr[0, :, None] - without[0, None]).sum(-1).min((0, 1)) > FOOTPRINT_DIFFERENCE
        footprint &= ~_dilate(_lip_region(identity, base, size, *reach) | _lip_region(identity, wanted, size, *reach), 1)
        if footprint.sum() >= (MIN_FOOTPRINT if mouth is not None else 1):
            pixels = frames[members][:, footprint].astype(np.float64)
            present[members] = (_nearest(pixels, with_attr[:, :, footprint].reshape(-1, footprint.sum(), 3))
                                < _nearest(pixels, without[:, :, footprint].reshape(-1, footprint.sum(), 3)))
            seen[members] = True
    if mouth is not None and not seen.all():
        # where the lips hide the attribute, a frame takes the reading of the nearest frame that shows it
        if not seen.any():
            return attribute_per_frame(frames, identity, base, wanted, size)
        shown = np.flatnonzero(seen)
        nearest = shown[np.abs(np.arange(n)[:, None] - shown[None]).argmin(1)]
        present = present[nearest]
    return present


def speech_mouth(audio: np.ndarray, sample_rate: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(openness, width) per frame that SynthTalk draws for `audio`, levelled as SynthTalk's TTS is."""
    from ..training.synthtalk.audio_to_mouth import mouth_targets

    return mouth_targets(_levelled_16k(audio, sample_rate), 16000, num_frames=num_frames)


def _levelled_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """`audio` at 16 kHz, levelled as SynthTalk's TTS is (`normalize_speech_level`)."""
    import librosa

    from ..training.synthtalk.audio_to_mouth import normalize_speech_level

    wav = np.asarray(audio, np.float32).reshape(-1)
    if sample_rate != 16000:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=16000)
    return normalize_speech_level(wav.astype(np.float32), 16000)


def _window_max(track: np.ndarray) -> np.ndarray:
    from scipy.ndimage import maximum_filter1d

    return maximum_filter1d(track, 2 * MAX_LAG + 1, mode="nearest") if len(track) else track


def _blink_renders(identity, attributes: dict, size: int, openness: float = 0.0, width: float = 0.5) -> np.ndarray:
    """Renders `[P, K, S, S, 3]` (float) with the given mouth, one per head pose of RENDER_POSES (the neutral
    one first) and eye closure of EYE_CLOSURES (open first)."""
    from ..training.synthtalk.rendering import render_frames

    k, poses = len(EYE_CLOSURES), len(RENDER_POSES)
    frames, _, _ = render_frames(identity, attributes, size, [openness] * k * poses, [width] * k * poses,
                                 np.tile(EYE_CLOSURES, poses), np.repeat(RENDER_POSES, k, axis=0))
    return frames.astype(np.float64).reshape(poses, k, size, size, 3)


def _nearest(pixels: np.ndarray, renders: np.ndarray) -> np.ndarray:
    """Per frame, the mean absolute error `pixels [F, P, 3]` has against the nearest of `renders [K, P, 3]`."""
    return np.abs(pixels[:, None] - renders[None]).mean((2, 3)).min(1)


def shows_attribute(frames: np.ndarray, identity, base: dict, wanted: dict, size: int,
                    mouth: tuple[np.ndarray, np.ndarray] | None = None) -> bool:
    """Whether most frames show `wanted` rather than `base` (attribute_per_frame)."""
    return bool(attribute_per_frame(frames, identity, base, wanted, size, mouth).mean() > 0.5)


def other_background_per_frame(frames: np.ndarray, region: np.ndarray, background: str) -> np.ndarray:
    """For each frame, whether the median colour of the background region is nearer to another colour of
    SynthTalk's palette than to `background`."""
    from ..training.synthtalk.identities import BACKGROUNDS

    names = list(BACKGROUNDS)
    palette = np.array([BACKGROUNDS[n] for n in names], np.float64)
    medians = np.median(frames[:, region].astype(np.float64), axis=1)  # [F, 3]
    nearest = np.abs(medians[:, None, :] - palette[None]).sum(-1).argmin(1)
    return nearest != names.index(background)


def flicker(present: np.ndarray) -> float:
    """The share of frames whose attribute presence differs from the clip's majority."""
    return float(min(present.mean(), 1.0 - present.mean())) if len(present) else 0.0


def feature_error(frames: np.ndarray, reference: np.ndarray, exclude: np.ndarray) -> float:
    """Mean absolute error (0..255) of the frames against the reference over the reference's edges (outline,
    brows, eyes, hair line), `exclude` (the mouth's neighbourhood) left out."""
    from scipy.ndimage import sobel

    grey = reference.astype(np.float64).mean(-1)
    edges = np.hypot(sobel(grey, 0), sobel(grey, 1)) > 4 * 40.0  # a step of ~40 grey levels (Sobel gain 4)
    region = _dilate(edges, 1) & ~exclude
    return float(np.abs(frames[:, region].astype(np.float64) - reference[region]).mean())


def _lip_region(identity, attributes: dict, size: int, openness: float = 1.0, width: float = 1.0) -> np.ndarray:
    """Where the lips reach with the given mouth (wide open by default), in the neutral pose."""
    from ..training import synthtalk as st

    _, _, lip = st.render_frames(identity, attributes, size, [openness], [width], [0.0], [(0.0, 0.0, 1.0, 0.0)])
    return lip[0] > 0


def real_speech() -> list[tuple[str, np.ndarray, int]]:
    """Recorded and TTS speech available offline: pytest-audioeval's WAVs, espeak-ng, the bundled demo."""
    from ..media import read_audio
    from ..training.synthtalk.speech import tts_available, tts_speech

    clips = []
    try:
        import pytest_audioeval

        # a namespace package in some releases (no __init__.py, so no __file__)
        root = Path(next(iter(pytest_audioeval.__path__))) / "samples" / "audio" / "en"
        clips += [(f"audioeval/{p.stem}", *read_audio(p)) for p in sorted(root.glob("*.wav"))]
    except ImportError:
        pass
    from ..bundled import ASSETS

    clips.append(("demo_speech", *read_audio(ASSETS / "demo_speech.wav")))
    if tts_available():
        clips.append(("espeak-ng", tts_speech("The quick brown fox jumps over the lazy dog near the river bank."), 16000))
    return [(name, _levelled_16k(wav, rate), 16000) for name, wav, rate in clips]


def bundled_reference(setup: Setup, size: int) -> dict:
    """What `portraittalk demo` makes (the bundled reference and speech): lip sync, feature error, and each
    attribute's share of frames, none of them prompted."""
    from ..bundled import ASSETS
    from ..media import read_audio
    from ..training import synthtalk as st
    from ..training.synthtalk.demo import DEMO_IDENTITY_SEED, demo_reference

    identity = st.make_identity(DEMO_IDENTITY_SEED)
    base = {"glasses": False, "hat": False, "smiling": False, "background": "gray"}  # demo_reference's look
    reference = demo_reference(size)
    wav, rate = read_audio(ASSETS / "demo_speech.wav")
    frames = setup.generate(reference, wav, rate)
    mouth = speech_mouth(wav, rate, len(frames))
    shares = {a: round(float(attribute_per_frame(frames, identity, base, dict(base, **{a: True}), size,
                                                 mouth).mean()), 3)
              for a in ("glasses", "hat", "smiling")}
    shares["background"] = round(float(other_background_per_frame(frames, _regions(identity, base, size)[1],
                                                                  "gray").mean()), 3)
    return {"lip_sync_r": lip_sync(frames, wav, rate)["r"],
            "feature_error": round(feature_error(frames, reference, _dilate(_lip_region(identity, base, size), 3)), 2),
            "attribute_frames": shares}


def _test_clip(seed: int, index: int, seconds: float, size: int, attributes: dict):
    """A held-out clip: test-split identity seeds are odd, training ones even."""
    from ..training import synthtalk as st

    entropy, identity_seed = st.clip_seeds(seed, index, "test")
    return st.make_clip(entropy, seconds, size, identity=st.make_identity(identity_seed), attributes=attributes)


def _test_identity(index: int):
    from ..training import synthtalk as st

    return st.make_identity(2 * (50_000 + index) + 1)


PARTS = ("held_out", "bundled_reference", "real_speech", "prompted", "drift")


def run(setup: Setup, *, clips: int = 8, seconds: float = 4.0, trials: int = 5, drift_seconds: float = 20.0,
        parts: tuple[str, ...] = PARTS, log=print) -> dict:
    """The protocol's `parts` (all by default) in order. Text guidance only moves the prompted part: a prompt
    is what it scales."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown protocol parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    results: dict = {"settings": {"steps": setup.steps, "scheduler": setup.scheduler or
                                  setup.pipeline.config["sampling"]["scheduler"], "karras": setup.karras,
                                  "text_guidance": setup.text_guidance,
                                  "audio_guidance": setup.audio_guidance,
                                  "denoise": setup.denoise or setup.pipeline.config["sampling"].get("denoise", 1.0),
                                  "mouth_tolerance": MOUTH_TOLERANCE,
                                  "max_lag": MAX_LAG}}
    began = time.time()
    size = setup.pipeline.size
    if "held_out" in parts:
        results.update(held_out(setup, clips, seconds))
        log(f"SynthTalk lip sync r={results['lip_sync_synthtalk']['r_mean']}, colour {results['colour_error']}, "
            f"feature error {results['feature_error']['mean']}, attributes appearing unprompted "
            f"{results['unprompted_attributes']}, flicker {results['attribute_flicker']}")
    if "bundled_reference" in parts:
        results["bundled_reference"] = bundled_reference(setup, size)
        log(f"bundled reference {results['bundled_reference']}")
    if "real_speech" in parts:
        results["lip_sync_real_speech"] = real_speech_sync(setup)
        log(f"real speech lip sync r={results['lip_sync_real_speech']['r_mean']}")
    if "prompted" in parts:
        results.update(prompted(setup, trials))
        log(f"attributes {results['attributes']}, flicker {results['prompted_attribute_flicker']}")
    if "drift" in parts:
        results["drift"] = drift(setup, drift_seconds)
        log(f"drift {results['drift']}")
    results["seconds"] = round(time.time() - began, 1)
    return results


def held_out(setup: Setup, clips: int, seconds: float) -> dict:
    """Held-out SynthTalk clips (test-split identities), neutral look, no prompt: lip sync, colour, feature
    error, and the attributes that appear although nobody asked for them, with their flicker."""
    from ..training import synthtalk as st

    size = setup.pipeline.size
    synth_r, colour, features = [], [], []
    unprompted = {"glasses": 0, "hat": 0, "smiling": 0, "background": 0}
    flickers: dict[str, list[float]] = {k: [] for k in unprompted}
    for i in range(clips):
        clip = _test_clip(1234, i, seconds, size, {"glasses": False, "hat": False, "smiling": False})
        base = clip.meta["attributes"]
        identity = st.Identity.from_dict(clip.meta["identity"])
        reference = st.render_reference(identity, base, size=size)
        frames = setup.generate(reference, clip.audio, clip.sample_rate)
        synth_r.append(lip_sync(frames, clip.audio, clip.sample_rate)["r"])
        skin, background_region = _regions(identity, base, size)
        colour.append(colour_error(frames, reference, skin, background_region))
        features.append(feature_error(frames, reference, _dilate(_lip_region(identity, base, size), 3)))
        mouth = speech_mouth(clip.audio, clip.sample_rate, len(frames))
        for attribute in unprompted:  # nothing was asked for, so nothing should appear
            if attribute == "background":
                present = other_background_per_frame(frames, background_region, base["background"])
            else:
                present = attribute_per_frame(frames, identity, base, dict(base, **{attribute: True}), size, mouth)
            unprompted[attribute] += int(present.mean() > 0.5)
            flickers[attribute].append(flicker(present))
    return {"lip_sync_synthtalk": {"r_mean": round(float(np.mean(synth_r)), 3), "r": synth_r},
            "colour_error": {k: round(float(np.mean([c[k] for c in colour])), 2) for k in ("skin", "background")},
            "feature_error": {"mean": round(float(np.mean(features)), 2), "per_clip": [round(f, 2) for f in features]},
            "unprompted_attributes": {k: round(v / clips, 2) for k, v in unprompted.items()},
            "attribute_flicker": {k: {"mean": round(float(np.mean(v)), 3), "worst": round(float(np.max(v)), 3),
                                      "per_clip": [round(f, 3) for f in v]} for k, v in flickers.items()}}


def real_speech_sync(setup: Setup) -> dict:
    """Lip sync on real speech (`real_speech`), each recording on another held-out identity."""
    from ..training import synthtalk as st

    real = {}
    for j, (name, wav, rate) in enumerate(real_speech()):
        reference = st.render_reference(_test_identity(j), {"background": "gray"}, size=setup.pipeline.size)
        real[name] = lip_sync(setup.generate(reference, wav, rate), wav, rate)["r"]
    return {"r_mean": round(float(np.mean(list(real.values()))), 3), "r": real}


def prompted(setup: Setup, trials: int) -> dict:
    """Each text attribute prompted on `trials` references that lack it: how often it appears, and its flicker."""
    from ..training import synthtalk as st

    size = setup.pipeline.size
    attrs_out, prompted_flicker = {}, {}
    for attribute in ("glasses", "hat", "smiling", "background"):
        hits, flickers_here = 0, []
        for k in range(trials):
            identity = _test_identity(100 + k)
            base = {"glasses": False, "hat": False, "smiling": False, "background": "gray"}
            wanted = dict(base, **({"background": ["red", "green", "blue", "yellow", "purple"][k % 5]}
                                   if attribute == "background" else {attribute: True}))
            reference = st.render_reference(identity, base, size=size)
            clip_audio = _test_clip(555, k, 1.2, size, base).audio
            frames = setup.generate(reference, clip_audio, 16000, st.caption_for(wanted))
            present = attribute_per_frame(frames, identity, base, wanted, size,
                                          speech_mouth(clip_audio, 16000, len(frames)))
            hits += int(present.mean() > 0.5)
            flickers_here.append(flicker(present))
        attrs_out[attribute] = round(hits / trials, 2)
        prompted_flicker[attribute] = {"mean": round(float(np.mean(flickers_here)), 3),
                                       "worst": round(float(np.max(flickers_here)), 3)}
    return {"attributes": attrs_out, "prompted_attribute_flicker": prompted_flicker}


def drift(setup: Setup, seconds: float) -> dict:
    """Identity drift over a long clip: the colour error of its last two seconds against its first two."""
    from ..training import synthtalk as st

    size = setup.pipeline.size
    clip = _test_clip(4321, 0, seconds, size, {"glasses": False, "hat": False, "smiling": False,
                                               "background": "blue"})
    identity = st.Identity.from_dict(clip.meta["identity"])
    reference = st.render_reference(identity, clip.meta["attributes"], size=size)
    frames = setup.generate(reference, clip.audio, clip.sample_rate)
    regions = _regions(identity, clip.meta["attributes"], size)
    first, last = colour_error(frames[:50], reference, *regions), colour_error(frames[-50:], reference, *regions)
    return {"seconds": seconds, "first_2s": first, "last_2s": last,
            "lip_sync_r": lip_sync(frames, clip.audio, clip.sample_rate)["r"]}


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=radius)
