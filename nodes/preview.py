"""(being written) ComfyUI nodes: preview."""

NODES = []
