"""ComfyUI-PortraitTalk: ComfyUI entry point.

ComfyUI imports this file at startup, so it imports nothing heavy: the nodes (and through
them torch, diffusers, transformers and librosa) load only when ComfyUI asks for them.
Installed with pip, the same folder is the package `comfyui_portraittalk`.
"""

WEB_DIRECTORY = "./web"
