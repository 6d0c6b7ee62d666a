"""Benchmarks: the inference benchmark, analytic FLOP counts, the acceleration options and the speed/quality curve."""
