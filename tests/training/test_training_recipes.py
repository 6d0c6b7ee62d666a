"""The full-size training recipes from files laid out as users have them (tests/recipe_fixtures.py: random
weights of the real key layouts at reduced widths): `hallo_text` (Hallo frozen, the text stream's K/V trained)
and `sd15` (both stages), a few steps each on SynthTalk clips. Each exports a model the loaders read; the
`hallo_text` export is Hallo's forward, bit for bit, at λ_text = 0."""

from __future__ import annotations

import json

import pytest
import torch

from recipe_fixtures import HALLO_SMALL, SD15_SMALL, write_user_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    from comfyui_harness.environment import ensure_comfyui

    return write_user_files(tmp_path_factory.mktemp("user_files"), ensure_comfyui())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from comfyui_portraittalk.training.synthtalk.writer import write_dataset

    root = tmp_path_factory.mktemp("clips")
    write_dataset(root, 3, 1.0, size=64, seed=3)
    return root


def _recipe(name: str, overrides: dict, stages: list[dict]) -> dict:
    from comfyui_portraittalk.training.train import load_train_config

    config = load_train_config(name)
    config.update(model_overrides=overrides, stages=stages, precision="no", gradient_checkpointing=False,
                  export_dtype="float32")
    return config


def _sources(paths) -> dict[str, str]:
    return {role: str(path) for role, path in paths.items()}


@pytest.fixture(scope="module")
def hallo_run(user_files, clips, tmp_path_factory):
    from comfyui_portraittalk.training.train import train

    out = tmp_path_factory.mktemp("hallo_text")
    config = _recipe("hallo_text", HALLO_SMALL, [{"stage": 1, "train": "text_stream", "steps": 3, "rows": 2,
                                                  "frames": 1, "lr": 1e-2, "warmup": 0}])
    config["text_dropout"] = 0.0
    sources = {k: v for k, v in _sources(user_files).items() if k in ("hallo", "checkpoint", "wav2vec2", "tokenizer")}
    return out, train(config, out, clips, sources=sources, log_every=1)


def _read(path):
    from comfyui_portraittalk.models.files.weights import read_model

    return read_model(path)


def test_hallo_text_changes_only_the_text_stream(hallo_run):
    from comfyui_portraittalk.models.files.hallo import is_text_key

    out, model = hallo_run
    trained, config = _read(model)
    start, _ = _read(out / "init" / "hallo_converted.safetensors")
    assert set(trained) == set(start)  # the same parts: no CLIP, VAE or wav2vec2 in the export
    assert {k.split(".")[0] for k in trained} == {"identity_net", "animate_net", "image_proj", "audio_proj"}
    changed = {k for k in trained if not torch.equal(trained[k], start[k])}
    assert changed and all(is_text_key(k) for k in changed)
    text_keys = [k for k in trained if is_text_key(k)]
    assert len(changed) >= len(text_keys) // 2  # most of them learned (the dead last IdentityNet block did not)
    assert config["family"] == "hallo" and config["text"]["stream_weights"].startswith("trained")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_hallo_text_export_is_hallo_at_lambda_text_zero(hallo_run):
    """The exported model with a prompt at λ_text = 0 samples exactly what the converted Hallo samples with no
    prompt; at λ_text = 1 the trained text stream changes the output."""
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.networks.hallo_masks import region_masks
    from comfyui_portraittalk.models.pipeline import AudioEmbeds
    from comfyui_portraittalk.models.sampling.sampler import SamplingOptions

    out, model = hallo_run
    trained = PortraitTalkPipeline.from_pretrained(model)
    hallo = PortraitTalkPipeline.from_pretrained(out / "init" / "hallo_converted.safetensors")
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=gen)
    embeds = torch.randn(1, 512, generator=gen)
    prompt = torch.randn(1, 77, 32, generator=gen)
    null = torch.zeros(1, 77, 32)
    audio = torch.randn(6, 5, 2, 64, generator=gen)

    def sample(pipe, text, text_scale):
        tokens = pipe.identity_tokens(image_embeds=embeds)
        identity = pipe.encode_identity(latents, tokens, text, null, region_masks(64, 64))
        embeds_audio = AudioEmbeds(pipe.components.audio_proj(audio).detach(), 25.0, 6, 6 / 25)
        cond = pipe.conditioning(null_text=null, text=text, identity=identity, audio=embeds_audio,
                                 text_scale=text_scale, audio_scale=1.0)
        options = SamplingOptions(num_frames=6, steps=2, seed=1, audio_guidance=3.5, window=4, overlap=0,
                                  long_audio="motion_frames")
        return pipe.sample(cond, options, size=64)

    with torch.no_grad():
        plain = sample(hallo, None, 1.0)
        off = sample(trained, prompt, 0.0)
        on = sample(trained, prompt, 1.0)
    assert torch.equal(plain, off)
    assert (on - plain).abs().max() > 1e-4


def test_sd15_recipe_runs_both_stages_and_exports_a_loadable_model(user_files, clips, tmp_path):
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.networks.temporal import is_temporal_key
    from comfyui_portraittalk.training.train import train

    config = _recipe("sd15", SD15_SMALL, [
        {"stage": 1, "steps": 2, "rows": 2, "frames": 1, "lr": 1e-3, "warmup": 0},
        {"stage": 2, "steps": 2, "rows": 1, "frames": 4, "lr": 1e-3, "warmup": 0}])
    sources = {k: v for k, v in _sources(user_files).items() if k != "hallo"}
    model = train(config, tmp_path, clips, sources=sources, log_every=1)
    state, file_config = _read(model)
    assert {k.split(".")[0] for k in state} == {"identity_net", "animate_net", "image_proj", "audio_proj"}
    assert file_config["family"] == "sd15"
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == [1, 1, 2, 2]
    # the spatial layers moved away from SD-1.5 in stage 1, the temporal ones from AnimateDiff in stage 2
    from comfyui_portraittalk.models.files.assemble import assemble_sd15
    from comfyui_portraittalk.models.config import load_config

    start, _ = assemble_sd15(user_files["checkpoint"], user_files["motion"], config=load_config("sd15", SD15_SMALL))
    start = start.state_dict()
    moved = {k for k in state if not torch.equal(state[k], start[k].float())}
    assert any(k.startswith("animate_net.") and is_temporal_key(k) for k in moved)
    assert any(k.startswith("identity_net.") for k in moved)
    pipe = PortraitTalkPipeline.from_pretrained(model)  # what the loader nodes call
    assert pipe.config["family"] == "sd15" and pipe.components.text_encoder is None


def test_a_recipe_without_its_files_names_what_it_needs(tmp_path, capsys):
    from comfyui_portraittalk.cli.train import main as train_main

    code = train_main(["--config", "hallo_text", "--out", str(tmp_path / "o"), "--source", f"wav2vec2={tmp_path}/x"])
    err = capsys.readouterr().err
    assert code == 2 and "--source hallo=PATH" in err and "--source tokenizer=PATH" in err
    code = train_main(["--config", "tiny_smoke", "--out", str(tmp_path / "o"), "--source", "hello"])
    assert code == 2 and "ROLE=PATH" in capsys.readouterr().err


def test_sd15_trains_from_precomputed_shards_without_running_its_encoders(user_files, clips, tmp_path, monkeypatch):
    from comfyui_portraittalk.models.networks.audio import Wav2Vec2Encoder
    from comfyui_portraittalk.models.networks.codec import VaeCodec
    from comfyui_portraittalk.models.networks.image_encoder import ImageEncoder
    from comfyui_portraittalk.cli.precompute import main as precompute_main
    from comfyui_portraittalk.training.train import train

    config = _recipe("sd15", SD15_SMALL, [{"stage": 1, "steps": 2, "rows": 2, "frames": 1, "lr": 1e-3, "warmup": 0}])
    config_file = tmp_path / "sd15_small.json"
    config_file.write_text(json.dumps(config))
    sources = {k: v for k, v in _sources(user_files).items() if k != "hallo"}
    shards = tmp_path / "shards"
    args = ["--config", str(config_file), "--data", str(clips), "--out", str(shards)]
    assert precompute_main(args + [a for role, path in sources.items() for a in ("--source", f"{role}={path}")]) == 0
    assert json.loads((shards / "index.json").read_text())["embeds"] == "per_frame"  # CLIP ViT-H is frozen

    def refuse(*args, **kwargs):
        raise AssertionError("a training step ran an encoder although its output was precomputed")

    for cls, name in ((VaeCodec, "encode"), (ImageEncoder, "forward"), (Wav2Vec2Encoder, "__call__")):
        monkeypatch.setattr(cls, name, refuse)
    model = train(config, tmp_path / "run", clips, sources=sources, precomputed_dir=shards, log_every=1)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses) and model.is_file()
