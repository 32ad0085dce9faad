// Dataset page: review by keyboard. Arrows move a cursor over the tiles, Space selects, Enter opens
// the lens; a adds to the group, d / Delete deletes, m moves (the selection, or the cursor's image
// when nothing is selected), u undoes the last change; ? lists the keys. In the lens a and d act on the image shown and advance.
"use strict";

(() => {
  const page = () => window.DatasetPage;
  let cursor = -1;

  const tiles = () => [...document.querySelectorAll("#grid .tile")];
  const typing = (e) => e.target.closest("input, select, textarea, dialog") || document.querySelector("dialog[open]");

  function mark(scroll = true) {
    const all = tiles();
    if (!all.length) { cursor = -1; return; }
    cursor = Math.max(0, Math.min(cursor, all.length - 1));
    all.forEach((t, i) => t.classList.toggle("cursor", i === cursor));
    if (scroll) all[cursor].scrollIntoView({ block: "nearest" });
  }

  function perRow() {
    const all = tiles();
    const top = all.length ? all[0].offsetTop : 0;
    return Math.max(1, all.filter((t) => t.offsetTop === top).length);
  }

  // The selection when there is one, else the cursor's image.
  function onImages(status) {
    const p = page();
    if (status === p.state.status) return;
    if (p.selectedCount()) { p.changeStatus(status); return; }
    const t = tiles()[cursor];
    if (t) p.act(status, [t.dataset.id]);
  }

  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: () => -perRow(), ArrowDown: () => perRow() };

  function key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    const t = tiles()[cursor];
    if (e.key in moves) {
      const d = moves[e.key];
      cursor = cursor < 0 ? 0 : cursor + (typeof d === "function" ? d() : d);
      mark();
    } else if (e.key === " " && t) page().toggleAt(t);
    else if (e.key === "Enter" && t) page().openLens(t.dataset.id);
    else if (e.key === "a") onImages("group");
    else if (e.key === "d" || e.key === "Delete") onImages("deleted");
    else if (e.key === "m" && (page().selectedCount() || t)) {
      if (!page().selectedCount() && t) page().toggleAt(t);
      page().openMove();
    } else if (e.key === "u") CV.undoLast();
    else if (e.key === "?") CV.$("keys-help").showModal();
    else return;
    e.preventDefault();
  }

  document.addEventListener("keydown", key);
  window.addEventListener("grid-rendered", () => { if (cursor >= 0) mark(false); });
})();
