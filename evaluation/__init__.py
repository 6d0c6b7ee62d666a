"""Evaluation: ADFD and the standard talking-face metrics.

Imports nothing heavy: torch is needed only by the network metrics (Sync-C/D, FID, FVD,
CLIP CSIM), and they import it on use. See ``evaluation/README.md`` for ADFD's
definition.
"""

from ..models.audio_contract import level_normalised_loudness_envelope
from .adfd import adfd, landmark_jitter
from .audio_features import onset_envelope, to_mono_16k
from .evaluate import DEFAULT_METRICS, METRICS, evaluate, evaluate_each, finite, summary_row
from .folder import evaluate_folder, write_tables
from .frechet import fid, frechet_distance, frechet_distance_features, gaussian_stats
from .fvd import build_i3d, fvd
from .identity import ClipVisionEmbedder, ColourHistogramEmbedder, csim
from .lmd import lmd
from .plot import message_image, plot_mouth_vs_audio
from .syncnet import build_syncnet, load_syncnet, sync_metrics, sync_scores, syncnet_mfcc

__all__ = [
    "DEFAULT_METRICS", "METRICS", "ClipVisionEmbedder", "ColourHistogramEmbedder", "adfd", "build_i3d", "build_syncnet",
    "csim", "evaluate", "evaluate_each", "evaluate_folder", "fid", "finite", "frechet_distance",
    "frechet_distance_features", "fvd", "gaussian_stats", "landmark_jitter", "level_normalised_loudness_envelope", "lmd",
    "load_syncnet", "message_image", "onset_envelope", "plot_mouth_vs_audio", "summary_row", "sync_metrics",
    "sync_scores", "syncnet_mfcc", "to_mono_16k", "write_tables",
]
