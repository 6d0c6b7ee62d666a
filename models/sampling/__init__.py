"""Sampling: the windowed sampler with its guidance, Hallo's motion frames, memory estimates and low-VRAM offloading."""
