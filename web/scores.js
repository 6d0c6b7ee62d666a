// The Evaluate node's panel: the ADFD score, its parts, the other metrics, and the mouth-vs-audio plot.
import { ensureStyle } from "./style.js";
import { fitNode, viewUrl } from "./view.js";

const WIDGET_NAME = "portraittalk_scores";
const PARTS = [["spatial", 2], ["temporal", 2], ["jitter", 2]];
const panels = new WeakMap(); // node -> panel

export function showScores(node, result) {
  if (!result) return;
  let panel = panels.get(node);
  if (!panel) {
    panel = createPanel(node);
    panels.set(node, panel);
  }
  panel.update(result);
}

const fmt = (v, digits = 3) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text; // text only: the server's strings are never HTML
  return el;
}

function createPanel(node) {
  ensureStyle();
  const root = element("div", "portraittalk-panel portraittalk-scores");
  const score = element("div", "portraittalk-score");
  const parts = element("div", "portraittalk-parts");
  const details = element("div", "portraittalk-caption");
  const plot = element("img", "portraittalk-plot");
  plot.alt = "mouth aperture against loudness";
  plot.dataset.nodeId = String(node.id);
  root.append(score, parts, details, plot);

  let minHeight = 120;
  const widget = node.addDOMWidget(WIDGET_NAME, "portraittalk-scores", root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => minHeight,
  });
  widget.serialize = false;

  const textHeight = () => score.offsetHeight + parts.offsetHeight + details.offsetHeight + 16;
  plot.addEventListener("load", () => {
    const width = Math.max(node.size[0] - 20, 64);
    minHeight = Math.round((width * plot.naturalHeight) / Math.max(plot.naturalWidth, 1)) + Math.max(textHeight(), 70);
    fitNode(node);
  });

  return {
    update(result) {
      const adfd = result.adfd ?? {};
      parts.replaceChildren();
      if (typeof adfd.score === "number") {
        score.textContent = `ADFD ${fmt(adfd.score)}`;
        score.classList.remove("portraittalk-error");
        for (const [name, digits] of PARTS) parts.append(element("span", "", `${name} ${fmt(adfd[name], digits)}`));
        parts.append(element("span", "", `lag ${adfd.lag > 0 ? "+" : ""}${adfd.lag ?? "–"} fr`));
      } else {
        score.textContent = `ADFD –  ${adfd.error ?? adfd.skipped ?? "not measured"}`;
        score.classList.toggle("portraittalk-error", Boolean(adfd.error));
      }
      const lines = [];
      for (const [name, m] of Object.entries(result.other ?? {})) {
        lines.push(`${name.toUpperCase()} ${m.value !== undefined ? fmt(m.value) : `– ${m.error ?? m.skipped ?? ""}`}`);
      }
      if (result.frames_without_face) lines.push(`${result.frames_without_face} frames without a face`);
      lines.push(`${result.frames} frames · ${result.face_backend ?? "no face backend"}`);
      details.textContent = lines.join(" · ");
      details.title = [...lines, ...(adfd.notes ?? [])].join("\n");
      if (result.plot?.filename) plot.src = viewUrl(result.plot);
    },
  };
}
