// Inline SVG icons: no icon font, no emoji font needed (many Linux desktops have none).
// In HTML write <i data-icon="gift"></i>; `hydrateIcons()` swaps in the SVG.

const STROKE = {
  eye: '<path d="M2 12s3.5-7 10-7 10 7 10 7-3.5 7-10 7S2 12 2 12z"/><circle cx="12" cy="12" r="3"/>',
  gift: '<rect x="3" y="8" width="18" height="4" rx="1"/><path d="M12 8v13M5 12v9h14v-9"/><path d="M12 8S10.5 3 7.5 3a2.5 2.5 0 0 0 0 5M12 8s1.5-5 4.5-5a2.5 2.5 0 0 1 0 5"/>',
  video: '<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-3v10l-6-3z"/>',
  "sound-off": '<path d="M11 5L6 9H2v6h4l5 4z"/><path d="M22 9l-6 6M16 9l6 6"/>',
  "sound-on": '<path d="M11 5L6 9H2v6h4l5 4z"/><path d="M15.5 8.5a5 5 0 0 1 0 7M19 5a10 10 0 0 1 0 14"/>',
  send: '<path d="M22 2L11 13"/><path d="M22 2l-7 20-4-9-9-4z"/>',
  ticket: '<path d="M3 7a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2v3a2 2 0 0 0 0 4v3a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-3a2 2 0 0 0 0-4z"/><path d="M13 5v2M13 11v2M13 17v2"/>',
  packet: '<rect x="4" y="2" width="16" height="20" rx="2"/><path d="M4 7c4 3 12 3 16 0"/><circle cx="12" cy="10" r="2.5"/>',
  poll: '<path d="M5 20V11M11 20V4M17 20v-6M2 20h20"/>',
  megaphone: '<path d="M3 10v4h3l9 5V5L6 10z"/><path d="M18 9a3 3 0 0 1 0 6"/>',
  shield: '<path d="M12 2l8 3v6c0 5-3.5 9-8 11-4.5-2-8-6-8-11V5z"/>',
  clock: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>',
  ban: '<circle cx="12" cy="12" r="9"/><path d="M5.6 5.6l12.8 12.8"/>',
  users: '<circle cx="9" cy="8" r="3.5"/><path d="M2 20c0-3.5 3-6 7-6s7 2.5 7 6"/><path d="M16 4.5a3.5 3.5 0 0 1 0 7M22 20c0-3-2-5.2-5-5.8"/>',
  zap: '<path d="M13 2L3 14h9l-1 8 10-12h-9z"/>',
  pin: '<path d="M12 16v6"/><path d="M8 3h8l-1.5 6L18 13v3H6v-3l3.5-4z"/>',
  mic: '<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v4"/>',
  hang: '<path d="M2.5 14.5c5.3-5 13.7-5 19 0l-2.3 3-4-1.2v-3.1a10 10 0 0 0-6.4 0v3.1l-4 1.2z"/>',
  trophy: '<path d="M8 21h8M12 17v4M7 4h10v5a5 5 0 0 1-10 0z"/><path d="M17 5h3a3 3 0 0 1-3 4M7 5H4a3 3 0 0 0 3 4"/>',
  key: '<circle cx="7.5" cy="15.5" r="4.5"/><path d="M10.7 12.3L21 2M17 6l3 3M15 8l2 2"/>',
  code: '<path d="M8 6l-6 6 6 6M16 6l6 6-6 6"/>',
  play: '<rect x="2" y="4" width="20" height="16" rx="3"/><path d="M10 9l5 3-5 3z"/>',
  "user-plus": '<circle cx="9" cy="8" r="4"/><path d="M2 21c0-4 3-7 7-7s7 3 7 7M19 8v6M16 11h6"/>',
  x: '<path d="M6 6l12 12M18 6L6 18"/>',
  share: '<circle cx="18" cy="5" r="3"/><circle cx="6" cy="12" r="3"/><circle cx="18" cy="19" r="3"/><path d="M8.6 13.5l6.8 4M15.4 6.5l-6.8 4"/>',
  check: '<path d="M4 12l5 5L20 6"/>',
  swords: '<path d="M3 3l9.5 9.5M3 3v3l8 8M3 3h3l8 8M21 3l-9.5 9.5M21 3v3l-8 8M21 3h-3l-8 8"/><path d="M6 15l3 3-2 2-3-3zM18 15l-3 3 2 2 3-3z"/>',
  phone: '<path d="M5 3h4l2 5-2.5 1.5a11 11 0 0 0 6 6L16 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 5a2 2 0 0 1 2-2z"/>',
  tv: '<rect x="2" y="6" width="20" height="14" rx="2"/><path d="M8 2l4 4 4-4"/>',
  cart: '<circle cx="9" cy="20" r="1.5"/><circle cx="18" cy="20" r="1.5"/><path d="M2 3h3l2.7 12.4a2 2 0 0 0 2 1.6h8.6a2 2 0 0 0 2-1.5L22 8H6"/>',
};

const FILLED = {
  heart: '<path fill="currentColor" d="M12 21s-7.5-4.6-10-9.2C.5 8.5 2.3 4.5 6.2 4.5c2.2 0 3.8 1.2 4.8 2.8 1-1.6 2.6-2.8 4.8-2.8 3.9 0 5.7 4 4.2 7.3C19.5 16.4 12 21 12 21z"/>',
};

// The default gift catalog's pictures (colour, not currentColor).
const GIFTS = {
  heart: '<path fill="#ff4d7e" d="M12 21s-7.5-4.6-10-9.2C.5 8.5 2.3 4.5 6.2 4.5c2.2 0 3.8 1.2 4.8 2.8 1-1.6 2.6-2.8 4.8-2.8 3.9 0 5.7 4 4.2 7.3C19.5 16.4 12 21 12 21z"/><path fill="#fff" opacity=".45" d="M6.5 7.5c-1.5 0-2.5 1.2-2.4 2.6.6-1.1 1.5-1.8 2.8-2z"/>',
  rose: '<path stroke="#22c55e" stroke-width="1.8" fill="none" d="M12 13v9"/><path fill="#22c55e" d="M12 19c-1.5-2.2-4.5-3-6.5-2 2.2.3 4.3 1.3 6.5 3.4z"/><circle cx="12" cy="8.5" r="6" fill="#e11d48"/><path d="M9 8.5a3 3 0 0 1 6 0 3 3 0 0 1-3 3 2 2 0 0 1-2-2" stroke="#881337" stroke-width="1.4" fill="none"/>',
  rocket: '<path fill="#e5e7eb" d="M12 2c4 3 5.2 8 4.2 13H7.8C6.8 10 8 5 12 2z"/><circle cx="12" cy="9" r="2" fill="#60a5fa"/><path fill="#ef4444" d="M7.9 12.5L5 17l3.4-1zM16.1 12.5L19 17l-3.4-1z"/><path fill="#f59e0b" d="M9.5 16h5L12 22z"/>',
  castle: '<path fill="#a78bfa" d="M3 21V9h3v2h2V9h3v2h2V9h3v2h2V9h3v12z"/><path fill="#4c1d95" d="M10 21v-4.5a2 2 0 0 1 4 0V21z"/><path stroke="#fbbf24" stroke-width="1.4" d="M12 2.5V9"/><path fill="#fbbf24" d="M12 2.5h4.5l-1.2 1.6 1.2 1.6H12z"/>',
  default: '<rect x="3" y="9" width="18" height="12" rx="1.5" fill="#f43f5e"/><rect x="2" y="7" width="20" height="4" rx="1" fill="#fb7185"/><path fill="#fde047" d="M11 7h2v14h-2z"/><path stroke="#fde047" stroke-width="1.8" fill="none" d="M12 7S10.5 3 8 3.5 7 7 12 7zM12 7s1.5-4 4-3.5S17 7 12 7z"/>',
};

const NS = "http://www.w3.org/2000/svg";

function svg(body, cls, stroke) {
  const el = document.createElementNS(NS, "svg");
  el.setAttribute("viewBox", "0 0 24 24");
  el.setAttribute("aria-hidden", "true");
  el.setAttribute("class", `ico${cls ? ` ${cls}` : ""}`);
  if (stroke) {
    el.setAttribute("fill", "none");
    el.setAttribute("stroke", "currentColor");
    el.setAttribute("stroke-width", "2");
    el.setAttribute("stroke-linecap", "round");
    el.setAttribute("stroke-linejoin", "round");
  }
  el.innerHTML = body;
  return el;
}

/** An icon by name (see the tables above). */
export function icon(name, cls = "") {
  if (FILLED[name]) return svg(FILLED[name], cls, false);
  return svg(STROKE[name] || STROKE.gift, cls, true);
}

/** A colour picture of a gift of the catalog (a wrapped box for unknown ids). */
export function giftPicture(id, cls = "") {
  return svg(GIFTS[id] || GIFTS.default, `gift-pic ${cls}`.trim(), false);
}

/** Replace every <i data-icon="name"> under `root` by its SVG. */
export function hydrateIcons(root = document) {
  for (const el of root.querySelectorAll("i[data-icon]")) {
    if (!(el instanceof HTMLElement)) continue;
    el.replaceWith(icon(el.dataset.icon, el.className));
  }
}
