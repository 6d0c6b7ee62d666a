// Styles shared by the pack's node widgets, added to the page once.
const STYLE_ID = "portraittalk-style";

const CSS = `
.portraittalk-panel { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%;
  box-sizing: border-box; overflow: hidden; font: 12px sans-serif; color: var(--fg-color, #ddd); }
.portraittalk-panel video, .portraittalk-panel img { width: 100%; min-height: 0; flex: 1 1 auto;
  object-fit: contain; background: #000; border-radius: 4px; }
.portraittalk-panel img { background: #fff; }
.portraittalk-caption { flex: 0 0 auto; opacity: 0.75; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.portraittalk-score { flex: 0 0 auto; font-size: 18px; font-weight: bold; }
.portraittalk-parts { flex: 0 0 auto; display: grid; grid-template-columns: repeat(4, 1fr); gap: 2px 8px; }
.portraittalk-parts span { white-space: nowrap; }
.portraittalk-error { color: #f77; }
`;

export function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.append(style);
}
