"""Training: the clip layout, SynthTalk, preprocessing of real videos, and the two stages."""
