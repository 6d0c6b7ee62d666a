// URLs of files the server's /view route serves (temp previews, outputs), and node sizing.
import { api } from "../../scripts/api.js";

export function viewUrl({ filename, subfolder = "", type = "temp" }) {
  const query = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${query}`);
}

// Grow the node so that its widgets fit (it never shrinks what the user made bigger).
export function fitNode(node) {
  const wanted = node.computeSize();
  node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1])]);
  node.setDirtyCanvas(true, true);
}

// The node of the root graph for an id the server sent. Execution ids inside subgraphs look like
// "12:5"; their first part is the subgraph node on the root graph.
export function nodeForId(graph, id) {
  if (id == null || !graph) return null;
  return graph.getNodeById(id) ?? graph.getNodeById(String(id).split(":")[0]) ?? null;
}
