"""The bundled example inputs in assets/, by the names the Demo Inputs node and the tools show."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"

REFERENCES = {"SynthTalk face (demo)": "demo_reference.png", "SynthTalk face, 256 px (demo)": "demo_reference_256.png",
              # Real photographs (public domain, assets/examples/README.md), for Crop Face → … → Paste Back.
              "Photo: astronaut Eileen Collins": "examples/astronaut.jpg",
              "Photo: Grace Hopper": "examples/grace_hopper.jpg"}
SPEECH = {"English sentence (espeak-ng)": "demo_speech.wav"}
