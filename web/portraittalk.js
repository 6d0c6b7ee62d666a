// PortraitTalk in the graph: the Preview Video node plays its mp4 with sound, a long-running node shows
// its partial video while it works, and the Evaluate node shows its scores and plot.
// Only the public extension API is used: registerExtension, beforeRegisterNodeDef/onExecuted,
// api.addEventListener and addDOMWidget.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { showVideo } from "./player.js";
import { showScores } from "./scores.js";
import { nodeForId } from "./view.js";

const HANDLERS = {
  // node id: [ui key the node returns, what to do with its last item]
  PortraitTalkPreviewVideo: ["portraittalk_video", showVideo],
  PortraitTalkEvaluate: ["portraittalk_eval", showScores],
};
const PARTIAL_VIDEO_EVENT = "portraittalk.partial_video";

app.registerExtension({
  name: "PortraitTalk.Previews",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const handler = HANDLERS[nodeData?.name];
    if (!handler) return;
    const [key, show] = handler;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      const items = output?.[key];
      if (Array.isArray(items) && items.length) show(this, items[items.length - 1]);
    };
  },

  setup() {
    // Sent by nodes/preview.py publish_partial_video() to the tab that queued the prompt.
    api.addEventListener(PARTIAL_VIDEO_EVENT, ({ detail }) => {
      const node = nodeForId(app.graph, detail?.node);
      if (node) showVideo(node, detail);
    });
  },
});
