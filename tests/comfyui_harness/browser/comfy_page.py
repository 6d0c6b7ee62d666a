"""ComfyUI's frontend in a Playwright page: open it with the first-run dialogs out of the way, record
console errors and the websocket events a test needs, load and run a workflow.

Everything here goes through the frontend's public surface: `app.loadGraphData`, `app.queuePrompt`,
`api.addEventListener`, `app.extensionManager.command`, and the page's DOM.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import requests

PACK_URL_PART = "/extensions/ComfyUI-PortraitTalk/"
SCRIPT = re.compile(re.escape(PACK_URL_PART) + r"[^\s'\")]*\.js\b")
# Recorded in the page before a run: websocket events, with the node they concern.
RECORDER = """(types) => {
  const api = window.comfyAPI.api.api;
  window.__ptTest = { events: [] };
  for (const type of types) {
    api.addEventListener(type, ({ detail }) => {
      const node = detail?.displayNodeId ?? detail?.node ?? detail?.node_id ?? null;
      window.__ptTest.events.push({ type, node: node === null ? null : String(node), t: performance.now() });
    });
  }
}"""
EVENTS = ["execution_start", "executed", "execution_success", "execution_error", "execution_interrupted",
          "b_preview_with_metadata", "portraittalk.partial_video"]


@dataclass
class ConsoleEntry:
    kind: str  # console message type ("error", "warning") or "pageerror"
    text: str
    url: str

    def from_pack_script(self) -> bool:
        """Logged by (or about loading) one of the pack's scripts. The frontend's own probe for a
        translated help page (docs/<node>/<locale>.md, 404 before it falls back to docs/<node>.md)
        is not a script's error."""
        return bool(SCRIPT.search(self.url) or SCRIPT.search(self.text))


@dataclass
class ComfyPage:
    page: object  # playwright.sync_api.Page
    base_url: str
    console: list[ConsoleEntry] = field(default_factory=list)
    pack_responses: dict[str, int] = field(default_factory=dict)  # URL of a pack file -> HTTP status

    @classmethod
    def open(cls, browser, base_url: str, viewport=(1600, 1000)) -> "ComfyPage":
        # Server-side setting, so the first-run templates dialog never opens.
        requests.post(f"{base_url}/settings", json={"Comfy.TutorialCompleted": True}, timeout=30).raise_for_status()
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self = cls(page, base_url)
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.console.append(
            ConsoleEntry("pageerror", f"{err.message}\n{err.stack or ''}", "")))
        page.on("response", self._on_response)
        page.goto(base_url)
        page.wait_for_function("window.app?.graph && window.app.extensionManager && window.comfyAPI?.api",
                               timeout=120_000)
        self.close_dialogs()
        page.evaluate(RECORDER, EVENTS)
        return self

    def _on_console(self, msg) -> None:
        if msg.type in ("error", "warning"):
            self.console.append(ConsoleEntry(msg.type, msg.text, (msg.location or {}).get("url", "")))

    def _on_response(self, response) -> None:
        if PACK_URL_PART in response.url:
            self.pack_responses[response.url] = response.status

    def close_dialogs(self) -> None:
        for _ in range(3):
            if not self.page.locator(".p-dialog").count():
                return
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(300)

    def pack_console_errors(self) -> list[ConsoleEntry]:
        return [e for e in self.console if e.kind in ("error", "pageerror") and e.from_pack_script()]

    def extension_names(self) -> list[str]:
        return self.page.evaluate("() => (app.extensions ?? []).map((e) => e.name)")

    def load(self, workflow: dict) -> None:
        self.page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)

    def run(self, timeout: float = 900.0) -> str:
        """Queue the loaded workflow and wait; returns the terminal event type."""
        self.page.evaluate("async () => { window.__ptTest.events.length = 0; await app.queuePrompt(0); }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e["type"] for e in self.events() if e["type"] in
                    ("execution_success", "execution_error", "execution_interrupted")]
            if done:
                return done[0]
            self.page.wait_for_timeout(500)
        raise TimeoutError(f"the workflow did not finish in {timeout} s; events: {self.event_types()}")

    def events(self, type_: str | None = None, node=None) -> list[dict]:
        events = self.page.evaluate("() => window.__ptTest.events")
        return [e for e in events if (type_ is None or e["type"] == type_) and (node is None or e["node"] == str(node))]

    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def fit_view(self, node_ids=()) -> None:
        """Zoom to the whole graph, or to the given nodes (the command fits the selection)."""
        self.page.evaluate("""async (ids) => {
            app.canvas.deselectAll();
            if (ids.length) app.canvas.selectNodes(ids.map((id) => app.graph.getNodeById(id)));
            await app.extensionManager.command.execute('Comfy.Canvas.FitView');
            app.canvas.deselectAll();
        }""", list(node_ids))
        self.page.wait_for_timeout(800)  # the fit is animated

    def screenshot(self, path) -> None:
        self.page.screenshot(path=str(path))
