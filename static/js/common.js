// Shared helpers for every page: JSON calls, toasts, the event stream, small DOM builders.
"use strict";

const CV = (() => {
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
    return data;
  }

  let toastTimer = null;
  function toast(message, kind = "info") {
    const el = document.getElementById("toast");
    el.textContent = message;
    el.className = `toast ${kind}`;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 3000);
  }

  // One EventSource per page; listeners by event name.
  const handlers = {};
  let source = null;
  function on(event, fn) {
    (handlers[event] = handlers[event] || []).push(fn);
    if (!source) {
      source = new EventSource("/api/events");
      // The server names its events once (schemas.Event) and puts the list on the page.
      for (const name of (document.body.dataset.events || "").split(" ").filter(Boolean)) {
        source.addEventListener(name, (e) => {
          const data = JSON.parse(e.data);
          (handlers[name] || []).forEach((h) => h(data));
        });
      }
    }
  }

  // A small indicator of running jobs in the top bar.
  const running = new Map();
  function trackJobs() {
    on("job", (job) => {
      const el = document.getElementById("jobs-indicator");
      if (["queued", "running"].includes(job.state)) running.set(job.id, job); else running.delete(job.id);
      if (!el) return;
      el.hidden = running.size === 0;
      const j = [...running.values()][0];
      el.textContent = j ? `${j.kind}: ${j.progress.message || j.state}` : "";
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

  document.addEventListener("DOMContentLoaded", trackJobs);
  return { api, toast, on, el, encodeGroup };
})();
