"""SynthTalk: a procedural data set of talking faces with known ground truth (docs/training.md).

A clip is a cartoon face (oval, skin tone, hair, blinking eyes, slight head motion) on a
solid background, speaking synthetic or TTS speech. The mouth is a filled ellipse whose
interior is exactly `MOUTH_RGB`; no other pixel of a frame has that colour, so mouth
opening can be measured in any frame by counting that colour (`measure_mouth`).

Audio to mouth, the documented contract that evaluation correlates against:

* frame f covers [f/fps, (f+1)/fps); its analysis window is exactly that interval, so
  it is centred on the frame (samples past the end of the audio count as zeros);
* `absolute_loudness_envelope` (from `models.audio_contract`): RMS level of the window
  in dBFS, mapped linearly from `CLOSED_DB` (and below: openness 0, a closed mouth) to
  `OPEN_DB` (and above: openness 1). Openness is the normalised mouth height: the drawn interior height is
  `openness * MOUTH_MAX_HEIGHT * size * head_scale` pixels;
* `mouth_width_track`: the magnitude-spectrum centroid of the same window in
  100-4000 Hz after pre-emphasis, mapped from `CENTROID_RANGE` to 0..1 linearly in
  log-frequency (rounded vowels such as /u/ are narrow, spread vowels such as /i/
  wide), faded to the neutral 0.5 as openness goes to 0 (a silent window has no
  meaningful centroid). The drawn interior width is
  `lerp(MOUTH_WIDTH_RANGE, width) * size * head_scale` pixels (x1.1 when smiling).

Levels are absolute (dBFS, full scale 1.0), never relative to the clip's own maximum;
loudness-normalise foreign audio with `normalize_speech_level` before comparing.

A closed mouth (openness 0) is drawn as lips with a dark seam line and has exactly zero
pixels of MOUTH_RGB. Any opening draws the interior with hard (not anti-aliased) edges,
so the MOUTH_RGB pixel count never decreases as the mouth opens.

Everything is deterministic from a seed, except that clips asking for TTS speech fall
back to synthetic speech on a machine without espeak-ng (recorded in the clip's meta).

The package, one module a job:

* `identities`: identities, attributes and the caption grammar;
* `audio_to_mouth`: the audio-to-mouth contract above and `normalize_speech_level`;
* `speech`: synthetic syllables and espeak-ng speech;
* `motion`: head motion and blinks;
* `canvas` and `rendering`: the drawing surface, the face drawn on it, and `measure_mouth`;
* `clips`: one talking clip (`make_clip`);
* `writer`: the data set on disk (`write_dataset`) and the `portraittalk synth` command;
* `demo`: the bundled demo assets;
* `constants`: the clip format version and frame rate they share.
"""

from __future__ import annotations

# The names other code imported from the single-module synthtalk; new code imports from the sub-modules.
from ...models.audio_contract import CLOSED_DB, OPEN_DB, SAMPLE_RATE
from .audio_to_mouth import normalize_speech_level
from .clips import make_clip
from .constants import FPS
from .demo import DEMO_SENTENCE, demo_reference, write_demo_assets
from .identities import (BACKGROUNDS, Identity, attributes_from_caption, caption_for, caption_vocabulary,
                         make_identity, tokenize_caption)
from .motion import NEUTRAL_POSE
from .rendering import (MOUTH_MAX_HEIGHT, MOUTH_RGB, measure_mouth, reference_for_clip, render_frame, render_frames,
                        render_reference)
from .speech import VOWEL_FORMANTS, synth_speech, tts_available, tts_speech
from .writer import clip_seeds, write_dataset

__all__ = [
    "BACKGROUNDS", "CLOSED_DB", "DEMO_SENTENCE", "FPS", "Identity", "MOUTH_MAX_HEIGHT", "MOUTH_RGB", "NEUTRAL_POSE",
    "OPEN_DB", "SAMPLE_RATE", "VOWEL_FORMANTS", "attributes_from_caption", "caption_for", "caption_vocabulary",
    "clip_seeds", "demo_reference", "make_clip", "make_identity", "measure_mouth", "normalize_speech_level",
    "reference_for_clip", "render_frame", "render_frames", "render_reference", "synth_speech",
    "tokenize_caption", "tts_available", "tts_speech", "write_dataset", "write_demo_assets",
]
