// A video player (with sound) inside a node: the Preview Video node's result, or the partial videos
// a long-running node publishes while it works.
import { ensureStyle } from "./style.js";
import { fitNode, viewUrl } from "./view.js";

const WIDGET_NAME = "portraittalk_video";
const CAPTION_HEIGHT = 20;
const MAX_VIDEO_HEIGHT = 360; // taller videos are letterboxed instead of growing the node over its neighbours
const players = new WeakMap(); // node -> player

export function showVideo(node, item) {
  if (!item?.filename) return;
  let player = players.get(node);
  if (!player) {
    player = createPlayer(node);
    players.set(node, player);
  }
  player.load(item);
}

function createPlayer(node) {
  ensureStyle();
  const root = document.createElement("div");
  root.className = "portraittalk-panel portraittalk-player";
  const video = document.createElement("video");
  Object.assign(video, { controls: true, loop: true, playsInline: true, preload: "auto" });
  video.dataset.nodeId = String(node.id);
  const caption = document.createElement("div");
  caption.className = "portraittalk-caption";
  root.append(video, caption);

  let minHeight = 160;
  const widget = node.addDOMWidget(WIDGET_NAME, "portraittalk-video", root, {
    serialize: false, // a preview, not a value: keep it out of the prompt and the saved workflow
    hideOnZoom: false,
    getMinHeight: () => minHeight,
  });
  widget.serialize = false;

  video.addEventListener("loadedmetadata", () => {
    if (!video.videoWidth) return;
    const width = Math.max(node.size[0] - 20, 64);
    const fitted = (width * video.videoHeight) / video.videoWidth;
    minHeight = Math.round(Math.min(Math.max(fitted, 120), MAX_VIDEO_HEIGHT)) + CAPTION_HEIGHT;
    fitNode(node);
  });
  video.addEventListener("error", () => {
    caption.textContent = "The video could not be loaded (it may have been removed from the temp folder).";
  });

  let current = "";
  return {
    load(item) {
      const src = viewUrl(item);
      if (src === current) return;
      current = src;
      // A partial video replaces the one playing: carry on from the same moment.
      const resumeAt = video.paused ? null : video.currentTime;
      video.src = src;
      if (resumeAt !== null) {
        video.addEventListener("loadedmetadata", () => {
          video.currentTime = Math.min(resumeAt, video.duration || 0);
          video.play().catch(() => {}); // the browser may refuse; the user can press play
        }, { once: true });
      }
      const parts = [`${item.frames} frames`, `${Number(item.fps).toFixed(2).replace(/\.?0+$/, "")} fps`];
      if (item.has_audio === false) parts.push("no audio");
      if (item.partial) parts.push("in progress…");
      caption.textContent = parts.join(" · ");
      video.title = item.partial ? "Partial result: updated while the node runs" : "";
    },
  };
}
