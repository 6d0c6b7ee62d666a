"""(being written) ComfyUI nodes: evaluation."""

NODES = []
