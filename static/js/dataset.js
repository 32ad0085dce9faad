// The Dataset page: group tree, image grid with statuses, selection, lens, upload.
"use strict";

(() => {
  const { $, api, toast, on, el, encodeGroup, watchJob, dropZone } = CV;
  const PAGE = 200;
  const state = {
    groups: [],
    group: null,
    status: "group",
    images: [],
    total: 0,
    loading: false,
    // The selection: explicit ids, or (all) every image of the group's status except `ids`, loaded or not.
    sel: { all: false, ids: new Set() },
    generation: 0,
    labelMode: "single",
    moveKind: "move", // the group dialog moves, or (multi-label) adds a membership
  };

  // ---- groups --------------------------------------------------------------------------
  async function loadGroups() {
    const [data, mode] = await Promise.all([api("GET", "/api/groups"), api("GET", "/api/dataset/mode")]);
    state.groups = data.groups;
    state.labelMode = mode.label_mode;
    $("mode-multi").checked = state.labelMode === "multi";
    $("btn-also").hidden = state.labelMode !== "multi";
    if (state.group && !state.groups.some((g) => g.name === state.group)) {
      state.group = null;
      resetImages();
    }
    renderTree();
    renderCounts();
  }

  function renderTree() {
    const tree = $("group-tree");
    tree.replaceChildren();
    $("no-groups").hidden = state.groups.length > 0;
    for (const g of state.groups) {
      const depth = g.name.split("/").length - 1;
      const leaf = g.name.split("/").pop();
      const item = el("li", { role: "treeitem", "data-group": g.name, class: g.name === state.group ? "selected" : "" },
        el("button", { class: "tree-node", style: `padding-left:${0.6 + depth * 1.1}rem`, onclick: () => selectGroup(g.name) },
          el("span", { class: "tree-name", text: leaf }),
          g.exclusive ? el("span", { class: "chip", text: "attribute", title: "Its sub-groups are the values of one attribute: one per image" }) : "",
          el("span", { class: "tree-count", text: String(g.counts.group), title: `${g.counts.group} in group, ${g.counts.new} new, ${g.counts.deleted} deleted` }),
          g.counts.new ? el("span", { class: "tree-new", text: `+${g.counts.new}`, title: "New images waiting for review" }) : ""));
      tree.append(item);
    }
    $("btn-rename-group").disabled = !state.group;
    $("btn-delete-group").disabled = !state.group;
    const current = state.groups.find((x) => x.name === state.group);
    $("btn-exclusive").hidden = !(state.labelMode === "multi" && current && !current.parent);
    $("btn-exclusive").textContent = current && current.exclusive ? "Not an attribute" : "Attribute";
    $("current-group").textContent = state.group || "Select a group";
  }

  function renderCounts() {
    const g = state.groups.find((x) => x.name === state.group);
    for (const s of ["group", "new", "deleted"]) {
      document.querySelector(`[data-count="${s}"]`).textContent = g ? g.counts[s] : 0;
    }
  }

  const isSelected = (id) => state.sel.all !== state.sel.ids.has(id);
  const selectedCount = () => (state.sel.all ? state.total - state.sel.ids.size : state.sel.ids.size);
  function clearSelection() { state.sel = { all: false, ids: new Set() }; }
  // What the server applies: the ids, or "every image of this group's status except these".
  const selection = () => (state.sel.all
    ? { every: { group: state.group, status: state.status, except: [...state.sel.ids] } }
    : { ids: [...state.sel.ids] });

  function selectGroup(name) {
    state.group = name;
    clearSelection();
    history.replaceState(null, "", `#group=${encodeURIComponent(name)}&status=${state.status}`);
    renderTree();
    renderCounts();
    reloadImages();
  }

  function setStatus(status) {
    state.status = status;
    document.querySelectorAll(".status-switch button").forEach((b) => b.classList.toggle("active", b.dataset.status === status));
    clearSelection();
    if (state.group) history.replaceState(null, "", `#group=${encodeURIComponent(state.group)}&status=${status}`);
    reloadImages();
  }

  // ---- images --------------------------------------------------------------------------
  function resetImages() {
    state.generation++;
    state.images = [];
    state.total = 0;
    state.loading = false;
    $("grid").querySelectorAll(".tile").forEach((t) => t.remove());
    updateEmpty();
    updateSelectionInfo();
  }

  // Another group or status: the grid empties at once, so no tile of the old view can be clicked.
  function reloadImages() {
    resetImages();
    if (state.group) loadMore();
  }

  // The same view again (after a change here or elsewhere): the tiles shown stay until the new page has
  // come and are then swapped in one step. Emptying first would disable Invert and Select all under a
  // pointer for the length of a request, and a click in that moment was silently lost.
  function refreshImages() {
    if (!state.group) { resetImages(); return; }
    state.generation++;
    state.loading = false;
    loadMore(true);
  }

  async function loadMore(replace = false) {
    if (!state.group || (state.loading && !replace)) return;
    if (!replace && state.images.length && state.images.length >= state.total) return;
    state.loading = true;
    const gen = state.generation;
    try {
      const offset = replace ? 0 : state.images.length;
      const url = `/api/groups/${encodeGroup(state.group)}/images?status=${state.status}&offset=${offset}&limit=${PAGE}`;
      const data = await api("GET", url);
      if (gen !== state.generation) return;
      const grid = $("grid");
      if (replace) {
        state.images = [];
        grid.querySelectorAll(".tile").forEach((t) => t.remove());
      }
      state.total = data.total;
      const frag = document.createDocumentFragment();
      for (const img of data.images) {
        state.images.push(img);
        frag.append(tile(img, state.images.length - 1));
      }
      grid.append(frag);
      window.dispatchEvent(new Event("grid-rendered"));
      updateEmpty();
      updateSelectionInfo();
    } catch (e) {
      toast(e.message, "error");
    } finally {
      if (gen === state.generation) state.loading = false;
    }
    // Keep filling while the sentinel is still on screen.
    if (gen === state.generation && state.images.length < state.total && sentinelVisible()) loadMore();
  }

  function sentinelVisible() {
    const r = $("grid-sentinel").getBoundingClientRect();
    return r.top < window.innerHeight + 400;
  }

  function tile(img, i) {
    const others = (img.groups || []).filter((g) => g !== img.group);
    const chips = others.length
      ? [el("span", { class: "tile-chips" }, ...others.map((g) => el("span", { class: "chip", text: g, title: `Also in ${g}` })))]
      : [];
    return CV.tile(img, { number: i + 1, selected: isSelected(img.id), extra: chips,
      onSelect: (node) => toggle(img.id, node), onOpen: () => openLens(img.id) });
  }

  function openLens(id) {
    const list = state.images.map((im) => ({ id: im.id, url: im.url, caption: `${im.group} · ${im.filename} · ${im.width}×${im.height}` }));
    Lens.open(list, state.images.findIndex((im) => im.id === id), lensKey);
  }

  // In the lens, a and d / Delete act on the image shown and go on to the next one (auto-advance).
  let lensBusy = false;  // a key pressed again before the answer must not act on the same image twice
  function lensKey(e, item) {
    const status = e.key === "a" ? "group" : (e.key === "d" || e.key === "Delete") ? "deleted" : null;
    if (!status || status === state.status) return false;
    if (lensBusy) return true;
    lensBusy = true;
    act(status, [item.id]).then((ok) => { lensBusy = false; if (ok) Lens.advance(); });
    return true;
  }

  // A status change of the given images (the keyboard's cursor image): true when it was made.
  async function act(status, ids) {
    try {
      const r = await api("POST", "/api/images/status", { ids, status });
      CV.undoToast(`${r.updated} image(s) now ${status === "group" ? "in the group" : status}`, r.undo);
      await refresh();
      return true;
    } catch (e) { toast(e.message, "error"); return false; }
  }

  function toggle(id, node) {
    if (state.sel.ids.has(id)) state.sel.ids.delete(id); else state.sel.ids.add(id);
    node.classList.toggle("selected", isSelected(id));
    updateSelectionInfo();
  }

  function updateEmpty() {
    const empty = $("grid-empty");
    empty.hidden = state.images.length > 0;
    empty.textContent = state.group ? "No images here. Drop images here or press + to upload." : "Select or add a group on the left.";
  }

  function updateSelectionInfo() {
    const n = selectedCount();
    $("selection-info").textContent = state.total ? `${n} of ${state.total} selected` : "";
    for (const id of ["btn-to-group", "btn-delete-images", "btn-move", "btn-also"]) $(id).disabled = n === 0;
    $("btn-to-group").hidden = state.status === "group";
    $("btn-delete-images").hidden = state.status === "deleted";
    for (const id of ["btn-invert", "btn-select-all"]) $(id).disabled = state.images.length === 0;
    $("btn-select-none").disabled = n === 0;
    $("btn-upload").disabled = !state.group;
    $("btn-extend").disabled = !state.group;
  }

  // Over every image of the status, loaded or not: the complement of "these" is "all but these".
  function setSelection(change) {
    change();
    document.querySelectorAll("#grid .tile").forEach((t) => t.classList.toggle("selected", isSelected(t.dataset.id)));
    updateSelectionInfo();
  }
  const invertSelection = () => setSelection(() => { state.sel.all = !state.sel.all; });
  const selectAll = () => setSelection(() => { state.sel = { all: true, ids: new Set() }; });

  async function changeStatus(status) {
    if (!selectedCount()) return;
    try {
      const r = await api("POST", "/api/images/status", { ...selection(), status });
      CV.undoToast(`${r.updated} image(s) now ${status === "group" ? "in the group" : status}`, r.undo);
      clearSelection();
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  }

  async function moveSelected() {
    const target = $("dlg-move-target").value;
    if (!selectedCount() || !target) return;
    try {
      if (state.moveKind === "also") {
        const r = await api("POST", "/api/images/add", { ...selection(), group: target });
        CV.undoToast(`${r.added} image(s) now also in ${target}`, r.undo);
      } else {
        const r = await api("POST", "/api/images/move", { ...selection(), group: target });
        CV.undoToast(`${r.moved} image(s) moved to ${target}`, r.undo);
      }
      clearSelection();
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  }

  async function upload(files) {
    if (!state.group) { toast("Select a group first", "error"); return; }
    const list = [...files];
    if (!list.length) return;
    const form = new FormData();
    for (const f of list) form.append("files", f, f.name);
    form.append("status", state.status);
    toast(`Uploading ${list.length} file(s)…`);
    try {
      const r = await api("POST", `/api/groups/${encodeGroup(state.group)}/images`, form);
      let msg = `${r.added.length} added`;
      if (r.skipped.length) msg += `, ${r.skipped.length} skipped: ` + r.skipped.slice(0, 3).map((s) => `${s.name} (${s.reason})`).join("; ");
      toast(msg, r.skipped.length ? "warn" : "info");
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  }

  async function refresh() {
    await loadGroups();
    refreshImages();
  }

  // ---- group dialogs -------------------------------------------------------------------
  let groupDialogMode = "add";
  function openGroupDialog(mode) {
    groupDialogMode = mode;
    $("dlg-group-title").textContent = mode === "add" ? "Add group" : "Rename group";
    $("dlg-group-error").textContent = "";
    $("dlg-group-parent-row").hidden = mode !== "add";
    const input = $("dlg-group-name");
    input.value = mode === "rename" ? state.group.split("/").pop() : "";
    const sel = $("dlg-group-parent");
    sel.replaceChildren(el("option", { value: "", text: "(none — a root group)" }),
      ...state.groups.map((g) => el("option", { value: g.name, text: g.name })));
    if (mode === "add" && state.group) sel.value = "";
    $("dlg-group").showModal();
    input.focus();
  }

  async function submitGroupDialog(e) {
    e.preventDefault();
    const name = $("dlg-group-name").value;
    try {
      let r;
      if (groupDialogMode === "add") {
        r = await api("POST", "/api/groups", { name, parent: $("dlg-group-parent").value || null });
      } else {
        r = await api("PATCH", `/api/groups/${encodeGroup(state.group)}`, { name });
      }
      $("dlg-group").close();
      if (groupDialogMode === "rename") CV.undoToast(`Renamed to ${r.name}`, r.undo);
      state.group = r.name;
      await loadGroups();
      selectGroup(r.name);
    } catch (err) {
      $("dlg-group-error").textContent = err.message;
    }
  }

  async function deleteGroup() {
    try {
      const r = await api("DELETE", `/api/groups/${encodeGroup(state.group)}`);
      CV.undoToast(`Deleted ${r.deleted}; ${r.images} image(s) went to the trash`, r.undo);
      state.group = null;
      await loadGroups();
      resetImages();
      renderTree();
    } catch (e) { toast(e.message, "error"); }
  }

  // ---- extend images (the grabber) -----------------------------------------------------
  async function openExtend() {
    if (!state.group) return;
    $("extend-query").value = state.group.split("/").pop();
    $("extend-error").textContent = "";
    if (!$("extend-provider").options.length) {
      const p = await api("GET", "/api/grab/providers");
      $("extend-provider").replaceChildren(...p.providers.map((n) => el("option", { value: n, text: n })));
    }
    $("dlg-extend").showModal();
  }

  async function startExtend(e) {
    e.preventDefault();
    const group = state.group;
    try {
      const r = await api("POST", `/api/groups/${encodeGroup(group)}/grab`, {
        query: $("extend-query").value, count: Number($("extend-count").value), provider: $("extend-provider").value,
      });
      $("dlg-extend").close();
      toast(`Searching the web for "${$("extend-query").value}"…`);
      watchJob(r.job, {
        progress: (job) => { if (job.state === "running") toast(job.progress.message); },
        done: (job) => grabFinished(job, group),
      });
    } catch (err) {
      $("extend-error").textContent = err.message;
    }
  }

  function grabFinished(job, group) {
    if (job.state === "done") {
      const skipped = Object.values(job.result.skipped || {}).reduce((a, b) => a + b, 0);
      toast(`${job.result.added} new image(s) for ${group}${skipped ? `, ${skipped} skipped` : ""}`);
      if (state.group !== group) selectGroup(group);
      setStatus("new");
    } else {
      toast(job.state === "cancelled" ? "Extend images cancelled" : `Extend images failed: ${job.error}`, "error");
    }
  }

  // What the keyboard review (review.js) drives.
  window.DatasetPage = {
    state, isSelected, selectedCount, act, openLens, changeStatus,
    toggleAt: (node) => toggle(node.dataset.id, node),
    openMove: () => $("btn-move").click(),
  };

  // ---- wiring --------------------------------------------------------------------------
  function wire() {
    document.querySelectorAll(".status-switch button").forEach((b) => b.addEventListener("click", () => setStatus(b.dataset.status)));
    $("btn-add-group").addEventListener("click", () => openGroupDialog("add"));
    $("btn-rename-group").addEventListener("click", () => openGroupDialog("rename"));
    $("btn-delete-group").addEventListener("click", () => {
      const g = state.groups.find((x) => x.name === state.group);
      const n = g ? Object.values(g.counts).reduce((a, b) => a + b, 0) : 0;
      $("dlg-delete-name").textContent = `${state.group} and its ${n} image(s)`;
      $("dlg-delete-group").showModal();
    });
    document.addEventListener("undone", () => refresh());
    $("dlg-delete-ok").addEventListener("click", (e) => { e.preventDefault(); $("dlg-delete-group").close(); deleteGroup(); });
    $("dlg-group-ok").addEventListener("click", submitGroupDialog);
    $("btn-invert").addEventListener("click", invertSelection);
    $("btn-select-all").addEventListener("click", selectAll);
    $("btn-keys").addEventListener("click", () => $("keys-help").showModal());
    $("btn-select-none").addEventListener("click", () => setSelection(clearSelection));
    $("btn-to-group").addEventListener("click", () => changeStatus("group"));
    $("btn-delete-images").addEventListener("click", () => changeStatus("deleted"));
    const openMove = (kind) => {
      state.moveKind = kind;
      $("dlg-move-title").textContent = kind === "also" ? "Also in group" : "Move to group";
      $("dlg-move-ok").textContent = kind === "also" ? "Add" : "Move";
      $("dlg-move-target").replaceChildren(...state.groups.filter((g) => g.name !== state.group || state.status !== "group")
        .map((g) => el("option", { value: g.name, text: g.name })));
      $("dlg-move").showModal();
    };
    $("btn-move").addEventListener("click", () => openMove("move"));
    $("btn-also").addEventListener("click", () => openMove("also"));
    $("mode-multi").addEventListener("change", async (e) => {
      try {
        await api("PUT", "/api/dataset/mode", { label_mode: e.target.checked ? "multi" : "single" });
        toast(e.target.checked ? "Multi-label: an image may now be in several groups" : "Single-label: one group per image");
      } catch (err) { e.target.checked = !e.target.checked; toast(err.message, "error"); }
      await loadGroups();
      refreshImages();
    });
    $("btn-exclusive").addEventListener("click", async () => {
      const g = state.groups.find((x) => x.name === state.group);
      if (!g) return;
      try { await api("PATCH", `/api/groups/${encodeGroup(g.name)}`, { exclusive: !g.exclusive }); } catch (err) { toast(err.message, "error"); }
      await loadGroups();
    });
    $("dlg-move-ok").addEventListener("click", (e) => { e.preventDefault(); $("dlg-move").close(); moveSelected(); });
    $("btn-upload").addEventListener("click", () => $("file-input").click());
    $("btn-extend").addEventListener("click", openExtend);
    $("extend-ok").addEventListener("click", startExtend);
    $("file-input").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
    dropZone($("grid"), upload);
    new IntersectionObserver((entries) => { if (entries.some((x) => x.isIntersecting)) loadMore(); }, { rootMargin: "400px" })
      .observe($("grid-sentinel"));

    // Changes made elsewhere (another browser, a job) show up without reload.
    let timer = null;
    on("dataset", (ev) => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        try {
          await loadGroups();
        } catch {
          return; // the server is restarting or the page is closing; the next event retries
        }
        const touched = ev.groups || [];
        if (ev.op === "groups" || touched.includes(state.group)) refreshImages();
      }, 250);
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    wire();
    const params = new URLSearchParams(location.hash.slice(1));
    await loadGroups().catch((e) => toast(e.message, "error"));
    const status = params.get("status");
    if (["group", "new", "deleted"].includes(status)) {
      state.status = status;
      document.querySelectorAll(".status-switch button").forEach((b) => b.classList.toggle("active", b.dataset.status === status));
    }
    const g = params.get("group");
    if (g && state.groups.some((x) => x.name === g)) selectGroup(g);
    else if (state.groups.length) selectGroup(state.groups[0].name);
    else { updateEmpty(); updateSelectionInfo(); }
    window.cvDataset = state; // for the browser tests and the console
  });
})();
