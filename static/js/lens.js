// The lens: a large view of one image from a list, arrow keys to step, Esc to close.
"use strict";

const Lens = (() => {
  let items = [];
  let index = 0;
  const dlg = () => CV.$("lens");

  function show() {
    const item = items[index];
    if (!item) return;
    CV.$("lens-img").src = item.url;
    CV.$("lens-caption").textContent = `${index + 1} / ${items.length} · ${item.caption || ""}`;
  }

  function open(list, i) {
    items = list;
    index = i;
    show();
    if (!dlg().open) dlg().showModal();
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
    });
    dlg().addEventListener("click", (e) => { if (e.target === dlg()) dlg().close(); });
  });
  return { open, step };
})();
