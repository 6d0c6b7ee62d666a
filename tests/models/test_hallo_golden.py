"""The hallo family computes what Hallo's own code computes, on golden fixtures recorded from Hallo
(fudan-generative-vision/hallo @8fd7c57, reduced widths, random weights; `tools/hallo_golden.py`): the projections,
the reference bank and motion-frame features, the unconditional, conditional and guided v-predictions at four
timesteps for the first window and a later one, and, with Hallo's noise, three DDIM steps of a 40-step window.
The fixtures are Hallo's numbers, not its code. All comparisons are relative L2 in fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hallo" / "golden"
TOLERANCE = 1e-5
FRAMES, CFG = 16, 3.5


def report(what: str, errors) -> None:
    """The worst error of a comparison (`pytest tests/models/test_hallo_golden.py -s` prints them)."""
    print(f"\n{what}: largest relative L2 {max(errors):.2e}")


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    ours, theirs = ours.detach(), theirs.detach()
    return float((ours.float() - theirs.float()).norm() / theirs.float().norm())


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    return load_file(str(GOLDEN / "golden.safetensors"))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """Hallo's net.pth, converted by `portraittalk convert hallo` with the reduced model's config."""
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.config import load_config
    from comfyui_portraittalk.models.files.hallo import convert_hallo

    config = load_config("hallo", json.loads((GOLDEN / "config.json").read_text()))
    out = tmp_path_factory.mktemp("hallo-golden") / "net.portraittalk.safetensors"
    report = convert_hallo(GOLDEN / "net.pth", out, config=config, dtype=torch.float32)
    assert report.coverage == 1.0
    return PortraitTalkPipeline.from_pretrained(out)


@pytest.fixture(scope="module")
def conditioned(pipe, golden):
    from comfyui_portraittalk.models.networks.hallo_masks import RegionMasks
    from comfyui_portraittalk.models.pipeline import AudioEmbeds

    masks = [golden[f"inputs.mask_{k}"].numpy().astype(np.uint8) for k in ("background", "face", "lip")]
    regions = RegionMasks(*masks, golden["inputs.face_box"].numpy())
    null = torch.zeros(1, 77, pipe.config["unet"]["cross_attention_dim"])
    with torch.no_grad():
        tokens = pipe.identity_tokens(image_embeds=golden["inputs.face_emb"])
        identity = pipe.encode_identity(golden["inputs.reference"], tokens, None, null, regions)
        audio = pipe.components.audio_proj(golden["inputs.audio_features"])
    cond = pipe.conditioning(null_text=null, identity=identity, audio=AudioEmbeds(audio, 25.0, FRAMES, FRAMES / 25))
    return cond, regions


def _options(**kwargs):
    from comfyui_portraittalk.models.sampling.sampler import SamplingOptions

    return SamplingOptions(num_frames=FRAMES, window=FRAMES, long_audio="motion_frames", **kwargs)


def _motion_latents(golden, label):
    return golden["inputs.reference"].repeat(2, 1, 1, 1) if label.endswith("first") else golden["inputs.motion_later"]


def _forward(pipe, conditioned, golden, label, step, **options):
    """(guided prediction, per-pass predictions) of our sampler's denoiser for one recorded step, in Hallo's
    `[1, C, F, h, w]` layout."""
    from comfyui_portraittalk.models.sampling.motion_frames import motion_features
    from comfyui_portraittalk.models.sampling.sampler import make_denoiser, make_passes

    cond, regions = conditioned
    net = pipe.components.animate_net
    opts = _options(audio_guidance=CFG if label.startswith("guided") else 1.0, **options)
    passes = make_passes(cond, opts, joint=True)
    hallo_rows = opts.reference_rows != "own"
    motion = motion_features(pipe.components.identity_net, net, cond.identity, _motion_latents(golden, label), passes,
                             cond.null_text, hallo_rows)
    denoise = make_denoiser(net, cond, opts, joint=True)
    seen = []
    hook = net.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        with torch.no_grad():
            x = golden[f"{label}.step{step}.latents"][0].transpose(0, 1)
            guided = denoise(x, int(golden[f"{label}.step{step}.t"]), 0, FRAMES, cond.scales_at(0, 4),
                             regions.structure(), motion)
    finally:
        hook.remove()
    layout = lambda v: v.transpose(0, 1)[None]  # noqa: E731  [F, C, h, w] → Hallo's [1, C, F, h, w]
    return layout(guided), [layout(p) for p in seen[0]]


def test_projections_equal_hallos(pipe, golden, conditioned):
    cond, _ = conditioned
    assert relative(cond.identity.tokens[0], golden["projections.identity_tokens"][0]) <= TOLERANCE
    assert relative(cond.audio_tokens, golden["projections.audio_tokens"]) <= TOLERANCE


def test_reference_bank_and_motion_features_equal_hallos(pipe, golden, conditioned):
    """Hallo's ReferenceNet runs once on [reference, motion frames] × (unconditional, conditional) with the two
    face embeddings alternating along that batch: rows (ref∅, m1, m2∅, ref, m1∅, m2) per layer."""
    from comfyui_portraittalk.models.sampling.motion_frames import motion_features
    from comfyui_portraittalk.models.sampling.sampler import make_passes

    cond, _ = conditioned
    net = pipe.components.animate_net
    bank = cond.identity.bank(0.0, with_null_identity=True)
    passes = make_passes(cond, _options(audio_guidance=CFG), joint=True)
    with torch.no_grad():
        motion = motion_features(pipe.components.identity_net, net, cond.identity, golden["inputs.motion_later"],
                                 passes, cond.null_text)
    fed_by = {layer: module for module, layer in net.motion_layers().items()}
    layers = [k[len("bank."):] for k in golden if k.startswith("bank.")]
    assert len(layers) == len(fed_by) == 16  # every spatial transformer feeds a motion module
    errors = {}
    for name in layers:
        theirs, layer = golden[f"bank.{name}"], f"{name}.attn1"
        ours = motion[fed_by[layer]]  # [passes, M, h·w, C]
        errors.update({(layer, "reference, zero embedding"): relative(bank.features[layer][-1], theirs[0]),
                       (layer, "reference, face embedding"): relative(bank.features[layer][0], theirs[3]),
                       (layer, "unconditional motion frames"): relative(ours[0], theirs[1:3]),
                       (layer, "conditional motion frames"): relative(ours[1], theirs[4:6])})
    report("reference bank and motion-frame features", errors.values())
    assert all(e <= TOLERANCE for e in errors.values()), {k: e for k, e in errors.items() if e > TOLERANCE}


@pytest.mark.parametrize("label", ["guided_first", "guided_later", "unguided_first", "unguided_later"])
def test_forward_equals_hallos(pipe, conditioned, golden, label):
    """Four timesteps (999, 749, 499, 249), with the reference as motion frames (first window) and with
    generated ones (a later window); guided: each pass and their combination uncond + 3.5·(cond − uncond)."""
    timesteps = [int(golden[f"{label}.step{k}.t"]) for k in range(4)]
    assert timesteps == [999, 749, 499, 249]
    errors = {}
    for step in range(4):
        guided, passes = _forward(pipe, conditioned, golden, label, step)
        key = f"{label}.step{step}"
        if label.startswith("guided"):
            uncond, cond = golden[f"{key}.uncond"], golden[f"{key}.cond"]
            errors.update({(key, "unconditional pass"): relative(passes[0], uncond),
                           (key, "conditional pass"): relative(passes[1], cond),
                           (key, "guided"): relative(guided, uncond + CFG * (cond - uncond))})
        else:
            errors[(key, "v-prediction")] = relative(guided, golden[f"{key}.v"])
    for kind in sorted({kind for _, kind in errors}):
        report(f"{label}, {kind}", [e for (_, k), e in errors.items() if k == kind])
    assert all(e <= TOLERANCE for e in errors.values()), {k: e for k, e in errors.items() if e > TOLERANCE}


def test_own_reference_rows_are_not_hallos(pipe, conditioned, golden):
    """The option that gives every conditional frame the reference under the real embedding changes the
    conditional pass only, by far more than Hallo's rows miss (here, random weights: 9.5e-5 against 7.5e-7; the
issue's reduced model with Hallo-scale weights: 6.5e-2). Hallo's rows are what its weights were judged by."""
    _, own = _forward(pipe, conditioned, golden, "guided_first", 1, reference_rows="own")
    _, hallo = _forward(pipe, conditioned, golden, "guided_first", 1)
    assert relative(own[0], golden["guided_first.step1.uncond"]) <= TOLERANCE
    assert relative(own[1], golden["guided_first.step1.cond"]) > 30 * relative(hallo[1], golden["guided_first.step1.cond"])


def _first_steps(pipe, cond, options, monkeypatch, count=3):
    """The latents after the first `count` scheduler steps of the sampler's own loop."""
    from comfyui_portraittalk.models.sampling import motion_frames as hallo_sampling

    steps, make_scheduler = [], hallo_sampling.make_scheduler

    class Enough(Exception):
        pass

    def recording(*args, **kwargs):
        scheduler = make_scheduler(*args, **kwargs)
        step = scheduler.step

        def record(*a, **k):
            result = step(*a, **k)
            steps.append(result.prev_sample)
            if len(steps) == count:
                raise Enough
            return result
        scheduler.step = record
        return scheduler

    monkeypatch.setattr(hallo_sampling, "make_scheduler", recording)
    with pytest.raises(Enough):
        pipe.sample(cond, options)
    monkeypatch.undo()
    return steps


def test_the_conditioning_carries_the_fidelity_options(pipe, conditioned, golden, monkeypatch):
    """What the Hallo Settings node sets on the conditioning reaches the sampler: noise="own" starts elsewhere,
    and Hallo's noise is also the default under Hallo's guidance."""
    import dataclasses

    cond, _ = conditioned
    options = _options(steps=40, seed=42, audio_guidance=CFG)
    default = _first_steps(pipe, cond, options, monkeypatch, count=1)[0]
    own = _first_steps(pipe, dataclasses.replace(cond, noise="own", reference_rows="own"), options, monkeypatch, 1)[0]
    assert relative(default.transpose(0, 1)[None], golden["ddim.step0"]) <= TOLERANCE
    assert relative(own.transpose(0, 1)[None], golden["ddim.step0"]) > 0.5


def test_three_ddim_steps_with_hallos_noise_equal_hallos(pipe, conditioned, golden, monkeypatch):
    """Hallo seeds torch.manual_seed(42) once and each window draws [1, C, F, h, w] in turn; with noise="hallo"
    and seed 42 the windows start from the same noise, bit for bit, and the first DDIM steps of the 40-step
    schedule (cfg 3.5, the sampler's own loop) land where Hallo's do."""
    from comfyui_portraittalk.models.sampling import motion_frames as hallo_sampling

    cond, _ = conditioned
    options = _options(steps=40, seed=42, audio_guidance=CFG, noise="hallo")
    windows = hallo_sampling.window_noise(options, (2 * FRAMES, 4, 16, 16), FRAMES, joint=True)
    for k, noise in enumerate([next(windows), next(windows)]):
        assert torch.equal(noise, golden[f"ddim.noise{k}"][0].transpose(0, 1)), f"window {k}"

    steps = _first_steps(pipe, cond, options, monkeypatch)
    assert not any(x.requires_grad for x in steps)  # the sampler keeps no autograd graph (memory stays flat)
    start = golden["ddim.noise0"]
    latents = [relative(x.transpose(0, 1)[None], golden[f"ddim.step{k}"]) for k, x in enumerate(steps)]
    # the steps themselves (x_k − noise), not only the latents that the noise dominates
    moves = [relative(x.transpose(0, 1)[None] - start, golden[f"ddim.step{k}"] - start) for k, x in enumerate(steps)]
    report("three DDIM steps, latents", latents)
    report("three DDIM steps, x_k − noise", moves)
    assert max(latents) <= TOLERANCE and max(moves) <= 10 * TOLERANCE, (latents, moves)


def test_hallo_rows_alternate_in_the_conditional_pass():
    from comfyui_portraittalk.models.sampling.sampler import GuidancePass, bank_rows

    uncond, cond = GuidancePass(False, False, -2.5, identity=False), GuidancePass(False, True, 3.5)
    # one text row (0) + the zero-embedding row (1); the unconditional pass sees its own tokens (-1)
    assert bank_rows([uncond, cond], 4, False, hallo=True).tolist() == [-1] * 4 + [1, 0, 1, 0]
    assert bank_rows([uncond, cond], 3, False, hallo=True).tolist() == [-1] * 3 + [0, 1, 0]
    assert bank_rows([uncond, cond], 4, False, hallo=False).tolist() == [-1] * 4 + [0] * 4
    assert bank_rows([cond], 4, False, hallo=True) is None  # unguided: every row reads the reference
