// Device commands on the live operations page (served at /commands/live.js).
// Renders recent commands and pending alert suggestions into #extensions; "command" events
// from the page's stream update rows in place; "Confirm" turns a suggestion into a command.
"use strict";
(() => {
  const live = window.citywatchLive;
  const host = document.getElementById("extensions");
  // Once per page, even if the script is included twice.
  if (!live || !host || document.getElementById("commands")) return;
  const cmds = new Map();
  const box = document.createElement("div");
  box.id = "commands";
  box.innerHTML = `<h2>Device commands</h2>
    <table id="cmd-table"><thead><tr><th>id</th><th>issued</th><th>by</th><th>command</th>
    <th>target</th><th>state</th><th>detail</th></tr></thead><tbody></tbody></table>
    <h3>Suggested by alerts</h3>
    <table id="sug-table"><thead><tr><th>alert</th><th>kind</th><th>district</th>
    <th>suggestion</th><th></th></tr></thead><tbody></tbody></table>`;
  host.append(box);
  const td = (tr, text) => { const c = document.createElement("td"); c.textContent = text; tr.append(c); };

  function render() {
    const body = box.querySelector("#cmd-table tbody");
    body.replaceChildren();
    const rows = [...cmds.values()].sort((a, b) => b.created_at - a.created_at).slice(0, 50);
    for (const c of rows) {
      const tr = document.createElement("tr");
      tr.className = `cmd-${c.state}`;
      td(tr, c.id); td(tr, new Date(c.created_at * 1000).toLocaleTimeString());
      td(tr, c.issuer); td(tr, `${c.kind} ${JSON.stringify(c.params)}`);
      td(tr, `${c.target_type} ${c.target}`); td(tr, c.state); td(tr, c.detail || "");
      body.append(tr);
    }
  }

  async function loadSuggestions() {
    const body = box.querySelector("#sug-table tbody");
    const list = await live.api("/commands/suggestions");
    body.replaceChildren();
    for (const s of list) {
      const tr = document.createElement("tr");
      td(tr, s.alert_id); td(tr, s.alert_kind); td(tr, s.district); td(tr, s.text);
      const cell = document.createElement("td");
      const btn = document.createElement("button");
      btn.textContent = "Confirm";
      btn.onclick = async () => {
        if (!confirm(`Run "${s.text}"?`)) return;
        const c = await live.api(`/commands/suggestions/${s.alert_id}/confirm`, { method: "POST" });
        cmds.set(c.id, c); render(); loadSuggestions();
      };
      cell.append(btn); tr.append(cell); body.append(tr);
    }
  }

  live.on("command", (c) => { cmds.set(c.id, c); render(); });
  // Load only once the stream is up (signed in): an API call without a token would sign
  // the page out.
  let timer = null;
  function refresh() {
    live.api("/commands?limit=50")
      .then((list) => { cmds.clear(); for (const c of list) cmds.set(c.id, c); render(); })
      .catch(() => {});
    loadSuggestions().catch(() => {});
    if (timer === null) timer = setInterval(() => loadSuggestions().catch(() => {}), 15000);
  }
  live.on("snapshot", refresh);
  // Loaded after the stream started (e.g. added late to the page): load now.
  if ((document.getElementById("conn") || {}).textContent === "live") refresh();
})();
