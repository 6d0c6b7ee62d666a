"""`portraittalk precompute`: latents, audio windows, masks (and frozen encoders' embeddings) once per clip in
safetensors shards; training on them never runs the codec and trains on the same numbers."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from comfyui_portraittalk.training.synthtalk.writer import write_dataset

    root = tmp_path_factory.mktemp("clips")
    write_dataset(root, 3, 1.0, size=64, seed=4)
    return root


def _config() -> dict:
    from comfyui_portraittalk.training.train import load_train_config

    config = load_train_config("tiny_smoke")
    config["stages"] = [dict(config["stages"][0], steps=3, edit_probability=0.0), dict(config["stages"][1], steps=2)]
    return config


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def shards(clips, tmp_path_factory):
    from comfyui_portraittalk.cli.precompute import main as precompute_main

    out = tmp_path_factory.mktemp("shards")
    config = tmp_path_factory.mktemp("cfg") / "tiny_pre.json"
    config.write_text(json.dumps(_config()))
    assert precompute_main(["--config", str(config), "--data", str(clips), "--out", str(out), "--dtype", "float32",
                            "--shard-clips", "2"]) == 0
    return out, config


def test_shards_hold_every_clip_once(shards, clips):
    from safetensors import safe_open

    out, _ = shards
    index = json.loads((out / "index.json").read_text())
    ids = json.loads((clips / "dataset.json").read_text())["clips"]
    assert sorted(index["clips"]) == sorted(ids) and sorted(set(index["clips"].values())) == [
        "shard-00000.safetensors", "shard-00001.safetensors"]
    assert index["embeds"] is None  # the tiny family trains its image encoder: nothing to store
    clip = ids[0]
    with safe_open(str(out / index["clips"][clip]), "pt") as f:
        latents, face = f.get_tensor(f"{clip}/latents"), f.get_tensor(f"{clip}/face")
        audio = f.get_tensor(f"{clip}/audio")
    frames = json.loads((clips / "clips" / clip / "meta.json").read_text())["frames"]
    assert latents.shape[0] == face.shape[0] == audio.shape[0] == frames and face.dtype == torch.uint8


def test_training_on_shards_matches_training_on_clips_and_never_encodes(shards, clips, tmp_path, monkeypatch):
    from comfyui_portraittalk.models.networks.codec import SpaceToDepthCodec
    from comfyui_portraittalk.training.train import train

    out, config_file = shards
    config = json.loads(config_file.read_text())
    plain = train(config, tmp_path / "plain", clips, log_every=1)

    def refuse(*args, **kwargs):
        raise AssertionError("a training step encoded frames although they were precomputed")

    monkeypatch.setattr(SpaceToDepthCodec, "encode", refuse)
    monkeypatch.setattr("comfyui_portraittalk.models.networks.audio.MelEncoder.__call__", refuse)
    shard = train(config, tmp_path / "shard", clips, log_every=1, precomputed_dir=out)
    assert _losses(tmp_path / "plain") == pytest.approx(_losses(tmp_path / "shard"), rel=1e-5, abs=1e-7)
    from comfyui_portraittalk.models.files.weights import read_model

    a, _ = read_model(plain)
    b, _ = read_model(shard)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5


def test_shards_of_another_model_are_refused(shards, clips, tmp_path):
    from comfyui_portraittalk.training.train import train

    out, config_file = shards
    config = json.loads(config_file.read_text())
    config["model_overrides"] = {"audio": {"window_radius": 1}}
    with pytest.raises(ValueError, match="precomputed for another model"):
        train(config, tmp_path / "other", clips, precomputed_dir=out)


def test_a_re_rendered_reference_cannot_come_from_shards(shards, clips, tmp_path):
    from comfyui_portraittalk.training.train import train

    out, config_file = shards
    config = json.loads(config_file.read_text())
    config["stages"][0]["edit_probability"] = 1.0
    with pytest.raises(ValueError, match="re-rendered with other attributes"):
        train(config, tmp_path / "edit", clips, precomputed_dir=out)


def test_training_batches_take_the_edited_captions_file(clips, tmp_path):
    """`portraittalk caption` writes DATA/captions.json; the batches' text comes from it where it has the clip."""
    import shutil

    from comfyui_portraittalk.models.networks.audio import MelEncoder
    from comfyui_portraittalk.training.data import ClipStore, PairSampler

    data = tmp_path / "data"
    shutil.copytree(clips, data)
    store = ClipStore(data, MelEncoder(), 2)
    edited = {clip_id: {"caption": "an edited caption", "edited": True} for clip_id in store.clip_ids[:-1]}
    (data / "captions.json").write_text(json.dumps({"clips": edited}))
    sampler = PairSampler(store, 8, 1, edit_probability=0.0, text_dropout=0.0, seed=0)
    captions = [c for _ in range(3) for c in sampler().captions]
    unedited = store.metas[-1]["caption"]  # the one clip the file leaves out keeps meta.json's caption
    assert set(captions) == {"an edited caption", unedited}
