"""Face tools: detection, landmarks, crop and paste-back, and face-region masks.

Pure numpy/PIL/scipy; never imports ComfyUI or torch. mediapipe is optional (the
``faces`` extra): without it, :func:`detect_faces` with ``backend="auto"`` falls back to
a centre square and logs how to install the face tools. See ``faces/README.md``.
"""

from .cache import analyze_video
from .colour import SYNTHTALK_MOUTH_RGB, analyze_synthtalk, mouth_mask
from .crop import CropInfo, crop_face, crop_with_info, feather_mask, observation_in_crop, paste_back
from .detect import BACKENDS, FaceTrack, detect_faces, fallback_observation, resolve_backend, track_faces
from .masks import face_region_mask, masks_for_frames
from .mediapipe_backend import INSTALL_HINT, is_available as mediapipe_available
from .observation import FaceObservation

__all__ = [
    "BACKENDS", "CropInfo", "FaceObservation", "FaceTrack", "INSTALL_HINT", "SYNTHTALK_MOUTH_RGB",
    "analyze_synthtalk", "analyze_video", "crop_face", "crop_with_info", "detect_faces",
    "face_region_mask", "fallback_observation", "feather_mask", "masks_for_frames",
    "mediapipe_available", "mouth_mask", "observation_in_crop", "paste_back", "resolve_backend", "track_faces",
]
