"""A full-size `sd15` PortraitTalk model assembled from the files ComfyUI users already have.

    SD-1.5 single-file checkpoint   → IdentityNet and AnimateNet spatial layers, the VAE (`init_from_sd15`)
    AnimateDiff v2 motion module    → AnimateNet's temporal layers (`init_temporal_from_animatediff`)
    PortraitTalk weights (optional) → any subset of the model's own tensors, laid over the two above

Whatever no file gives keeps a fresh build's initial values (the identity and audio K/V start with a zero V
projection, the structure encoder with a zero output), and the report says so: without PortraitTalk-trained
weights those streams are untrained.

Memory: the model (~2.4G parameters) is built on the meta device and materialised once, in the requested
dtype; the source files are read one at a time. Every file is checked from its safetensors header before
anything is allocated, so a wrong file fails in a moment with a `ModelFileError` that names it.
Plain PyTorch: never imports ComfyUI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .components import Components, build_components
from ..config import load_config
from .convert import SD15_UNET_PROBE, init_from_sd15, init_temporal_from_animatediff
from ..families import SD15, family_name
from .weights import FORMAT, PICKLE_SUFFIXES, ModelFileError, _check_safetensors_header, state_fit

ROLES = {"checkpoint": "an SD-1.5 single-file checkpoint (models/checkpoints)",
         "motion": "an AnimateDiff v2 motion module, mm_sd_v15_v2 (models/animatediff_models)",
         "weights": "PortraitTalk sd15 weights (models/portraittalk)"}


@dataclass
class AssemblyReport:
    checkpoint: str
    motion: str
    weights: str | None = None
    from_checkpoint: dict[str, int] = field(default_factory=dict)  # component → tensors
    from_motion: int = 0
    from_weights: dict[str, int] = field(default_factory=dict)
    untrained: dict[str, int] = field(default_factory=dict)  # group → parameter tensors left at init
    total: int = 0  # parameter tensors in the model

    def summary(self) -> str:
        def counts(d):
            return ", ".join(f"{k} {v}" for k, v in d.items()) or "nothing"

        lines = [f"{Path(self.checkpoint).name}: {counts(self.from_checkpoint)} tensors",
                 f"{Path(self.motion).name}: {self.from_motion} temporal tensors"]
        if self.weights:
            lines.append(f"{Path(self.weights).name}: {counts(self.from_weights)} tensors")
        if self.untrained:
            lines.append(f"UNTRAINED (at init, {sum(self.untrained.values())} of {self.total} parameter tensors): "
                         + "; ".join(f"{k} ({v})" for k, v in self.untrained.items())
                         + ". Until PortraitTalk-trained weights fill them, these parts add nothing: the new "
                           "streams' V projections and the structure encoder's output start at zero.")
        else:
            lines.append(f"every one of the {self.total} parameter tensors came from a file")
        return "\n".join(lines)

    def metadata(self) -> dict[str, str]:
        """What the model file records about where its tensors came from."""
        out = {"assembled_from": "sd15 checkpoint + AnimateDiff motion module" + (" + PortraitTalk weights"
                                                                                   if self.weights else "")}
        for role in ROLES:
            path = getattr(self, role)
            if path:
                out[f"{role}_name"] = Path(path).name
                out[f"{role}_size"] = str(Path(path).stat().st_size)
        out["coverage"] = json.dumps({"checkpoint": self.from_checkpoint, "motion": self.from_motion,
                                      "weights": self.from_weights, "untrained": self.untrained,
                                      "total": self.total})
        return out


# ---------------------------------------------------------------------------------------- what a file is


def _header(path, role: str) -> dict:
    """The safetensors header of a source file; pickles and missing files are refused by name."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES + (".pkl",):
        raise ModelFileError(path, f"is a pickle file ({path.suffix}); expected {ROLES[role]} as .safetensors. "
                             "PortraitTalk never unpickles files (unpickling can run code): use or convert to the "
                             ".safetensors release")
    if not path.is_file():
        raise ModelFileError(path, f"no such file (expected {ROLES[role]})")
    return _check_safetensors_header(path)


def describe(header: dict, unet_config: dict | None = None) -> str:
    """What kind of model file a safetensors header belongs to, in words (for error messages).
    `unet_config`: the UNet an SD-1.5 checkpoint must match (default the shipped SD-1.5 one)."""
    keys = [k for k in header if k != "__metadata__"]
    meta = header.get("__metadata__") or {}
    if meta.get("format") == FORMAT:
        try:
            family = family_name(json.loads(meta.get("config", "{}")))
        except ValueError:  # unreadable config: the family stays unknown
            family = None
        return f"a PortraitTalk model file (family {family})"
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "an SDXL checkpoint"
    probe, shape = SD15_UNET_PROBE
    if unet_config is not None:
        shape = (unet_config["block_out_channels"][0], unet_config["in_channels"], 3, 3)
    if probe in header:
        found = tuple(header[probe]["shape"])
        return "an SD-1.5 checkpoint" if found == shape else f"a Stable Diffusion checkpoint with {probe} {found}"
    if any("motion_modules." in k for k in keys):
        return "an AnimateDiff motion module"
    sample = ", ".join(sorted(keys)[:3]) or "no tensors"
    return f"an unknown file (keys e.g. {sample})"


def check_sources(checkpoint, motion, weights=None, config: dict | None = None) -> None:
    """Refuse a missing, pickled or wrong kind of file from its header alone, before anything is built."""
    unet = config["unet"] if config else None
    header = _header(checkpoint, "checkpoint")
    kind = describe(header, unet)
    if kind != "an SD-1.5 checkpoint":
        raise ModelFileError(checkpoint, f"expected {ROLES['checkpoint']}, found {kind}")
    if not any(k.startswith("first_stage_model.") for k in header):
        raise ModelFileError(checkpoint, f"expected {ROLES['checkpoint']} with its VAE, found no "
                             "'first_stage_model.*' keys (a UNet-only file)")
    kind = describe(_header(motion, "motion"), unet)
    if kind != "an AnimateDiff motion module":
        raise ModelFileError(motion, f"expected {ROLES['motion']}, found {kind}")
    if weights is not None:
        header = _header(weights, "weights")
        kind = describe(header, unet)
        if kind.startswith("a PortraitTalk model") and "family sd15" not in kind:
            raise ModelFileError(weights, f"expected {ROLES['weights']}, found {kind}")
        if not kind.startswith("a PortraitTalk model") and not any(
                k.split(".", 1)[0] in ("identity_net", "animate_net", "image_proj", "audio_proj", "codec")
                for k in header if k != "__metadata__"):
            raise ModelFileError(weights, f"expected {ROLES['weights']} (keys 'identity_net.…', 'animate_net.…', "
                                 f"'image_proj.…', 'audio_proj.…'), found {kind}")


# ------------------------------------------------------------------------------------------ the build


def _materialise(config: dict, dtype: torch.dtype) -> Components:
    """Every component, allocated once in `dtype` with no values yet (the files and `_initialise` fill them)."""
    with torch.device("meta"):  # no random init of 2.4G parameters that the files overwrite anyway
        components = build_components(config, with_text_encoder=False, with_image_encoder=False, with_codec=True)
    for module in components.modules().values():
        module.to(dtype=dtype)
        module.to_empty(device="cpu")
    return components


def _initialise(components: Components, keys: set[str], seed: int) -> None:
    """Give `keys` ("component.key") the values a fresh build gives them: each owning layer's own
    `reset_parameters`, then the pack's zero initialisations (new streams' V, the structure encoder's output)
    and the fixed sinusoidal positions. Seeded, so an assembly is reproducible."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    from ..networks.attention import DecoupledCrossAttnProcessor
    from ..networks.structure import StructureEncoder

    owners: dict[str, torch.nn.Module] = {}
    for key in keys:
        component, _, rest = key.partition(".")
        owner = rest.rpartition(".")[0]
        owners[f"{component}.{owner}"] = getattr(components, component).get_submodule(owner)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in sorted(owners):  # a fixed order: the same seed gives the same values
            module = owners[name]
            if isinstance(module, SinusoidalPositionalEmbedding):
                module.pe.copy_(SinusoidalPositionalEmbedding(module.pe.shape[-1], module.pe.shape[-2]).pe)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                raise RuntimeError(f"no initialisation for {name} ({type(module).__name__})")
        for component in components.modules().values():
            for name, module in component.named_modules():
                if isinstance(module, DecoupledCrossAttnProcessor):
                    for to_v in module.to_v_ip:
                        torch.nn.init.zeros_(to_v.weight)
                elif isinstance(module, StructureEncoder):
                    torch.nn.init.zeros_(module.conv_out.weight)
                    torch.nn.init.zeros_(module.conv_out.bias)
    # the zero rules above may touch tensors a file gives too: the files are loaded after this


def new_keys(components: Components) -> set[str]:
    """The tensors no SD-1.5 checkpoint or AnimateDiff module gives: the new K/V streams, the projections,
    the structure encoder and the sinusoidal positions."""
    out = set()
    for key in components.state_dict():
        component, _, rest = key.partition(".")
        if component in ("image_proj", "audio_proj") or rest.startswith("structure.") or "_ip." in rest \
                or rest.endswith(".pos_embed.pe"):
            out.add(key)
    return out


def overlay(components: Components, path) -> set[str]:
    """Lay a PortraitTalk weights file (any subset of the model's keys) over the model; every key must be the
    model's and every shape must match. Returns the keys it gave."""
    from .safetensors_stream import read_mapped

    tensors, _ = read_mapped(path)  # memory-mapped: a whole fine-tuned model is not read twice
    if not tensors:
        raise ModelFileError(path, f"holds no tensors (expected {ROLES['weights']})")
    own = components.state_dict()
    fit = state_fit(own, tensors)
    foreign = fit.unexpected
    wrong = [f"{k} {file_shape} (expected {own_shape})" for k, (file_shape, own_shape) in fit.mismatched.items()]
    kinds = [f"{k} {tensors[k].dtype}" for k in tensors if k in own and own[k].is_floating_point()
             and not tensors[k].is_floating_point()]
    if foreign or wrong or kinds:
        def show(items):
            items = sorted(items)
            return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
        problems = [f"{len(foreign)} keys that are not in a PortraitTalk sd15 model: {show(foreign)}"
                    if foreign else "",
                    f"{len(wrong)} shape mismatches: {show(wrong)}" if wrong else "",
                    f"{len(kinds)} non-floating tensors for floating weights: {show(kinds)}" if kinds else ""]
        raise ModelFileError(path, "does not fit a PortraitTalk sd15 model (keys 'identity_net.…', "
                             "'animate_net.…', 'image_proj.…', 'audio_proj.…', 'codec.…'): "
                             + "; ".join(p for p in problems if p))
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value)
    return set(tensors)


def assemble_sd15(checkpoint, motion, weights=None, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                  config: dict | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> tuple[Components, AssemblyReport]:
    """Components of an `sd15` model from the three files (see the module docstring). `config` replaces the
    shipped sd15 config (tests use one of the same layout at small widths); `progress(done, total, what)`."""
    steps = 4 if weights is not None else 3  # allocate, checkpoint, motion (, weights)

    def step(done, what):
        if progress is not None:
            progress(done, steps, what)

    config = load_config("sd15") if config is None else config
    if family_name(config) != SD15.name:
        raise ValueError(f"assemble_sd15 builds the sd15 family, not {family_name(config)!r}")
    check_sources(checkpoint, motion, weights, config)
    step(0, "allocating the model")
    components = _materialise(config, dtype)
    fresh = new_keys(components)
    _initialise(components, fresh, seed)
    report = AssemblyReport(str(checkpoint), str(motion), str(weights) if weights is not None else None)
    step(1, f"reading {Path(checkpoint).name}")
    loaded = init_from_sd15(components, checkpoint)
    report.from_checkpoint = dict(loaded.loaded)
    step(2, f"reading {Path(motion).name}")
    report.from_motion = init_temporal_from_animatediff(components, motion).loaded["temporal"]
    # init_from_sd15 and init_temporal_from_animatediff refuse files that leave anything but new keys empty
    from_files = {k for k in components.state_dict() if k not in fresh}
    if weights is not None:
        step(3, f"reading {Path(weights).name}")
        given = overlay(components, weights)
        from_files |= given
        for key in sorted(given):
            component = key.partition(".")[0]
            report.from_weights[component] = report.from_weights.get(component, 0) + 1
    params = {f"{name}.{k}" for name, module in components.modules().items() for k, _ in module.named_parameters()}
    report.total = len(params)
    for key in sorted(params - from_files):
        group = _group(key)
        report.untrained[group] = report.untrained.get(group, 0) + 1
    step(steps, "done")
    for module in components.modules().values():
        module.eval()
    return components, report


def _group(key: str) -> str:
    component, _, rest = key.partition(".")
    if "_ip." in rest:
        return f"{component} new-stream K/V (to_k_ip, to_v_ip)"
    if rest.startswith("structure."):
        return f"{component} structure encoder"
    return component


def write_assembled(components: Components, report: AssemblyReport, out, dtype: torch.dtype | None = None):
    """Write a PortraitTalk model file the loaders read, one tensor at a time, recording the sources."""
    from ..config import to_json
    from .safetensors_stream import write_streaming
    from .weights import VERSION

    state = components.state_dict()

    def kind(value):
        return dtype if dtype is not None and value.is_floating_point() else value.dtype

    entries = [(k, tuple(v.shape), kind(v)) for k, v in state.items()]
    metadata = {"format": FORMAT, "version": VERSION, "config": to_json(components.config), **report.metadata()}
    return write_streaming(out, entries, state.__getitem__, metadata)
