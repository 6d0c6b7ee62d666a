"""Model configs: JSON files shipped in `models/configs/<family>/`, nothing fetched from a hub.

A config is a plain JSON-serialisable dict (it is stored in each model file's safetensors metadata).
In the shipped files, a string value ending in `.json` names a sibling file and is inlined on load, so
the SD-1.5 component configs stay readable on their own.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"
FAMILIES = ("tiny", "sd15", "hallo")
REQUIRED = ("family", "video", "codec", "unet", "motion", "structure", "audio", "identity", "text", "scheduler",
            "sampling")


class ConfigError(ValueError):
    pass


def _inline(value, base: Path):
    if isinstance(value, str) and value.endswith(".json"):
        return json.loads((base / value).read_text())
    if isinstance(value, dict):
        return {k: _inline(v, base) for k, v in value.items()}
    return value


def merge(base: dict, overrides: dict | None) -> dict:
    """Deep-merge `overrides` into a copy of `base`."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(source: str | Path | dict = "tiny", overrides: dict | None = None) -> dict:
    """A family name ("tiny", "sd15"), a JSON file, or a dict → a complete, validated config."""
    if isinstance(source, dict):
        config = copy.deepcopy(source)
    else:
        path = CONFIG_DIR / str(source) / "model.json" if str(source) in FAMILIES else Path(source)
        if not path.is_file():
            raise ConfigError(f"{source}: no such config (families: {', '.join(FAMILIES)}, or a model.json path)")
        config = _inline(json.loads(path.read_text()), path.parent)
    config = merge(config, overrides)
    validate(config)
    return config


def validate(config: dict) -> None:
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ConfigError(f"model config lacks sections {missing}")
    unet = config["unet"]
    latent = config["video"]["size"] // codec_factor(config)
    if config["video"]["size"] % codec_factor(config):
        raise ConfigError(f"video size {config['video']['size']} is not a multiple of the codec factor")
    if latent % 2 ** (len(unet["block_out_channels"]) - 1):
        raise ConfigError(f"latent size {latent} is not divisible by the UNet's downsampling")
    if 2 ** (len(config["structure"]["channels"]) - 1) != codec_factor(config):
        raise ConfigError("the structure encoder must downsample by the codec factor")
    if structure_reads_reference(config) and config["structure"]["in_channels"] != 4:
        raise ConfigError("a structure encoder that reads the reference takes 4 channels (the face mask and RGB), "
                          f"not {config['structure']['in_channels']}")


def structure_reads_reference(config: dict) -> bool:
    """Whether the structure encoder reads the reference image beside the face mask: a pixel-aligned path for
    the reference, which the model can read even at the noisiest timesteps (the `demo_reference` recipe)."""
    return bool(config["structure"].get("reference", False))


def codec_factor(config: dict) -> int:
    codec = config["codec"]
    if codec["type"] == "space_to_depth":
        return int(codec["factor"])
    return 2 ** (len(codec["vae"]["block_out_channels"]) - 1)


def attention_streams(config: dict) -> tuple[str, tuple[str, ...]]:
    """(base stream, extra streams) of the cross-attention layers. The base stream uses each layer's own
    K/V (text by default; the identity tokens for Hallo, whose attn2 context is the face embedding); each
    extra stream has its own K/V pair. Audio is an extra stream unless the model has Hallo's audio modules."""
    layout = config.get("attention") or {}
    base = str(layout.get("base", "text"))
    default = ("identity",) + (() if uses_audio_modules(config) else ("audio",))
    return base, tuple(layout.get("streams", default))


def uses_audio_modules(config: dict) -> bool:
    """Hallo's audio modules (after each spatial transformer) instead of an audio stream in attn2."""
    return config["audio"].get("attention") == "hallo_module"


def to_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))
