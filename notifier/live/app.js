// citywatch live operations page: plain JS, no build step.
// Streams work-order changes from /api/stream (server-sent events read with fetch, so the
// bearer token travels in a header rather than in the URL), keeps a map of orders and
// re-renders the table; acknowledge/resolve call the REST API.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const ACTIVE = new Set(["open", "acknowledged"]);
  const orders = new Map();
  const handlers = new Map();
  let token = localStorage.getItem("citywatch.token") || "";
  let abort = null;

  // Hook for other parts of citywatch (see #extensions in index.html).
  window.citywatchLive = {
    on(name, fn) { (handlers.get(name) || handlers.set(name, []).get(name)).push(fn); },
    api: (path, opts) => api(path, opts),
  };

  async function api(path, opts = {}) {
    const r = await fetch(path, {
      ...opts,
      headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json",
                 ...(opts.headers || {}) },
    });
    if (r.status === 401) { signOut("token rejected"); throw new Error("401"); }
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    return r.json();
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function fillOptions(sel, values) {
    const have = new Set([...sel.options].map((o) => o.value));
    for (const v of [...values].sort()) if (!have.has(v)) sel.append(new Option(v, v));
  }

  function visible(o) {
    return ACTIVE.has(o.status)
      && (!$("f-district").value || o.district === $("f-district").value)
      && (!$("f-family").value || o.family === $("f-family").value)
      && (!$("f-severity").value || o.severity === $("f-severity").value);
  }

  function actions(o) {
    const td = el("td", undefined, "actions");
    if (o.status === "open") {
      const b = el("button", "Acknowledge");
      b.dataset.action = "ack";
      b.onclick = () => act(o.id, "ack", {});
      td.append(b);
    }
    const note = el("input");
    note.placeholder = "resolution note";
    const r = el("button", "Resolve");
    r.dataset.action = "resolve";
    r.onclick = () => act(o.id, "resolve", { note: note.value });
    td.append(note, r);
    return td;
  }

  const fresh = new Set();
  function render() {
    const tbody = $("orders").querySelector("tbody");
    const rows = [...orders.values()].filter(visible)
      .sort((a, b) => b.created_at - a.created_at);
    tbody.replaceChildren(...rows.map((o) => {
      const tr = el("tr", undefined, `sev-${o.severity} st-${o.status}`);
      if (fresh.has(o.id)) tr.classList.add("fresh");
      tr.dataset.id = o.id;
      const opened = new Date(o.created_at * 1000).toLocaleString();
      for (const v of [o.id, o.severity, o.status, o.kind, o.target, o.district, o.family,
                       o.crew_id, opened, o.message]) tr.append(el("td", String(v ?? "")));
      tr.append(actions(o));
      return tr;
    }));
    fresh.clear();
    $("count").textContent = `${rows.length} active`;
    fillOptions($("f-district"), new Set([...orders.values()].map((o) => o.district)));
    fillOptions($("f-family"), new Set([...orders.values()].map((o) => o.family)));
  }

  function upsert(o) {
    if (!orders.has(o.id)) fresh.add(o.id);
    orders.set(o.id, o);
  }

  async function act(id, what, body) {
    try {
      upsert(await api(`/api/orders/${id}/${what}`, { method: "POST", body: JSON.stringify(body) }));
      render();
    } catch (e) { console.error(e); alert(`${what} failed: ${e.message}`); }
  }

  function dispatch(name, data) {
    if (name === "snapshot") { orders.clear(); data.forEach(upsert); fresh.clear(); render(); }
    else if (name === "order") { upsert(data); render(); }
    for (const fn of handlers.get(name) || []) fn(data);
  }

  // Minimal text/event-stream parser over a fetch body.
  async function stream() {
    abort = new AbortController();
    const r = await fetch("/api/stream", {
      headers: { "Authorization": `Bearer ${token}`, "Accept": "text/event-stream" },
      signal: abort.signal,
    });
    if (r.status === 401) { signOut("token rejected"); return; }
    if (!r.ok) throw new Error(`stream: HTTP ${r.status}`);
    setConn(true);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let name = "message"; const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) dispatch(name, JSON.parse(data.join("\n")));
      }
    }
  }

  function setConn(on) {
    $("conn").textContent = on ? "live" : "offline";
    $("conn").className = `conn ${on ? "on" : "off"}`;
  }

  async function connectLoop() {
    let delay = 500;
    while (token) {
      try { await stream(); delay = 500; } catch (e) { if (!token) return; console.warn(e); }
      setConn(false);
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  function signOut(msg) {
    token = "";
    localStorage.removeItem("citywatch.token");
    if (abort) abort.abort();
    setConn(false);
    $("board").hidden = true; $("login").hidden = false;
    $("login-error").textContent = msg || "";
  }

  async function start() {
    try {
      const me = await api("/api/me");
      $("who").textContent = `${me.name} (${me.role})`;
    } catch (e) { return; }
    $("login").hidden = true; $("board").hidden = false;
    connectLoop();
  }

  $("login").onsubmit = (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    localStorage.setItem("citywatch.token", token);
    start();
  };
  $("logout").onclick = () => signOut("");
  for (const id of ["f-district", "f-family", "f-severity"]) $(id).onchange = render;
  if (token) start(); else $("login").hidden = false;
})();
