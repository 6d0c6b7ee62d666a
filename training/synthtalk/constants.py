"""The numbers every part of SynthTalk shares: the format version its clips record and their frame rate."""

SYNTHTALK_VERSION = 1
FPS = 25
