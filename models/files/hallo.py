"""Hallo's `net.pth` → one PortraitTalk `.safetensors` file (the "hallo" config family).

Hallo (fudan-generative-vision/hallo, MIT) maps almost one to one onto PortraitTalk:

| Hallo `net.pth` | PortraitTalk |
|---|---|
| `reference_unet.*` (SD-1.5 UNet without its output head) | `identity_net.unet.*` |
| `denoising_unet.*` (SD-1.5 names) | `animate_net.unet.*` |
| `denoising_unet.*.motion_modules.*` (AnimateDiff's layout) | diffusers' names, through diffusers' own map |
| `denoising_unet.*.audio_modules.*` | `animate_net.unet.*.audio_modules.*` (`audio_module.py`) |
| `face_locator.*` | `animate_net.structure.*` |
| `imageproj.proj`, `imageproj.norm` | `image_proj.image_embeds`, `image_proj.norm` (diffusers' `ImageProjection`) |
| `audioproj.*` | `audio_proj.*` |

AnimateDiff keeps one sinusoidal `pos_encoder.pe` buffer per attention block; diffusers keeps one per
transformer block. The first is stored, the second must equal it. Text K/V (PortraitTalk's text stream on
top of Hallo) are not in `net.pth`: they come from a user's SD-1.5 checkpoint, or are zeros, and then the
model file records that λ_text is fixed at 0.

The file is read with `torch.load(weights_only=True, mmap=True)` (nothing in it is executed) and written
one tensor at a time, so neither side needs the whole model in memory. Every key is accounted for: any key
the layout does not expect, any expected key the file lacks, and any shape mismatch fails, naming the keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import load_config, to_json
from .weights import FORMAT, VERSION, ModelFileError, read_state_dict

log = logging.getLogger(__name__)

PARTS = ("reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj")
PE_SUFFIX = ".pos_encoder.pe"


@dataclass
class ConversionReport:
    source: str
    manifest_keys: int = 0
    consumed: dict[str, int] = field(default_factory=dict)  # Hallo part → keys consumed
    written: int = 0
    text_from: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return sum(self.consumed.values()) / max(1, self.manifest_keys)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in self.consumed.items())
        text = f"text K/V from {self.text_from}" if self.text_from else "text K/V zeros (λ_text fixed at 0)"
        lines = [f"{self.source}: consumed {sum(self.consumed.values())}/{self.manifest_keys} keys "
                 f"({100 * self.coverage:.1f}%): {parts}",
                 f"wrote {self.written} tensors; {text}"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _short(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def target_key(key: str) -> str | None:
    """Hallo key → PortraitTalk key (None for a key outside Hallo's five parts)."""
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    part, _, rest = key.partition(".")
    if part == "reference_unet":
        return f"identity_net.unet.{rest}"
    if part == "denoising_unet":
        if ".motion_modules." in rest:
            if rest.endswith(PE_SUFFIX):  # …attention_blocks.N.pos_encoder.pe → …transformer_blocks.K.pos_embed.pe
                head, _, _ = rest.rpartition(".attention_blocks.")
                return f"animate_net.unet.{head.replace('.temporal_transformer', '')}.pos_embed.pe"
            (rest,) = convert_animatediff_checkpoint_to_diffusers({rest: None})
        return f"animate_net.unet.{rest}"
    if part == "face_locator":
        return f"animate_net.structure.{rest}"
    if part == "imageproj":
        return "image_proj." + ("image_embeds." + rest[len("proj."):] if rest.startswith("proj.") else rest)
    if part == "audioproj":
        return f"audio_proj.{rest}"
    return None


def hallo_config(text_from: str | None = None) -> dict:
    return load_config("hallo", {"text": {"stream_weights": text_from}})


def expected_layout(config: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every tensor of a model of this config (meta-device build: no memory, no random init)."""
    from .components import build_components

    with torch.device("meta"):  # the pretrained parts (CLIP text, VAE) never come from Hallo's file
        components = build_components(config, with_text_encoder=False, with_image_encoder=False, with_codec=False)
    return {k: (tuple(v.shape), v.dtype) for k, v in components.state_dict().items()}


def is_text_key(key: str) -> bool:
    return ".processor.to_k_ip." in key or ".processor.to_v_ip." in key


def looks_like_hallo(keys) -> bool:
    keys = list(keys)
    return bool(keys) and any(k.startswith("denoising_unet.") for k in keys) and \
        any(k.startswith("reference_unet.") for k in keys)


def read_hallo(path) -> dict[str, torch.Tensor]:
    """The tensors of a Hallo `net.pth` (memory-mapped, weights only)."""
    state = read_state_dict(path)
    if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    if not looks_like_hallo(state):
        raise ModelFileError(path, "not a Hallo net.pth: no 'reference_unet.*' and 'denoising_unet.*' keys "
                             f"(found e.g. {_short(state, 3)})")
    return state


def plan(state: dict[str, torch.Tensor], layout: dict, source) -> tuple[dict[str, str], ConversionReport]:
    """{our key: Hallo key} for every tensor the file gives, checked against the layout; raises on any mismatch."""
    report = ConversionReport(str(source), manifest_keys=len(state))
    sources: dict[str, str] = {}
    unexpected, wrong, duplicate_pe = [], [], []
    for key, value in state.items():
        target = target_key(key)
        if target is None or target not in layout:
            unexpected.append(f"{key} (→ {target})" if target else key)
            continue
        if tuple(value.shape) != layout[target][0]:
            wrong.append(f"{key} {tuple(value.shape)} ≠ {target} {layout[target][0]}")
            continue
        if target in sources:  # the second positional encoding of a transformer block
            if not value.is_meta and not torch.equal(state[sources[target]], value):
                duplicate_pe.append(f"{key} ≠ {sources[target]}")
        else:
            sources[target] = key
        part = key.partition(".")[0]
        report.consumed[part] = report.consumed.get(part, 0) + 1
    missing = [k for k in layout if k not in sources and not is_text_key(k)]
    problems = [f"{len(unexpected)} keys the Hallo layout does not have: {_short(unexpected)}" if unexpected else "",
                f"{len(wrong)} shape mismatches: {_short(wrong)}" if wrong else "",
                f"{len(missing)} keys the file lacks: {_short(missing)}" if missing else "",
                f"positional encodings of one block differ: {_short(duplicate_pe)}" if duplicate_pe else ""]
    if any(problems):
        raise ModelFileError(source, "does not match Hallo's net.pth layout: " + "; ".join(p for p in problems if p))
    pe = [k for k in state if k.endswith(PE_SUFFIX) and not state[k].is_meta]
    if pe:
        report.notes.append(_check_sinusoid(state, pe))
    report.consumed = {p: report.consumed[p] for p in PARTS if p in report.consumed}
    return sources, report


def _check_sinusoid(state, keys) -> str:
    """The pe buffers are AnimateDiff's fixed sinusoid; say how far the file's are from it."""
    worst = 0.0
    for key in keys:
        pe = state[key].float()
        length, dim = pe.shape[-2:]
        position = torch.arange(length).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-torch.log(torch.tensor(10000.0)) / dim))
        expected = torch.zeros(length, dim)
        expected[:, 0::2], expected[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        worst = max(worst, float((pe.reshape(length, dim) - expected).abs().max()))
    verdict = "as expected" if worst < 2e-3 else "NOT the standard sinusoid; the file's values are kept"
    return f"{len(keys)} positional-encoding buffers: max deviation from the sinusoid {worst:.2g} ({verdict})"


def text_kv_from_sd15(path, config: dict) -> dict[str, torch.Tensor]:
    """{our text-stream key: SD-1.5 attn2 K/V} for IdentityNet and AnimateNet, from a single-file checkpoint."""
    from .convert import read_sd15_checkpoint

    unet = read_sd15_checkpoint(path, config["unet"])["unet"]
    out = {}
    for key, value in unet.items():
        if ".attn2.to_k." in key or ".attn2.to_v." in key:
            ours = key.replace(".attn2.to_k.", ".attn2.processor.to_k_ip.0.").replace(".attn2.to_v.",
                                                                                       ".attn2.processor.to_v_ip.0.")
            out[f"identity_net.unet.{ours}"] = value
            out[f"animate_net.unet.{ours}"] = value
    return out


def convert_hallo(source, out, *, text_from=None, dtype: torch.dtype | None = None, extra: dict | None = None,
                  config: dict | None = None) -> ConversionReport:
    """Convert `source` (Hallo's net.pth, fp16 or fp32) into a PortraitTalk model file at `out`. `dtype`
    casts floating tensors (default: keep the file's); `text_from` is an SD-1.5 checkpoint for the text stream;
    `config` replaces the shipped "hallo" family (tests use a small model of the same layout)."""
    from ..config import merge
    from .safetensors_stream import write_streaming

    source, out = Path(source), Path(out)
    state = read_hallo(source)
    text_name = Path(text_from).name if text_from else None
    config = hallo_config(text_name) if config is None else merge(config, {"text": {"stream_weights": text_name}})
    layout = expected_layout(config)
    sources, report = plan(state, layout, source)
    text = text_kv_from_sd15(text_from, config) if text_from else {}
    if text:
        bad = [k for k in layout if is_text_key(k) and (k not in text or tuple(text[k].shape) != layout[k][0])]
        if bad:
            raise ModelFileError(text_from, f"does not give the text K/V of every cross-attention layer: {_short(bad)}")
        report.text_from = str(text_from)
    file_dtype = dtype or next(iter(state.values())).dtype

    def dtype_of(key: str) -> torch.dtype:
        value = state[sources[key]] if key in sources else None
        if value is not None and not value.is_floating_point():
            return value.dtype
        return dtype or (value.dtype if value is not None else file_dtype)

    def tensor(key: str) -> torch.Tensor:
        if key in sources:
            return state[sources[key]]
        if key in text:
            return text[key]
        return torch.zeros(layout[key][0], dtype=file_dtype)

    entries = [(k, layout[k][0], dtype_of(k)) for k in layout]
    metadata = {"format": FORMAT, "version": VERSION, "config": to_json(config), "converted_from": "hallo net.pth",
                "source_name": source.name, "source_size": str(source.stat().st_size),
                "coverage": f"{sum(report.consumed.values())}/{report.manifest_keys}", **(extra or {})}
    write_streaming(out, entries, tensor, metadata)
    report.written = len(entries)
    return report


__all__ = ["ConversionReport", "convert_hallo", "expected_layout", "hallo_config", "looks_like_hallo", "plan",
           "read_hallo", "target_key"]


_checked: dict[tuple[str, int, int], bool] = {}


def is_hallo_checkpoint(path) -> bool:
    """True for a weights-only pickle with Hallo's parts (cached per file version). Anything that does not
    load as weights only (a pickle with code in it included) is not one: nothing in it is ever run."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return False
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _checked:
        try:
            _checked[key] = looks_like_hallo(read_state_dict(path))
        except Exception:  # noqa: BLE001 (refused or corrupt: not a Hallo checkpoint)
            _checked[key] = False
    return _checked[key]


def converted_from(candidate: Path, source: Path) -> bool:
    """Whether `candidate` is the conversion of this very `source` (name and size in its metadata)."""
    from .weights import _check_safetensors_header

    try:
        meta = _check_safetensors_header(candidate).get("__metadata__") or {}
    except (ModelFileError, OSError):
        return False
    return (meta.get("converted_from") == "hallo net.pth" and meta.get("source_name") == source.name
            and meta.get("source_size") == str(source.stat().st_size))


def ensure_converted(source, folder, stem: str) -> tuple[Path, ConversionReport | None]:
    """The PortraitTalk file for a Hallo checkpoint: `<stem>.portraittalk.safetensors` in `folder`, converted
    on first use. A file of that name that is not this checkpoint's conversion is never overwritten: the next
    free name (`<stem>-2…`) is used instead."""
    source, folder = Path(source), Path(folder)
    for k in range(1, 100):
        candidate = folder / (f"{stem}.portraittalk.safetensors" if k == 1 else f"{stem}-{k}.portraittalk.safetensors")
        if not candidate.exists():
            log.warning("converting Hallo checkpoint %s → %s (once)", source, candidate)
            report = convert_hallo(source, candidate)
            log.warning("%s", report.summary())
            return candidate, report
        if converted_from(candidate, source):
            return candidate, None
    raise ModelFileError(folder, f"no free name for the conversion of {source}")
