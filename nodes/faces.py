"""(being written) ComfyUI nodes: faces."""

NODES = []
