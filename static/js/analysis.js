// The Image analysis page: classify a dropped / chosen / pasted image or URL, similar-image search.
"use strict";

(() => {
  const { $, api, toast, on, el, watchJob, dropZone } = CV;
  const state = { file: null, url: null, group: null, result: null, indexJob: null };

  function setImage(file) {
    state.file = file;
    state.url = null;
    state.group = null;
    const preview = $("preview");
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    $("drop-text").hidden = true;
    analyze();
  }

  async function analyze() {
    if (!state.file && !state.url) return;
    $("analysis-error").textContent = "";
    const form = new FormData();
    if (state.file) form.append("file", state.file, state.file.name || "image");
    else form.append("url", state.url);
    form.append("similar", $("search").checked ? String(Math.max(1, Number($("how-many").value) || 20)) : "0");
    if (state.group) form.append("group", state.group);
    try {
      const r = await api("POST", "/api/analyze", form);
      state.result = r;
      renderVerdict(r);
      renderClasses(r.classification);
      renderSimilar(r);
      if ($("search").checked && !r.index) offerIndex();
    } catch (e) {
      $("analysis-error").textContent = e.message;
      if (e.status === 503) $("no-model").hidden = false;
    }
  }

  function renderVerdict(r) {
    const v = $("verdict");
    v.hidden = !(r.unknown || r.fallback);
    v.className = `verdict${r.unknown ? " unknown" : ""}`;
    v.textContent = r.unknown ? `Unknown: ${r.reason}` : r.fallback ? `Probably ${r.fallback} (the exact group is uncertain)` : "";
  }

  function renderClasses(rows) {
    const body = $("classes").querySelector("tbody");
    body.replaceChildren(...rows.map(([group, p]) => el("tr", { class: group === state.group ? "selected" : "", "data-group": group,
      onclick: () => { state.group = state.group === group ? null : group; analyze(); } },
      el("td", { text: group }),
      el("td", {}, el("span", { class: "bar", style: `width:${Math.round(p * 120)}px` }), el("span", { text: p.toFixed(4) })))));
  }

  function renderSimilar(r) {
    $("similar-scope").textContent = !$("search").checked ? "(search is off)" : state.group ? `in ${state.group}` : "in all groups";
    const items = r.similar.map((s) => ({ url: s.url, caption: `${s.group} · distance ${s.distance.toFixed(4)} · ${s.filename}` }));
    $("similar").replaceChildren(...r.similar.map((s, i) => CV.tile(s, { label: s.group, title: `${s.group} · ${s.filename}`,
      onSelect: () => Lens.open(items, i), extra: [el("span", { class: "tile-dist", text: s.distance.toFixed(3) })] })));
  }

  async function refreshIndexInfo() {
    const s = await api("GET", "/api/index");
    $("index-info").textContent = s.exists ? `Image index: ${s.images} images (${s.space})` : "No image index yet.";
    return s;
  }

  function offerIndex() {
    if (!$("dlg-index").open && !state.indexJob) $("dlg-index").showModal();
  }

  function indexProgress(job) {
    $("index-bar").max = Math.max(1, job.progress.total);
    $("index-bar").value = job.progress.done;
    $("index-progress").textContent = job.progress.message || job.state;
  }

  function indexFinished(job) {
    if (job.id !== state.indexJob) return;
    state.indexJob = null;
    $("index-ok").disabled = false;
    $("index-bar").hidden = true;
    if ($("dlg-index").open) $("dlg-index").close();
    if (job.state === "failed") toast(job.error, "error");
    refreshIndexInfo();
    analyze();
  }

  async function createIndex(e) {
    e.preventDefault();
    try {
      const r = await api("POST", "/api/index");
      state.indexJob = r.job;
      $("index-bar").hidden = false;
      $("index-ok").disabled = true;
      watchJob(r.job, { progress: indexProgress, done: indexFinished });
    } catch (err) { toast(err.message, "error"); $("dlg-index").close(); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("btn-pick").addEventListener("click", () => $("file").click());
    $("drop").addEventListener("click", () => $("file").click());
    $("file").addEventListener("change", (e) => { if (e.target.files[0]) setImage(e.target.files[0]); e.target.value = ""; });
    dropZone($("drop"), (files) => setImage(files[0]), (u) => { $("url").value = u; analyzeUrl(); });
    document.addEventListener("paste", (e) => {
      const f = [...(e.clipboardData || {}).files || []].find((x) => x.type.startsWith("image/"));
      if (f) setImage(f);
    });
    const analyzeUrl = () => {
      const u = $("url").value.trim();
      if (!u) return;
      state.url = u; state.file = null; state.group = null;
      const preview = $("preview");
      preview.hidden = !/^https?:/i.test(u);
      if (!preview.hidden) preview.src = u;
      $("drop-text").hidden = !preview.hidden;
      analyze();
    };
    $("btn-url").addEventListener("click", analyzeUrl);
    $("url").addEventListener("keydown", (e) => { if (e.key === "Enter") analyzeUrl(); });
    $("search").addEventListener("change", analyze);
    $("how-many").addEventListener("change", analyze);
    $("index-ok").addEventListener("click", createIndex);
    on("index", () => refreshIndexInfo().catch(() => {}));  // built by another page or after a change
    refreshIndexInfo().catch(() => {});
    api("GET", "/api/status").then((s) => { $("no-model").hidden = Boolean(s.model.run); }).catch(() => {});
    window.cvAnalysis = state;
  });
})();
