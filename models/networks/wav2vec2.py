"""wav2vec2 weights from a local safetensors file, into transformers' `Wav2Vec2Model`.

The config is the shipped base-960h one (`configs/sd15/wav2vec2.json`); a file of the large layout
(1024 wide, 24 layers, stable layer norm) is recognised by its shapes. Nothing is fetched from a hub.
"""

from __future__ import annotations

import json

import torch

from ..config import CONFIG_DIR
from ..files.weights import ModelFileError, read_state_dict, state_fit

PREFIXES = ("wav2vec2.", "model.")


def wav2vec2_config_for(state: dict[str, torch.Tensor]) -> dict:
    config = json.loads((CONFIG_DIR / "sd15" / "wav2vec2.json").read_text())
    width = int(state["encoder.layer_norm.bias"].shape[0])
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    if width != config["hidden_size"] or layers != config["num_hidden_layers"]:
        stable = "encoder.layers.0.final_layer_norm.weight" in state and "feature_extractor.conv_layers.1.layer_norm.weight" in state
        config.update(hidden_size=width, num_hidden_layers=layers, num_attention_heads=width // 64,
                      intermediate_size=4 * width, do_stable_layer_norm=stable,
                      feat_extract_norm="layer" if stable else "group", conv_bias=stable)
    return config


def load_wav2vec2(path) -> torch.nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    state = read_state_dict(path)
    for prefix in PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    if "encoder.layer_norm.bias" not in state or "feature_extractor.conv_layers.0.conv.weight" not in state:
        raise ModelFileError(path, "not a wav2vec2 model (no 'feature_extractor.conv_layers.0.conv.weight' / "
                             "'encoder.layer_norm.bias')")
    model = Wav2Vec2Model(Wav2Vec2Config(**wav2vec2_config_for(state)))
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # heads (lm_head, quantizer…) are not needed
    fit = state_fit(own, state)
    missing = [k for k in fit.missing if k != "masked_spec_embed"]
    wrong = list(fit.mismatched)
    if missing or wrong:
        raise ModelFileError(path, f"wav2vec2 weights do not fit the base-960h/large layout: missing {missing[:3]}, "
                             f"mismatched {wrong[:3]}")
    model.load_state_dict(state, strict=False)
    return model.eval()
