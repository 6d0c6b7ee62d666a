"""The web extension (web/) in a real browser, against the harness's real ComfyUI.

Headless Debian chromium, driven by Playwright, loads the UI, loads the basic workflow with
`app.loadGraphData`, runs it with `app.queuePrompt(0)` and checks what a user sees: the Preview
Video node plays an mp4 with sound, the Evaluate node shows the ADFD score, its parts and the plot,
the sampler shows per-step previews (server started with `--preview-method auto`), node help opens
from the selection toolbox, and the pack's scripts log no console errors.

The workflow is workflows/portraittalk_basic.json (until it exists, tests/comfyui_harness/browser/
portraittalk_dev.json; $PORTRAITTALK_BROWSER_WORKFLOW names another). A model file the server lacks (the bundled demo model before it ships) is
replaced by a random tiny model, and the sampler runs at most $PORTRAITTALK_BROWSER_STEPS steps
(default 4; 0 keeps the workflow's). Screenshots go to $PORTRAITTALK_ARTIFACTS (default: a pytest
temp folder). Skips, saying what to install, without chromium or playwright; .ci/run installs both.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import av
import pytest
import requests

from comfyui_harness.browser import chromium
from comfyui_harness.browser.comfy_page import ComfyPage
from comfyui_harness.browser.workflow_prep import node_ids, runnable
from comfyui_harness.server import REPO_ROOT

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

BASIC = REPO_ROOT / "workflows" / "portraittalk_basic.json"
DEV = Path(__file__).resolve().parents[1] / "comfyui_harness" / "browser" / "portraittalk_dev.json"
TINY = "tiny_random.safetensors"
PREVIEW, EVALUATE, SAMPLER = "PortraitTalkPreviewVideo", "PortraitTalkEvaluate", "PortraitTalkSampler"


@pytest.fixture(scope="module")
def browser():
    reason = chromium.missing()
    if reason:
        pytest.skip(f"browser tests need chromium and playwright: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = chromium.launch(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("PORTRAITTALK_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def preview_server(browser, comfy_server_factory, tmp_path_factory):
    """A server with per-step previews on and a random tiny model."""
    from comfyui_portraittalk.models import PortraitTalkPipeline

    model = tmp_path_factory.mktemp("browser-model") / TINY
    PortraitTalkPipeline.from_config("tiny", seed=0).save_pretrained(model)
    return comfy_server_factory(before_start=lambda s: s.add_model("portraittalk", model),
                                extra_args=["--preview-method", "auto"])


@pytest.fixture(scope="module")
def workflow(preview_server) -> dict:
    chosen = os.environ.get("PORTRAITTALK_BROWSER_WORKFLOW")
    source = Path(chosen) if chosen else BASIC if BASIC.is_file() else DEV
    info = requests.get(f"{preview_server.url}/object_info/PortraitTalkLoadAnimateNet", timeout=60).json()
    spec = info["PortraitTalkLoadAnimateNet"]["input"]["required"]["model_name"]
    available = spec[1].get("options") if spec[0] == "COMBO" else spec[0]
    wf = runnable(json.loads(source.read_text(encoding="utf-8")), available, TINY,
                  max_steps=int(os.environ.get("PORTRAITTALK_BROWSER_STEPS", "4")))
    wf.setdefault("extra", {})["portraittalk_test_source"] = source.name
    for needed in (PREVIEW, EVALUATE, SAMPLER):
        assert node_ids(wf, needed), f"{source.name} has no {needed} node"
    return wf


@pytest.fixture(scope="module")
def ran(browser, preview_server, workflow, artifacts):
    """The page after one run of the workflow (shared by the tests below, which only look)."""
    page = ComfyPage.open(browser, preview_server.url)
    page.load(workflow)
    outcome = page.run(timeout=float(os.environ.get("PORTRAITTALK_BROWSER_TIMEOUT", "900")))
    page.fit_view()
    page.screenshot(artifacts / "portraittalk_workflow_after_run.png")
    page.fit_view(node_ids(workflow, PREVIEW) + node_ids(workflow, EVALUATE))
    page.screenshot(artifacts / "portraittalk_preview_and_scores.png")
    print(f"[browser] {workflow['extra']['portraittalk_test_source']}: {outcome}; screenshots in {artifacts}")
    assert outcome == "execution_success", f"run ended with {outcome}; server log:\n{preview_server.log_tail(40)}"
    yield page
    page.page.close()


def test_preview_node_plays_the_video_with_sound(ran, workflow, preview_server):
    (node,) = node_ids(workflow, PREVIEW)
    selector = f'video[data-node-id="{node}"]'
    ran.page.wait_for_function(f"""() => {{ const v = document.querySelector('{selector}');
        return v && v.readyState >= 2 && v.duration > 0; }}""", timeout=60_000)
    state = ran.page.evaluate(f"""async () => {{
        const v = document.querySelector('{selector}');
        const box = v.getBoundingClientRect();
        const before = {{ readyState: v.readyState, duration: v.duration, width: v.videoWidth,
                          height: v.videoHeight, controls: v.controls, src: v.src, visible: v.checkVisibility(),
                          box: [box.width, box.height] }};
        v.muted = true;  // muted playback needs no user gesture; the audio is still decoded
        await v.play();
        await new Promise((r) => setTimeout(r, 1500));
        v.pause();
        return {{ ...before, audioBytes: v.webkitAudioDecodedByteCount, played: v.currentTime }};
    }}""")
    assert state["readyState"] >= 2 and state["duration"] > 0 and state["controls"], state
    assert state["visible"] and min(state["box"]) > 0, state
    assert state["played"] > 0 and state["audioBytes"] > 0, f"no audio decoded: {state}"
    assert "/view?" in state["src"] and "type=temp" in state["src"], state["src"]
    served = requests.get(state["src"], timeout=60)
    served.raise_for_status()
    with av.open(io.BytesIO(served.content)) as container:
        assert container.streams.audio, "the served mp4 has no audio stream"
        assert container.streams.video[0].codec_context.name == "h264"
        frames = sum(1 for _ in container.decode(video=0))
    executed = [e for e in ran.events("executed", node)]
    assert executed, "the preview node sent no 'executed' event"
    assert frames > 1 and state["width"] % 2 == 0


def test_evaluate_node_shows_score_parts_and_plot(ran, workflow):
    (node,) = node_ids(workflow, EVALUATE)
    plot = f'img.portraittalk-plot[data-node-id="{node}"]'
    ran.page.wait_for_function(f"""() => {{ const i = document.querySelector('{plot}');
        return i && i.complete && i.naturalWidth > 0; }}""", timeout=60_000)
    panel = ran.page.evaluate(f"""() => {{
        const img = document.querySelector('{plot}');
        const root = img.closest('.portraittalk-scores');
        const box = img.getBoundingClientRect();
        return {{ text: root.innerText, box: [box.width, box.height], natural: [img.naturalWidth, img.naturalHeight] }};
    }}""")
    assert min(panel["box"]) > 0 and min(panel["natural"]) > 0, panel
    backend = next(n["widgets_values"][1] for n in workflow["nodes"] if n["id"] == node)
    assert re.search(r"ADFD \d\.\d{3}", panel["text"]), (
        f"no ADFD score in the panel: {panel['text']!r} (face backend {backend!r}: frames of the demo model "
        "are SynthTalk faces, which the 'colour' backend measures)")
    for part in ("spatial", "temporal", "jitter", "lag"):
        assert part in panel["text"], panel["text"]


def test_sampler_shows_live_step_previews(ran, workflow):
    (node,) = node_ids(workflow, SAMPLER)
    previews = ran.events("b_preview_with_metadata", node)
    assert previews, f"no step preview reached the browser; events: {sorted(set(ran.event_types()))}"
    shown = ran.page.evaluate(f"""() => {{ const n = app.graph.getNodeById({node});
        const img = n?.imgs?.[0]; return img ? [img.naturalWidth, img.naturalHeight] : null; }}""")
    assert shown and min(shown) > 0, "the sampler node shows no preview image"


def test_sampler_shows_partial_videos(ran, workflow):
    (node,) = node_ids(workflow, SAMPLER)
    assert ran.events("portraittalk.partial_video", node), "no partial video event for the sampler"
    assert ran.page.locator(f'video[data-node-id="{node}"]').count() == 1


def test_partial_video_event_puts_a_player_in_that_node(ran, workflow):
    """The extension's side of publish_partial_video: an event naming a node (here the decoder, which
    has no player of its own) shows that video in that node. The event is dispatched in the page, with
    the preview node's mp4 standing in for a partial one."""
    (preview,) = node_ids(workflow, PREVIEW)
    target = next(n["id"] for n in workflow["nodes"] if n["type"] == "PortraitTalkDecode")
    ran.page.evaluate(f"""() => {{
        const src = new URL(document.querySelector('video[data-node-id="{preview}"]').src);
        const detail = {{ node: "{target}", filename: src.searchParams.get("filename"),
                          subfolder: src.searchParams.get("subfolder"), type: "temp", fps: 25, frames: 3,
                          has_audio: true, partial: true }};
        window.comfyAPI.api.api.dispatchEvent(new CustomEvent("portraittalk.partial_video", {{ detail }}));
    }}""")
    selector = f'video[data-node-id="{target}"]'
    ran.page.wait_for_function(f"""() => {{ const v = document.querySelector('{selector}');
        return v && v.readyState >= 2; }}""", timeout=60_000)
    caption = ran.page.evaluate(f"""() => document.querySelector('{selector}').parentElement.innerText""")
    assert "in progress" in caption, caption


def test_node_help_opens_from_the_selection_toolbox(ran, workflow, artifacts):
    (node,) = node_ids(workflow, SAMPLER)
    first_line = (REPO_ROOT / "web" / "docs" / f"{SAMPLER}.md").read_text(encoding="utf-8").splitlines()[0]
    # centre it first: the selection toolbox floats above the node, outside the viewport for a node near the top
    ran.page.evaluate(f"""() => {{ const n = app.graph.getNodeById({node});
        app.canvas.centerOnNode(n); app.canvas.selectNode(n); app.canvas.setDirty(true, true); }}""")
    ran.page.locator('[data-testid="info-button"]').first.click(timeout=30_000)
    ran.page.get_by_text(first_line[:40]).first.wait_for(timeout=30_000)
    ran.screenshot(artifacts / "portraittalk_node_help.png")


def test_players_and_panels_stay_out_of_saved_workflows_and_prompts(ran, workflow):
    """The DOM widgets are displays, not values: a saved workflow keeps its widgets_values, and the
    prompt sent to the server has no extra inputs."""
    ids = node_ids(workflow, PREVIEW) + node_ids(workflow, EVALUATE)
    saved, prompt = ran.page.evaluate("""async (ids) => {
        const graph = app.graph.serialize();
        const { output } = await app.graphToPrompt();
        return [graph.nodes.filter((n) => ids.includes(n.id)).map((n) => [n.id, n.widgets_values]),
                ids.map((id) => [id, Object.keys(output[String(id)].inputs).sort()])];
    }""", ids)
    original = {n["id"]: n["widgets_values"] for n in workflow["nodes"] if n["id"] in ids}
    assert {i: len(v) for i, v in saved} == {i: len(v) for i, v in original.items()}
    (preview,) = node_ids(workflow, PREVIEW)
    assert dict(prompt)[preview] == ["audio", "fps", "images"]


def test_console_filter_catches_pack_script_errors_only():
    from comfyui_harness.browser.comfy_page import ConsoleEntry

    pack = "http://h/extensions/ComfyUI-PortraitTalk/"
    assert ConsoleEntry("error", "TypeError: x", f"{pack}player.js").from_pack_script()
    assert ConsoleEntry("pageerror", f"TypeError: x\n    at f ({pack}scores.js:3:4)", "").from_pack_script()
    assert not ConsoleEntry("error", "Failed to load resource: 404", f"{pack}docs/X/en.md").from_pack_script()
    assert not ConsoleEntry("error", "TypeError: y", "http://h/assets/index.js").from_pack_script()


def test_pack_scripts_load_without_console_errors(ran):
    assert "PortraitTalk.Previews" in ran.extension_names()
    scripts = {url: status for url, status in ran.pack_responses.items() if url.endswith(".js")}
    assert scripts, "no script of the pack was requested"
    bad = {url: status for url, status in scripts.items() if status >= 400}
    assert not bad, f"pack scripts failed to load: {bad}"
    errors = ran.pack_console_errors()
    assert not errors, "console errors from the pack's scripts:\n" + "\n".join(f"{e.kind}: {e.text}" for e in errors)
