"""LMD, CSIM, Fréchet distance / FID and SyncNet, with random or synthetic weights."""

import numpy as np
import pytest

from comfyui_portraittalk.evaluation import (
    ColourHistogramEmbedder, build_syncnet, csim, fid, frechet_distance, frechet_distance_features,
    gaussian_stats, lmd, load_syncnet, sync_metrics, sync_scores, syncnet_mfcc,
)
from comfyui_portraittalk.evaluation.testing import clip_for_audio, speech_like_audio
from comfyui_portraittalk.faces import analyze_synthtalk
from comfyui_portraittalk.faces.testing import draw_face, draw_talking_clip

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------- LMD

def test_lmd_is_zero_on_identical_videos_and_grows_with_perturbation():
    heights = 10 + 8 * np.sin(np.arange(30) / 3.0)
    base = analyze_synthtalk(draw_talking_clip(heights, size=96))
    assert lmd(base, base)["value"] == 0.0
    values = []
    for noise in (1.0, 3.0, 6.0):
        jittered = heights + noise * np.random.default_rng(0).standard_normal(len(heights))
        other = analyze_synthtalk(draw_talking_clip(np.clip(jittered, 0, 30), size=96))
        values.append(lmd(other, base)["value"])
    assert 0 < values[0] < values[1] < values[2], values
    assert lmd(base, base, "face")["value"] == 0.0


def test_lmd_skips_faceless_frames_and_rejects_mixed_layouts():
    base = analyze_synthtalk(draw_talking_clip([4, 8, 12, 8], size=64))
    holes = list(base)
    holes[1] = None
    r = lmd(holes, base)
    assert r["frames_compared"] == 3 and r["frames_skipped"] == 1
    from comfyui_portraittalk.faces import FaceObservation
    fake = [FaceObservation(box=o.box, landmarks=np.zeros((478, 2)), source="mediapipe") for o in base]
    with pytest.raises(ValueError, match="one backend"):
        lmd(fake, base)


# ---------------------------------------------------------------- CSIM

def test_csim_same_identity_beats_different_identity():
    ref = draw_face(96, 0, skin=(224, 172, 140), background=(60, 90, 200))
    same = draw_talking_clip([0, 6, 12, 6], size=96, head_motion=0.02, skin=(224, 172, 140),
                             background=(60, 90, 200))
    other = draw_talking_clip([0, 6, 12, 6], size=96, head_motion=0.02, skin=(120, 80, 55),
                              background=(60, 90, 200))
    ref_obs = analyze_synthtalk(ref)[0]
    a = csim(ref, same, ColourHistogramEmbedder(), ref_obs, analyze_synthtalk(same))
    b = csim(ref, other, ColourHistogramEmbedder(), ref_obs, analyze_synthtalk(other))
    assert a["value"] > b["value"] + 0.2
    assert a["value"] > 0.9 and "not a face-recognition model" in a["model"] and a["version"]


def test_clip_vision_embedder_loads_a_local_folder(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from comfyui_portraittalk.evaluation import ClipVisionEmbedder
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(tmp_path / "tiny-clip")
    emb = ClipVisionEmbedder(tmp_path / "tiny-clip")
    img = draw_face(64, 6)
    r = csim(img, np.stack([img, img]), emb)
    assert r["value"] == pytest.approx(1.0, abs=1e-5) and r["model"] == "clip-vision:tiny-clip"
    with pytest.raises(FileNotFoundError, match="no-such-clip"):
        ClipVisionEmbedder(tmp_path / "no-such-clip")


# ---------------------------------------------------------------- Fréchet / FID

def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    # Diagonal covariances commute: d = |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    a = mu1 + rng.standard_normal((40000, 3)) * np.sqrt(var1)
    b = mu2 + rng.standard_normal((40000, 3)) * np.sqrt(var2)
    assert frechet_distance_features(a, b) == pytest.approx(expected, rel=0.03)
    mu, sigma = gaussian_stats(a)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    # Singular covariances (fewer samples than dimensions) stay finite.
    assert np.isfinite(frechet_distance_features(rng.standard_normal((5, 20)), rng.standard_normal((5, 20))))


def test_inception_features_load_local_weights_and_fid_names_missing_paths(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    from comfyui_portraittalk.evaluation.frechet import InceptionFeatures
    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    a = draw_talking_clip([0, 8], size=64)
    feats = InceptionFeatures(path)(a)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    with pytest.raises(FileNotFoundError, match="missing-inception.safetensors"):
        fid(a, a, tmp_path / "missing-inception.safetensors")


def test_fid_compares_feature_sets():
    class MeanColour:  # a stand-in extractor: FID's plumbing, without a 2048-d eigendecomposition
        name, version = "mean-colour", "test"

        def __call__(self, images):
            return images.reshape(len(images), -1, 3).mean(axis=1) / 255.0

    a = draw_talking_clip([0, 4, 8, 12], size=32, head_motion=0.05)
    b = draw_talking_clip([12, 8, 4, 0], size=32, head_motion=0.05, seed=3)
    c = draw_talking_clip([0, 4, 8, 12], size=32, skin=(120, 80, 55), background=(200, 60, 60))
    near, far = fid(a, b, None, extractor=MeanColour()), fid(a, c, None, extractor=MeanColour())
    assert near["value"] < far["value"] and far["model"] == "mean-colour" and near["images"] == [4, 4]


def test_weights_loader_refuses_pickled_objects(tmp_path):
    from comfyui_portraittalk.evaluation.weights import load_state_dict

    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "obj": _Opaque()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_state_dict(path, "test model")
    with pytest.raises(ValueError, match="no weights file"):
        load_state_dict(None, "test model")


class _Opaque:
    pass


# ---------------------------------------------------------------- SyncNet

def test_syncnet_has_the_reference_parameter_names():
    keys = set(build_syncnet().state_dict())
    for k in ("netcnnaud.0.weight", "netcnnaud.1.running_var", "netcnnaud.18.weight", "netcnnaud.19.bias",
              "netfcaud.0.weight", "netfcaud.1.running_mean", "netfcaud.3.weight", "netcnnlip.0.weight",
              "netcnnlip.4.weight", "netcnnlip.18.weight", "netcnnlip.19.running_mean", "netfclip.3.bias"):
        assert k in keys, k
    assert {k.split(".")[0] for k in keys} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}


def test_sync_scores_recover_a_known_offset():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((60, 16))
    for delay in (0, 3, -5):
        # Audio window i holds what video window i - delay shows: the audio is `delay` late.
        audio = np.roll(feats, delay, axis=0) + 0.05 * rng.standard_normal(feats.shape)
        r = sync_scores(feats, audio, vshift=8)
        assert r["offset"] == -delay and r["sync_c"] > 1.0
    assert sync_scores(feats, rng.standard_normal((60, 16)), 8)["sync_c"] < 1.0


def test_syncnet_mfcc_runs_at_100_hz():
    mf = syncnet_mfcc(speech_like_audio(1.0))
    assert mf.shape == (13, 99) and np.isfinite(mf).all()


def test_sync_metrics_run_end_to_end_with_random_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "syncnet_v2.model"
    torch.save(build_syncnet().state_dict(), path)
    model = load_syncnet(path)
    audio = speech_like_audio(0.44, seed=2)
    frames, _ = clip_for_audio(audio, size=64)
    r = sync_metrics(frames, analyze_synthtalk(frames), audio, model=model, vshift=3)
    assert np.isfinite(r["sync_c"]) and np.isfinite(r["sync_d"]) and -3 <= r["offset"] <= 3
    assert len(frames) - 5 <= r["windows"] <= len(frames) - 4
    with pytest.raises(FileNotFoundError, match="nowhere.model"):
        load_syncnet(tmp_path / "nowhere.model")


# ---------------------------------------------------------------- FVD

def test_i3d_has_the_pytorch_i3d_parameter_names():
    from comfyui_portraittalk.evaluation import build_i3d
    keys = set(build_i3d().state_dict())
    for k in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_var", "Conv3d_2c_3x3.conv3d.weight",
              "Mixed_3b.b0.conv3d.weight", "Mixed_3b.b1a.bn.weight", "Mixed_4f.b2b.conv3d.weight",
              "Mixed_5c.b3b.bn.running_mean", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert k in keys, k
    assert not any("b3a" in k for k in keys)  # the pool branch has no parameters
    assert build_i3d().state_dict()["Mixed_5c.b0.conv3d.weight"].shape == (384, 832, 1, 1, 1)


def test_fvd_runs_with_local_weights_and_orders_videos(tmp_path):
    from comfyui_portraittalk.evaluation import build_i3d, fvd
    torch.manual_seed(0)
    path = tmp_path / "i3d.pt"
    torch.save(build_i3d().state_dict(), path)
    a = draw_talking_clip(6 + 6 * np.sin(np.arange(24) / 2), size=48, head_motion=0.02)
    b = draw_talking_clip(6 + 6 * np.sin(np.arange(24) / 2), size=48, head_motion=0.02, seed=1)
    c = draw_talking_clip(np.zeros(24), size=48, skin=(120, 80, 55), background=(200, 60, 60))
    near = fvd(a, b, path, size=32)
    far = fvd(a, c, path, size=32)
    assert near["clips"] == [2, 2] and np.isfinite(near["value"]) and near["value"] < far["value"]
    with pytest.raises(FileNotFoundError, match="no-i3d.pt"):
        fvd(a, b, tmp_path / "no-i3d.pt")
    with pytest.raises(ValueError, match="at least 16 frames"):
        fvd(a[:8], b, path, size=32)
