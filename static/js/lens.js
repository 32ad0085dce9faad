// The lens: a large view of one image (or of a pair side by side) from a list, arrow keys to step, Esc to close.
"use strict";

const Lens = (() => {
  let items = [];
  let index = 0;
  let onKey = null;  // the page's own keys for the image shown: onKey(event, item) -> true when handled
  const dlg = () => CV.$("lens");

  function show() {
    const item = items[index];
    if (!item) return;
    CV.$("lens-img").src = item.url;
    CV.$("lens-img2").hidden = !item.url2;  // a pair: both images side by side
    if (item.url2) CV.$("lens-img2").src = item.url2;
    CV.$("lens-caption").textContent = `${index + 1} / ${items.length} · ${item.caption || ""}`;
  }

  function open(list, i, keys = null) {
    items = list;
    index = i;
    onKey = keys;
    show();
    if (!dlg().open) dlg().showModal();
  }

  // The image shown was dealt with (added, deleted, moved): it leaves the list and the next one shows.
  function advance() {
    items.splice(index, 1);
    if (!items.length) { dlg().close(); return; }
    index = Math.min(index, items.length - 1);
    show();
  }

  function step(d) {
    if (!items.length) return;
    index = (index + d + items.length) % items.length;
    show();
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!dlg()) return;
    CV.$("lens-prev").addEventListener("click", () => step(-1));
    CV.$("lens-next").addEventListener("click", () => step(1));
    CV.$("lens-close").addEventListener("click", () => dlg().close());
    dlg().addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
      if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
      if (onKey && items[index] && onKey(e, items[index])) e.preventDefault();
    });
    dlg().addEventListener("click", (e) => { if (e.target === dlg()) dlg().close(); });
  });
  return { open, step, advance };
})();
