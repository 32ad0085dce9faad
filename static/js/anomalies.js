// The Anomalies page: Errors (images another group fits better) and Duplicates, with move and delete.
"use strict";

(() => {
  const { $, api, toast, el, watchJob } = CV;
  const state = { type: "errors", data: null, selected: new Set(), job: null, groups: [] };

  let loads = 0;
  async function load() {
    state.type = $("type").value;
    const mine = ++loads;
    try {
      const data = await api("GET", `/api/anomalies?type=${state.type}`);
      if (mine !== loads) return; // a newer load is under way; its answer wins
      state.data = data;
      $("no-model").hidden = true;
      render();
    } catch (e) {
      if (e.status === 503) { $("no-model").hidden = false; $("list").replaceChildren(); }
      else toast(e.message, "error");
    }
  }

  async function calculate() {
    try {
      const r = await api("POST", `/api/anomalies?type=${$("type").value}`);
      state.job = r.job;
      $("btn-calc").disabled = true;
      $("calc-progress").textContent = "Calculating…";
      watchJob(r.job, { progress: (job) => { $("calc-progress").textContent = job.progress.message || job.state; }, done: calcFinished });
    } catch (e) {
      if (e.status === 503) $("no-model").hidden = false; else toast(e.message, "error");
    }
  }

  function calcFinished(job) {
    if (job.id !== state.job) return;
    $("btn-calc").disabled = false;
    state.job = null;
    if (job.state === "failed") toast(job.error, "error");
    $("calc-progress").textContent = job.state === "done" ? "" : job.state;
    load();
  }

  function toggle(id) {
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
    document.querySelectorAll(`[data-id="${id}"]`).forEach((n) => n.classList.toggle("selected", state.selected.has(id)));
    updateButtons();
  }

  function updateButtons() {
    const n = state.selected.size;
    $("sel-info").textContent = n ? `${n} selected` : "";
    $("btn-move").disabled = n === 0 || (state.type === "duplicates" && !$("move-target").value);
    $("btn-delete").disabled = n === 0;
    $("btn-add").disabled = n === 0 || (state.type === "duplicates" && !$("move-target").value);
    $("move-target").options[0].textContent = state.type === "errors" ? "the detected group" : "choose a group…";
  }

  // Why a pair is listed: the keypoints that agree and the share of the images they cover, or the
  // pixel comparison for images too plain for keypoints.
  function why(p) {
    const v = p.verdict || {};
    if (v.method === "bytes") return "identical bytes";
    if (v.method === "keypoints") return `${v.inliers} keypoints agree, covering ${Math.round(100 * v.coverage)} %`;
    if (v.method === "pixels") return `aligned pixels agree (correlation ${v.correlation})`;
    return "";
  }

  function render() {
    const present = new Set(state.type === "errors" ? state.data.items.map((x) => x.id)
      : state.data.pairs.flatMap((p) => [p.a.id, p.b.id]));
    for (const id of [...state.selected]) if (!present.has(id)) state.selected.delete(id);
    const list = $("list");
    list.className = state.type;
    if (state.type === "errors") {
      const items = state.data.items;
      $("anomaly-note").textContent = items.length
        ? `${items.length} image(s) fit another group better (checked ${state.data.checked || 0}; ${state.data.method}); worst first. Caption: detected group and probability, then own group.`
        : (state.data.message || "No errors found.");
      // multi-label items say which membership is doubtful: one it has (rejected) or one it lacks (missing)
      const describe = (it) => it.kind === "rejected" ? [`not ${it.group} ${it.probability.toFixed(3)}`, ` (in it; best other: ${it.detected} ${it.detected_probability.toFixed(3)})`]
        : it.kind === "missing" ? [`also ${it.detected} ${it.detected_probability.toFixed(3)}`, ` (not in it; in ${it.group})`]
          : [`${it.detected} ${it.detected_probability.toFixed(3)}`, ` / ${it.group} ${it.probability.toFixed(3)}`];
      const lens = items.map((it) => ({ url: it.url, caption: describe(it).join("") }));
      list.replaceChildren(...items.map((it, i) => el("div", { class: `err-card${state.selected.has(it.id) ? " selected" : ""}`, "data-id": it.id, onclick: () => toggle(it.id), ondblclick: () => Lens.open(lens, i) },
        el("img", { src: it.thumb, loading: "lazy", alt: "" }),
        el("div", { class: "caption" }, el("span", { class: "det", text: describe(it)[0] }), el("span", { text: describe(it)[1] })))));
    } else {
      const pairs = state.data.pairs;
      $("anomaly-note").textContent = pairs.length ? `${pairs.length} pair(s); pairs across groups first, then by distance. Selecting an image marks it wherever it appears.`
        : "No duplicates found.";
      const lens = pairs.map((p) => ({ url: p.a.url, url2: p.b.url, caption: `pair ${p.pair} · ${p.a.group} / ${p.b.group} · ${why(p)}` }));
      list.replaceChildren(...pairs.map((p, k) => el("div", { class: `pair ${p.cross_group ? "cross" : ""}` },
        el("div", { class: "pair-cap" }, el("b", { text: `pair ${p.pair}` }), el("br"), el("span", { text: `distance ${p.distance.toFixed(4)}` }), el("br"),
          el("span", { class: "muted", text: p.layers.join(", ") }), el("br"), el("span", { class: "pair-why muted", text: why(p) })),
        ...[p.a, p.b].map((x) => CV.tile(x, { label: `${x.group}${x.status === "new" ? " (new)" : ""}`, selected: state.selected.has(x.id),
          onSelect: () => toggle(x.id), onOpen: () => Lens.open(lens, k) })))));
    }
    updateButtons();
  }

  async function moveSelected() {
    const ids = [...state.selected];
    const target = $("move-target").value;
    try {
      if (target) {
        const r = await api("POST", "/api/images/move", { ids, group: target });
        CV.undoToast(`${r.moved} image(s) moved`, r.undo);
        await load();
        return;
      } else {
        const byGroup = {};
        for (const it of state.data.items.filter((x) => state.selected.has(x.id))) (byGroup[it.detected] = byGroup[it.detected] || []).push(it.id);
        for (const [group, gids] of Object.entries(byGroup)) await api("POST", "/api/images/move", { ids: gids, group });
      }
      toast(`${ids.length} image(s) moved`);
      await load();
    } catch (e) { toast(e.message, "error"); }
  }

  async function addSelected() {
    const target = $("move-target").value;
    try {
      const byGroup = {};
      for (const it of state.data.items.filter((x) => state.selected.has(x.id))) {
        const g = target || it.detected;
        (byGroup[g] = byGroup[g] || []).push(it.id);
      }
      let n = 0;
      for (const [group, gids] of Object.entries(byGroup)) n += (await api("POST", "/api/images/add", { ids: gids, group })).added;
      toast(`${n} image(s) added to a group`);
      await load();
    } catch (e) { toast(e.message, "error"); }
  }

  async function deleteSelected() {
    try {
      const r = await api("POST", "/api/images/status", { ids: [...state.selected], status: "deleted" });
      CV.undoToast(`${r.updated} image(s) deleted`, r.undo);
      await load();
    } catch (e) { toast(e.message, "error"); }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("type").addEventListener("change", () => { state.selected.clear(); load(); });
    $("btn-calc").addEventListener("click", calculate);
    $("btn-move").addEventListener("click", moveSelected);
    $("btn-delete").addEventListener("click", deleteSelected);
    document.addEventListener("undone", () => load());
    $("btn-add").addEventListener("click", addSelected);
    $("btn-add").hidden = (await api("GET", "/api/dataset/mode")).label_mode !== "multi";
    $("move-target").addEventListener("change", updateButtons);
    const groups = (await api("GET", "/api/groups")).groups;
    $("move-target").append(...groups.map((g) => el("option", { value: g.name, text: g.name })));
    const status = await api("GET", "/api/status");
    $("no-model").hidden = Boolean(status.model.run);
    if (status.model.run) load();
    window.cvAnomalies = state;
  });
})();
