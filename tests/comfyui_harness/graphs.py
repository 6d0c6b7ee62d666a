"""API-format graphs of the pack's nodes, for tests (the shipped workflows live in workflows/)."""

from __future__ import annotations

MEL = "mel (built in, no weights)"


def generation_graph(model_name: str, *, text: str = "", steps: int = 2, seed: int = 0, window: int = 16,
                     overlap: int = 4, text_guidance: float = 1.0, audio_guidance: float = 1.0,
                     prefix: str = "portraittalk/test", image: list | None = None, audio: list | None = None,
                     scales: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> dict:
    """Reference + speech → video with sound, through every node of the pack. `image` / `audio` are
    links to use instead of the bundled demo inputs."""
    graph = {
        "1": {"class_type": "PortraitTalkDemoInputs",
              "inputs": {"reference": "SynthTalk face (demo)", "speech": "English sentence (espeak-ng)"}},
        "3": {"class_type": "PortraitTalkLoadIdentityNet", "inputs": {"model_name": model_name}},
        "4": {"class_type": "PortraitTalkLoadAnimateNet", "inputs": {"model_name": model_name}},
        "5": {"class_type": "PortraitTalkLoadTextEncoder", "inputs": {"model_name": model_name}},
        "6": {"class_type": "PortraitTalkLoadImageEncoder", "inputs": {"model_name": model_name}},
        "7": {"class_type": "PortraitTalkLoadAudioEncoder", "inputs": {"encoder_name": MEL}},
        "8": {"class_type": "PortraitTalkTextEncode", "inputs": {"text_encoder": ["5", 0], "text": text}},
        "9": {"class_type": "PortraitTalkEncodeIdentity",
              "inputs": {"identity_net": ["3", 0], "image": image or ["1", 0], "image_encoder": ["6", 0],
                         "positive": ["8", 0], "negative": ["8", 1]}},
        "10": {"class_type": "PortraitTalkEncodeAudio",
               "inputs": {"animate_net": ["4", 0], "audio": audio or ["1", 1], "audio_encoder": ["7", 0], "fps": 0.0}},
        "11": {"class_type": "PortraitTalkApplyDecoupledAttention",
               "inputs": {"animate_net": ["4", 0], "identity": ["9", 0], "audio_embeds": ["10", 0],
                          "positive": ["8", 0], "negative": ["8", 1], "text_scale": scales[0],
                          "identity_scale": scales[1], "audio_scale": scales[2], "start_percent": 0.0,
                          "end_percent": 1.0}},
        "12": {"class_type": "PortraitTalkSampler",
               "inputs": {"animate_net": ["11", 0], "steps": steps, "scheduler": "ddim", "karras": False, "seed": seed,
                          "text_guidance": text_guidance, "audio_guidance": audio_guidance, "window": window,
                          "overlap": overlap, "frames": 0}},
        "13": {"class_type": "PortraitTalkDecode",
               "inputs": {"latent": ["12", 0], "animate_net": ["4", 0], "audio": audio or ["1", 1], "chunk": 8}},
        "14": {"class_type": "CreateVideo", "inputs": {"images": ["13", 0], "fps": ["13", 1], "audio": ["13", 2]}},
        "15": {"class_type": "SaveVideo",
               "inputs": {"video": ["14", 0], "filename_prefix": prefix, "format": "auto", "codec": "auto"}},
    }
    return graph
