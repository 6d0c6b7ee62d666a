"""The web folder as the server serves it: every script is listed and served, and every node of the
pack has a help page where frontend 1.32.9 looks for one.

The frontend's node help (the (i) button of the selection toolbox, or the node library) fetches,
for a node whose `python_module` is `custom_nodes.<pack>`, `/extensions/<pack>/docs/<node>/<locale>.md`
and then `/extensions/<pack>/docs/<node>.md`; the pack ships the second, web/docs/<node>.md.
test_web_browser.py opens one of them in a real browser.
"""

from __future__ import annotations

import re

import pytest

from comfyui_harness.server import PACK_FOLDER_NAME, REPO_ROOT

pytestmark = pytest.mark.comfyui

WEB = REPO_ROOT / "web"


def pack_nodes(object_info: dict) -> dict[str, dict]:
    return {name: info for name, info in object_info.items()
            if info.get("python_module") == f"custom_nodes.{PACK_FOLDER_NAME}"}


def test_every_script_is_listed_and_served(comfy_client):
    listed = set(comfy_client.get_json("/extensions"))
    for script in sorted(WEB.rglob("*.js")):
        url = f"/extensions/{PACK_FOLDER_NAME}/{script.relative_to(WEB).as_posix()}"
        assert url in listed, f"{url} is not in /extensions"
        r = comfy_client.get(url)
        assert r.status_code == 200 and "javascript" in r.headers["Content-Type"], (url, r.status_code)


def test_every_node_has_a_help_page_naming_its_inputs(comfy_client, object_info):
    nodes = pack_nodes(object_info)
    assert "PortraitTalkSampler" in nodes and "PortraitTalkEvaluate" in nodes
    problems = []
    for name, info in sorted(nodes.items()):
        r = comfy_client.get(f"/extensions/{PACK_FOLDER_NAME}/docs/{name}.md")
        if r.status_code != 200:
            problems.append(f"{name}: no help page (web/docs/{name}.md), HTTP {r.status_code}")
            continue
        text = r.text
        inputs = [n for section in ("required", "optional") for n in info["input"].get(section, {})]
        missing = [n for n in inputs if f"`{n}`" not in text]
        if missing:
            problems.append(f"{name}: help does not describe inputs {missing}")
        if not re.search(r"^## Outputs", text, re.M):
            problems.append(f"{name}: help has no '## Outputs' section")
    assert not problems, "\n".join(problems)


def test_no_help_page_for_a_node_that_does_not_exist(object_info):
    pages = {p.stem for p in (WEB / "docs").glob("*.md")}
    stale = sorted(pages - set(pack_nodes(object_info)))
    assert not stale, f"help pages for unknown nodes: {stale}"
