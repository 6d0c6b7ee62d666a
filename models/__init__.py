"""The PortraitTalk model: plain PyTorch + diffusers, never imports ComfyUI.

Exports resolve lazily, so `import comfyui_portraittalk.models` stays cheap until a name is used.
"""

from importlib import import_module

_EXPORTS = {
    "PortraitTalkPipeline": ".pipeline",
    "PortraitTalkOutput": ".pipeline",
    "AudioEmbeds": ".pipeline",
    "IdentityFeatures": ".networks.identity_net",
    "StreamScales": ".networks.attention",
    "SamplingOptions": ".sampling.sampler",
    "SamplingProgress": ".sampling.sampler",
    "VideoConditioning": ".sampling.sampler",
    "load_config": ".config",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
