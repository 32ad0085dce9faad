// Shared by every page: JSON calls, toasts, the event stream, following a job, and the few building
// blocks the pages share (image tiles, drop zones, confusion tables). Each page script uses these
// instead of its own copy.
"use strict";

const CV = (() => {
  const $ = (id) => document.getElementById(id);
  const FINISHED = ["done", "failed", "cancelled"];

  async function api(method, url, body) {
    const opts = { method, headers: {} };
    if (body instanceof FormData) {
      opts.body = body;
    } else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = null;
    const text = await res.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
    if (!res.ok) {
      const err = new Error((data && data.detail) || `${res.status} ${res.statusText}`);
      err.status = res.status;
      throw err;
    }
    // A change that can be undone sends its token in a header (the JSON keeps the contract's shape).
    const undo = res.headers.get("X-CVTools-Undo");
    if (undo && data && typeof data === "object") Object.defineProperty(data, "undo", { value: undo });
    return data;
  }

  let toastTimer = null;
  function toast(message, kind = "info") {
    const box = $("toast");
    box.textContent = message;
    box.className = `toast ${kind}`;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 6000 : 3000);
  }

  // A change that can be undone: the toast offers Undo for 30 s, also after a reload of the page (the
  // token is kept in the browser; the server keeps it 10 minutes and refuses it once used or stale).
  const UNDO_MS = 30000;
  const UNDO_KEY = "cvtools-undo";
  function undoToast(message, token) {
    if (!token) { toast(message); return; }
    localStorage.setItem(UNDO_KEY, JSON.stringify({ message, token, until: Date.now() + UNDO_MS }));
    showUndo();
  }

  function pendingUndo() {
    try {
      const u = JSON.parse(localStorage.getItem(UNDO_KEY) || "null");
      return u && u.until > Date.now() ? u : null;
    } catch { return null; }
  }

  function showUndo() {
    const u = pendingUndo();
    if (!u) return;
    const box = $("toast");
    box.replaceChildren(el("span", { text: `${u.message} ` }), el("button", { id: "toast-undo", text: "Undo", onclick: undoLast }));
    box.className = "toast info";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, u.until - Date.now());
  }

  async function undoLast() {
    const u = pendingUndo();
    localStorage.removeItem(UNDO_KEY);
    if (!u) { toast("Nothing to undo", "error"); return; }
    try {
      const r = await api("POST", "/api/undo", { token: u.token });
      toast(r.group ? `Undone: group ${r.group} is back (${r.undone} image(s) or name)` : `Undone: ${r.undone} image(s) back as they were`);
      document.dispatchEvent(new CustomEvent("undone", { detail: r }));
    } catch (err) { toast(`Could not undo: ${err.message}`, "error"); }
  }

  // One EventSource per page. The server names its events once (schemas.Event) and puts the list on
  // the page, so a new kind of event needs no change here. on() returns a function that unsubscribes.
  const handlers = {};
  let source = null;
  function on(event, fn) {
    (handlers[event] = handlers[event] || []).push(fn);
    if (!source) {
      source = new EventSource("/api/events");
      for (const name of (document.body.dataset.events || "").split(" ").filter(Boolean)) {
        source.addEventListener(name, (e) => {
          const data = JSON.parse(e.data);
          (handlers[name] || []).slice().forEach((h) => h(data));
        });
      }
    }
    return () => { handlers[event] = (handlers[event] || []).filter((h) => h !== fn); };
  }

  // Follow one job: progress(job) while it runs, done(job) once when it ends — also when it ended
  // before the page learnt its id, or when its last event never came (a stream that reconnects, or a
  // page too busy to read it, loses events): the job is asked for at once and every JOB_POLL_MS after.
  const JOB_POLL_MS = 5000;
  function watchJob(id, { progress, done }) {
    let finished = false;
    const ask = () => api("GET", `/api/jobs/${id}`)
      .then((job) => { if (FINISHED.includes(job.state)) end(job); })
      .catch((e) => { if (e.status === 404) clearInterval(timer); });  // forgotten: nothing more to learn
    const timer = setInterval(ask, JOB_POLL_MS);
    const end = (job) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      stop();
      done(job);
    };
    const stop = on("job", (job) => {
      if (job.id !== id) return;
      if (FINISHED.includes(job.state)) end(job); else if (progress) progress(job);
    });
    ask();
  }

  // A small indicator of running jobs in the top bar.
  const running = new Map();
  function trackJobs() {
    on("job", (job) => {
      const box = $("jobs-indicator");
      if (["queued", "running"].includes(job.state)) running.set(job.id, job); else running.delete(job.id);
      if (!box) return;
      box.hidden = running.size === 0;
      const j = [...running.values()][0];
      box.textContent = j ? `${j.kind}: ${j.progress.message || j.state}` : "";
    });
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function encodeGroup(name) {
    return name.split("/").map(encodeURIComponent).join("/");
  }

  // An image tile: its thumbnail (the URLs come from the server's answers), a label at the bottom,
  // optionally a number that opens the lens and extra badges; click selects, double-click opens.
  function tile(img, { label, title, selected = false, number, onSelect, onOpen, extra = [] } = {}) {
    const node = el("div", { class: `tile${selected ? " selected" : ""}`, "data-id": img.id, title: title || img.filename || "" },
      el("img", { src: img.thumb, loading: "lazy", decoding: "async", alt: img.filename || "", width: 160, height: 160 }),
      number === undefined ? "" : el("button", { class: "tile-num", text: String(number), title: "Open in the lens",
        onclick: (e) => { e.stopPropagation(); if (onOpen) onOpen(); } }),
      el("span", { class: "tile-name", text: label ?? img.filename ?? "" }),
      ...extra);
    if (onSelect) node.addEventListener("click", () => onSelect(node));
    if (onOpen) node.addEventListener("dblclick", onOpen);
    return node;
  }

  // Files dropped on `zone` go to onFiles; a dropped link (no file) to onText.
  function dropZone(zone, onFiles, onText) {
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("drop"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("drop"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("drop");
      const files = [...e.dataTransfer.files];
      if (files.length) { onFiles(files); return; }
      const text = e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain");
      if (text && onText) onText(text.trim());
    });
  }

  // A confusion matrix (rows: the true group, columns: the predicted one) into `table`; `extra`
  // columns ({head, title, value(i)}) follow the matrix; onCell(i, j, td) makes cells clickable.
  function confusionTable(table, { labels, matrix, corner = "", extra = [], onCell, short = false }) {
    const name = (l) => (short ? l.split("/").pop() : l);
    const head = el("tr", {}, el("th", { text: corner }), ...labels.map((l) => el("th", { text: name(l) })),
      ...extra.map((x) => el("th", { text: x.head, title: x.title || "" })));
    const rows = matrix.map((row, i) => el("tr", {}, el("th", { text: name(labels[i]) }),
      ...row.map((v, j) => el("td", { class: `cell ${i === j ? "diag" : ""}`, text: String(v), "data-true": labels[i],
        "data-pred": labels[j], onclick: onCell ? (e) => onCell(i, j, e.target) : null })),
      ...extra.map((x) => el("td", { text: x.value(i) }))));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  }

  document.addEventListener("DOMContentLoaded", trackJobs);
  document.addEventListener("DOMContentLoaded", showUndo);
  return { $, api, toast, undoToast, undoLast, on, watchJob, el, encodeGroup, tile, dropZone, confusionTable, FINISHED };
})();
