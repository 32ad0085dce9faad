// The Learning page: parameters, Start learning, live Epochs table and chart, confusion matrix, model versions.
"use strict";

(() => {
  const { $, api, toast, on, el, confusionTable, watchJob } = CV;
  const state = { spec: null, run: null, job: null, production: null };

  // ---- parameters ----------------------------------------------------------------------
  function resolvedMode() {
    const m = $("mode").value;
    return m === "auto" ? state.spec.resolved_mode : m;
  }

  function renderParams() {
    const mode = resolvedMode();
    $("mode-note").textContent = $("mode").value === "auto" ? `auto uses ${state.spec.resolved_mode} on this machine` : "";
    const box = $("params");
    const kept = readParams(true);
    box.replaceChildren();
    for (const [name, info] of Object.entries(state.spec.help)) {
      if (info.mode !== mode) continue;
      const value = name in kept ? kept[name] : state.spec.params[name];
      let input;
      if (typeof state.spec.params[name] === "boolean") {
        input = el("input", { type: "checkbox", "data-param": name });
        input.checked = Boolean(value);
      } else {
        input = el("input", { type: "number", step: "any", min: info.min, max: info.max, "data-param": name,
          value: value === null ? "" : value, placeholder: value === null ? "automatic" : "" });
      }
      box.append(el("label", { title: info.help }, el("span", { text: name }), input, el("small", { text: info.help })));
    }
  }

  function readParams(all = false) {
    const out = {};
    document.querySelectorAll("[data-param]").forEach((input) => {
      const name = input.dataset.param;
      if (input.type === "checkbox") out[name] = input.checked;
      else if (input.value !== "") out[name] = Number(input.value);
      else if (all) out[name] = null;
    });
    return out;
  }

  // Only what the user changed: the rest are the server's defaults, which for fine-tuning depend on the
  // network (shown once it is loaded).
  function changedParams() {
    const all = readParams();
    return Object.fromEntries(Object.entries(all).filter(([name, v]) => v !== state.spec.params[name]));
  }

  async function start() {
    $("btn-start").disabled = true;
    try {
      const r = await api("POST", "/api/train", { mode: $("mode").value, params: changedParams() });
      // Its first events may have come before this answer: never show an older state over them.
      if (!state.run || state.run.id !== r.run) showRun({ id: r.run, state: "queued", epochs: [], classes: [], mode: resolvedMode() });
      setRunning(true, "Starting…");
      follow(r.job);
    } catch (e) {
      toast(e.message, "error");
      $("btn-start").disabled = false;
    }
  }

  // The training job's end comes from watchJob, which asks the server when the event was lost (the page
  // would otherwise show "running" for ever); its progress from the job events below.
  function follow(id) {
    if (state.job === id) return;
    state.job = id;
    watchJob(id, { done: finished });
  }

  function finished(job) {
    if (job.id === state.job) {
      setRunning(false, job.state === "done" ? "Finished." : job.state === "cancelled" ? "Cancelled." : `Failed: ${job.error}`);
    }
    if (job.result && job.result.run) api("GET", `/api/train/runs/${job.result.run}`).then(showRun).catch(() => {});
    loadModels();
  }

  function setRunning(running, message) {
    $("btn-start").disabled = running;
    $("btn-cancel").hidden = !running;
    $("train-bar").hidden = !running;
    $("train-progress").textContent = message || "";
  }

  // ---- the run -------------------------------------------------------------------------
  function showRun(run) {
    state.run = run;
    $("run-card").hidden = false;
    $("run-id").textContent = run.id;
    $("run-state").textContent = run.state;
    $("run-state").className = `badge ${run.state}`;
    const sizes = run.counts ? `${run.counts.train} training / ${run.counts.val} check images` : "";
    $("run-info").textContent = [run.mode && `mode ${run.mode}`, run.backbone && `network ${run.backbone}`, sizes,
      run.embedded_images !== undefined ? `${run.embedded_images} images embedded` : "", run.seconds ? `${run.seconds} s` : ""]
      .filter(Boolean).join(" · ");
    $("run-error").textContent = run.error || "";
    $("btn-promote").disabled = run.state !== "done" || state.production === run.id;
    $("btn-promote").textContent = state.production === run.id ? "This model is main" : "Set trained as main";
    renderEpochs(run);
    renderConfusion(run);
  }

  function renderEpochs(run) {
    $("epochs-metric").textContent = run.label_mode === "multi" ? "micro-F1" : "Accuracy";
    const body = $("epochs-table").querySelector("tbody");
    const best = run.best ? run.best.epoch : null;
    body.replaceChildren(...run.epochs.map((e) => el("tr", { class: e.epoch === best ? "main-model" : "" },
      el("td", { text: String(e.epoch) }), el("td", { text: e.accuracy.toFixed(4) }),
      el("td", { text: e.loss.toFixed(4) }), el("td", { text: e.seconds.toFixed(2) }))));
    drawChart(run.epochs);
  }

  function drawChart(epochs) {
    const svg = $("chart");
    svg.replaceChildren();
    if (!epochs.length) return;
    const W = 420, H = 220, P = 28;
    const n = Math.max(2, epochs.length);
    const maxLoss = Math.max(1e-6, ...epochs.map((e) => e.loss));
    const x = (i) => P + (i / (n - 1)) * (W - 2 * P);
    const yAcc = (a) => H - P - a * (H - 2 * P);
    const yLoss = (l) => H - P - (l / maxLoss) * (H - 2 * P);
    const ns = "http://www.w3.org/2000/svg";
    const line = (cls, pts) => {
      const p = document.createElementNS(ns, "polyline");
      p.setAttribute("class", cls);
      p.setAttribute("points", pts.join(" "));
      svg.append(p);
    };
    const text = (tx, ty, s) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", tx); t.setAttribute("y", ty); t.textContent = s;
      svg.append(t);
    };
    line("acc", epochs.map((e, i) => `${x(i)},${yAcc(e.accuracy)}`));
    line("loss", epochs.map((e, i) => `${x(i)},${yLoss(e.loss)}`));
    text(2, yAcc(1) + 4, "1.0"); text(2, yAcc(0) + 4, "0");
    text(W - P - 60, H - 8, `epoch ${epochs.length}`);
  }

  function renderMulti(run) {
    const block = $("multi-block");
    if (run.label_mode !== "multi" || !run.per_group) { block.hidden = true; return; }
    block.hidden = false;
    $("multi-micro").textContent = run.micro_f1.toFixed(3);
    $("multi-macro").textContent = run.macro_f1.toFixed(3);
    const f = (v) => v.toFixed(3);
    $("multi-groups").replaceChildren(
      el("thead", {}, el("tr", {}, ...["group", "precision", "recall", "F1", "images checked", "threshold"].map((t) => el("th", { text: t })))),
      el("tbody", {}, ...Object.entries(run.per_group).map(([g, m]) => el("tr", {},
        el("th", { text: g }), el("td", { text: f(m.precision) }), el("td", { text: f(m.recall) }), el("td", { text: f(m.f1) }),
        el("td", { text: String(m.support) }), el("td", { text: f(m.threshold) })))));
    $("multi-attributes").replaceChildren(...Object.entries(run.attributes || {}).map(([name, a]) => {
      const table = el("table", { class: "data confusion" });
      confusionTable(table, { labels: a.values, matrix: a.confusion, short: true });
      return el("div", {}, el("h4", { text: `${name}: accuracy ${a.accuracy.toFixed(3)} (rows: true value, columns: predicted)` }), table);
    }));
  }

  function renderConfusion(run) {
    renderMulti(run);
    const block = $("confusion-block");
    if (!run.confusion) { block.hidden = true; return; }
    block.hidden = false;
    const accuracy = (i) => {
      const total = run.confusion[i].reduce((a, b) => a + b, 0);
      return total ? (run.confusion[i][i] / total).toFixed(3) : "–";
    };
    confusionTable($("confusion"), {
      labels: run.classes, matrix: run.confusion, corner: "true \\ predicted",
      extra: [{ head: "accuracy", value: accuracy },
        { head: "unknown below", title: "calibrated probability under which an answer counts as unknown",
          value: (i) => (run.calibration ? run.calibration.thresholds[run.classes[i]].toFixed(3) : "–") }],
      onCell: (i, j, td) => showCell(run, run.classes[i], run.classes[j], td),
    });
    $("cell-images").replaceChildren();
  }

  async function showCell(run, truth, pred, cell) {
    document.querySelectorAll(".confusion td.active").forEach((c) => c.classList.remove("active"));
    cell.classList.add("active");
    let full = run;
    if (!run.predictions) {
      full = await api("GET", `/api/train/runs/${encodeURIComponent(run.id)}`);
      state.run = full;
    }
    const items = (full.predictions || []).filter((p) => p.group === truth && p.predicted === pred);
    const lensItems = items.map((p) => ({ url: p.url, caption: `${p.group} → ${p.predicted} (${p.probability})` }));
    $("cell-images").replaceChildren(...items.map((p, i) => CV.tile(p, { label: `${p.predicted} ${p.probability}`,
      title: `${p.group} → ${p.predicted}`, onSelect: () => Lens.open(lensItems, i) })));
    if (!items.length) $("cell-images").append(el("p", { class: "muted", text: "No images in this cell." }));
  }

  // ---- versions ------------------------------------------------------------------------
  async function loadModels() {
    const m = await api("GET", "/api/models");
    state.production = m.production;
    const body = $("models-table").querySelector("tbody");
    body.replaceChildren(...m.models.map((r) => el("tr", { class: r.run === m.production ? "main-model" : "", "data-run": r.run },
      el("td", {}, el("a", { href: "#", text: r.run, onclick: async (e) => { e.preventDefault(); showRun(await api("GET", `/api/train/runs/${encodeURIComponent(r.run)}`)); } })),
      el("td", { text: r.created.replace("T", " ") }), el("td", { text: r.mode || "" }), el("td", { text: r.backbone || "" }),
      el("td", { text: (r.accuracy ?? 0).toFixed(4) }),
      el("td", {}, r.run === m.production ? el("span", { class: "badge", text: "main" })
        : el("button", { text: "Set as main", onclick: () => openPromote(r.run) })))));
    $("no-models").hidden = m.models.length > 0;
    if (state.run) $("btn-promote").disabled = state.run.state !== "done" || state.production === state.run.id;
  }

  function openPromote(run) {
    $("promote-run").textContent = run;
    $("dlg-promote").dataset.run = run;
    $("dlg-promote").showModal();
  }

  async function promote() {
    const run = $("dlg-promote").dataset.run;
    try {
      const r = await api("POST", "/api/models/promote", { run, build_index: $("promote-index").checked });
      toast(`Run ${r.production} is now the main model` + (r.index_job ? "; building the image index…" : ""));
      await loadModels();
      if (state.run && state.run.id === run) showRun(state.run);
    } catch (e) { toast(e.message, "error"); }
  }

  // ---- wiring --------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", async () => {
    state.spec = await api("GET", "/api/train/params");
    $("mode").value = state.spec.mode;
    renderParams();
    $("mode").addEventListener("change", renderParams);
    $("btn-start").addEventListener("click", start);
    $("btn-cancel").addEventListener("click", () => state.job && api("POST", `/api/jobs/${state.job}/cancel`).catch((e) => toast(e.message, "error")));
    $("btn-promote").addEventListener("click", () => state.run && openPromote(state.run.id));
    $("promote-ok").addEventListener("click", (e) => { e.preventDefault(); $("dlg-promote").close(); promote(); });

    on("run", (run) => { if (!state.run || state.run.id === run.id || run.state === "running") showRun(run); });
    on("job", (job) => {
      if (job.kind !== "train") return;
      if (["queued", "running"].includes(job.state)) {  // also a run started in another tab
        follow(job.id);
        setRunning(true, job.progress.message);
        $("train-bar").max = Math.max(1, job.progress.total);
        $("train-bar").value = job.progress.done;
      }
    });
    on("model", () => loadModels());

    await loadModels();
    const runs = (await api("GET", "/api/train/runs")).runs;
    if (runs.length) showRun(runs[0]);
    const active = (await api("GET", "/api/status")).jobs.find((j) => j.kind === "train" && ["queued", "running"].includes(j.state));
    if (active) { follow(active.id); setRunning(true, active.progress.message); }
    window.cvLearning = state;
  });
})();
