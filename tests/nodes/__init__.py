"""The nodes in a real ComfyUI: every node, the bundled workflows, the web extension, reliability and memory, run
through the harness in tests/comfyui_harness/."""
