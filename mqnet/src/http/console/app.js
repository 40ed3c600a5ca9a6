// The web console's behaviour: hash routes (#/queues, #/queue/<name>, #/outgoing, #/triggers,
// #/cluster on a virtual server)
// drawn from the JSON API, refreshed every two seconds. Plain DOM, no framework, no build step.
"use strict";

const view = document.getElementById("view");
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("mqemu-token") || "";
tokenInput.addEventListener("change", () => {
  localStorage.setItem("mqemu-token", tokenInput.value);
  refresh();
});

// Counts seen at the previous refresh, for rates.
const previous = new Map();
let selected = null; // lookup id of the message shown in detail
let page = { after: null, history: [] };

async function api(method, path, body) {
  const headers = {};
  if (tokenInput.value) headers["Authorization"] = "Bearer " + tokenInput.value;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!resp.ok) {
    const why = data && data.title ? `${data.title} (${data.hresult}): ${data.detail}` : `${resp.status} ${text}`;
    throw new Error(why);
  }
  return data;
}

function showError(e) {
  const box = document.getElementById("error");
  if (e) { box.textContent = e.message || String(e); box.hidden = false; } else { box.hidden = true; }
}

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const c of children.flat()) n.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return n;
}

function table(headers, rows, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map(h => el("th", { class: h.num ? "num" : null }, h.label || h)))),
    el("tbody", {}, rows));
}

const enc = encodeURIComponent;
const time = ms => ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "";

function hex(b64) {
  const bin = atob(b64);
  const lines = [];
  for (let i = 0; i < bin.length && i < 4096; i += 16) {
    const bytes = [...bin.slice(i, i + 16)].map(c => c.charCodeAt(0));
    const h = bytes.map(b => b.toString(16).padStart(2, "0")).join(" ");
    const a = bytes.map(b => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(i.toString(16).padStart(6, "0") + "  " + h.padEnd(48) + "  " + a);
  }
  if (bin.length > 4096) lines.push(`… ${bin.length - 4096} more bytes`);
  return lines.join("\n");
}

// The queue list draws at most this many rows (a server may hold ten thousand queues); the
// filter narrows it by name.
const QUEUE_ROWS = 500;
// Kept across refreshes (and the box itself, so typing keeps its focus).
const queueFilter = el("input", { id: "queue-filter", type: "search", placeholder: "Filter queues by name", oninput: () => refresh() });

async function drawQueues() {
  const queues = await api("GET", "/api/queues");
  const now = Date.now();
  const needle = queueFilter.value.trim().toLowerCase();
  const matching = needle ? queues.filter(q => q.path.toLowerCase().includes(needle)) : queues;
  const rows = matching.slice(0, QUEUE_ROWS).map(q => {
    const before = previous.get(q.path);
    let rate = "";
    if (before && now > before.at) {
      rate = ((q.messages - before.messages) * 1000 / (now - before.at)).toFixed(1);
    }
    previous.set(q.path, { messages: q.messages, at: now });
    return el("tr", { "data-queue": q.path, onclick: () => { location.hash = "#/queue/" + enc(q.path); } },
      el("td", { class: "name" }, q.path),
      el("td", { class: "num messages" }, String(q.messages)),
      el("td", { class: "num locked" }, String(q.locked_messages)),
      el("td", { class: "num" }, rate),
      el("td", { class: "num" }, String(q.bytes)),
      el("td", { class: "num" }, String(q.journal_messages)),
      el("td", {}, q.transactional ? "yes" : "no"),
      el("td", {}, q.subqueues.join(", ")),
      el("td", {}, q.label));
  });
  const note = matching.length > QUEUE_ROWS
    ? el("p", { id: "queue-note", class: "note" }, `Showing ${QUEUE_ROWS} of ${matching.length} queues: filter to narrow.`)
    : el("p", { id: "queue-note", class: "note" }, `${matching.length} of ${queues.length} queues.`);
  const typing = document.activeElement === queueFilter;
  const caret = queueFilter.selectionStart;
  view.replaceChildren(
    el("h2", {}, "Queues"),
    queueFilter,
    note,
    table(["Queue", { label: "Messages", num: true }, { label: "Locked", num: true }, { label: "Change /s", num: true }, { label: "Bytes", num: true },
      { label: "Journal", num: true }, "Transactional", "Subqueues", "Label"], rows, "queues"));
  if (typing) { queueFilter.focus(); queueFilter.setSelectionRange(caret, caret); }
}

async function drawQueue(name) {
  const isDead = /;dead(letter|xact)$/i.test(name) || name.includes(";");
  const query = page.after === null ? "" : `&after=${page.after}`;
  const [info, list] = await Promise.all([
    name.includes("system$") ? Promise.resolve(null) : api("GET", `/api/queues/${enc(name)}`).catch(() => null),
    api("GET", `/api/queues/${enc(name)}/messages?limit=50${query}`),
  ]);
  const rows = list.messages.map(m => el("tr", {
      "data-lookup": m.lookup_id, class: m.lookup_id === selected ? "selected" : null,
      onclick: () => { selected = m.lookup_id; refresh(); } },
    el("td", { class: "num" }, String(m.lookup_id)),
    el("td", { class: "label" }, m.label),
    el("td", { class: "num" }, String(m.priority)),
    el("td", { class: "num" }, String(atob(m.body_base64).length)),
    el("td", {}, time(m.sent_time_ms)),
    el("td", {}, m.class ? "0x" + m.class.toString(16) : "normal")));
  const actions = el("div", { class: "actions" },
    el("button", { id: "prev", onclick: () => { page.after = page.history.pop() ?? null; refresh(); }, disabled: page.history.length ? null : "" }, "← Previous"),
    el("button", { id: "next", onclick: () => { page.history.push(page.after); page.after = list.next; refresh(); }, disabled: list.next === null ? "" : null }, "Next →"),
    info ? el("button", { id: "purge", class: "danger", onclick: () => purge(name) }, "Purge…") : "");
  const shown = list.messages.find(m => m.lookup_id === selected);
  view.replaceChildren(
    el("h2", {}, name),
    info ? el("p", { class: "muted" }, `${info.messages} messages (${info.locked_messages} locked) · ${info.bytes} bytes · journal ${info.journal_messages}` +
      (info.subqueues.length ? " · subqueues: " : ""), ...info.subqueues.map(s =>
        el("a", { href: "#/queue/" + enc(name.split(";")[0] + ";" + s) }, s + " "))) : "",
    actions,
    el("div", { class: "split" },
      table([{ label: "Lookup id", num: true }, "Label", { label: "Priority", num: true }, { label: "Size", num: true }, "Sent", "Class"], rows, "messages"),
      shown ? details(name, shown, isDead) : el("p", { class: "muted" }, list.messages.length ? "Select a message." : "No messages.")));
}

function details(queue, m, isDead) {
  const props = [["Id", m.id], ["Lookup id", m.lookup_id], ["Label", m.label], ["Priority", m.priority],
    ["Class", m.class ? "0x" + m.class.toString(16) : "normal"], ["Recoverable", m.recoverable], ["Transactional", m.transactional],
    ["Correlation id", m.correlation_id], ["App specific", m.app_specific], ["Body type", m.body_type],
    ["Sent", time(m.sent_time_ms)], ["Arrived", time(m.arrived_time_ms)], ["Destination", m.destination],
    ["Response queue", m.response_queue], ["Admin queue", m.admin_queue], ["Abort count", m.abort_count],
    ["Move count", m.move_count], ["Source machine", m.source_machine]];
  return el("section", { id: "detail" },
    el("h3", {}, "Message " + m.lookup_id),
    el("div", { class: "actions" },
      isDead ? el("button", { id: "requeue", onclick: () => requeue(queue, m.lookup_id) }, "Requeue") : "",
      /system\$/i.test(queue) ? "" : el("button", { id: "move", onclick: () => move(queue, m.lookup_id) }, "Move to subqueue…")),
    el("dl", {}, props.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v === null || v === undefined ? "" : String(v))])),
    el("h4", {}, "Body as text"), el("pre", { id: "body-text" }, m.body ?? "(not UTF-8)"),
    el("h4", {}, "Body as hex"), el("pre", { id: "body-hex" }, hex(m.body_base64)));
}

async function requeue(queue, lookup) {
  try {
    const r = await api("POST", `/api/queues/${enc(queue)}/messages/${lookup}/requeue`);
    selected = null;
    showError(null);
    flash(`Requeued to ${r.queue}`);
  } catch (e) { showError(e); }
  refresh();
}

async function move(queue, lookup) {
  const sub = prompt("Move to which subqueue of this queue?", "retry");
  if (!sub) return;
  try {
    await api("POST", `/api/queues/${enc(queue)}/messages/${lookup}/move`, { to: ";" + sub });
    selected = null;
  } catch (e) { showError(e); }
  refresh();
}

async function purge(queue) {
  if (!confirm(`Purge every message of ${queue}? This cannot be undone.`)) return;
  try {
    const r = await api("POST", `/api/queues/${enc(queue)}/purge`);
    flash(`Purged ${r.count} messages`);
  } catch (e) { showError(e); }
  refresh();
}

function flash(text) {
  const n = el("p", { id: "flash", class: "muted" }, text);
  document.getElementById("flash")?.remove();
  view.before(n);
  setTimeout(() => n.remove(), 4000);
}

async function drawOutgoing() {
  const out = await api("GET", "/api/outgoing");
  const act = (name, action) => api("POST", `/api/outgoing/${enc(name)}/${action}`).then(refresh, showError);
  view.replaceChildren(el("h2", {}, "Outgoing queues"),
    out.length ? table(["Destination", "Host", "State", { label: "Messages", num: true }, { label: "Unacknowledged", num: true },
      { label: "Resends", num: true }, "Last error", ""], out.map(o => el("tr", {},
      el("td", {}, o.name), el("td", {}, o.host), el("td", { class: "state" }, o.state),
      el("td", { class: "num" }, String(o.messages)), el("td", { class: "num" }, String(o.unacknowledged)),
      el("td", { class: "num" }, String(o.resends)), el("td", {}, o.last_error ?? ""),
      el("td", {}, o.state === "ONHOLD"
        ? el("button", { onclick: () => act(o.name, "resume") }, "Resume")
        : el("button", { onclick: () => act(o.name, "pause") }, "Pause")))), "outgoing")
      : el("p", { class: "muted" }, "No outgoing queues: nothing has been sent to another computer."));
}

async function drawTriggers() {
  const triggers = await api("GET", "/api/triggers");
  view.replaceChildren(el("h2", {}, "Triggers"),
    triggers.length ? table(["Name", "Queue", "Enabled", "Processing", "Rules", { label: "Fired", num: true },
      { label: "Actions failed", num: true }], triggers.map(t => el("tr", {},
      el("td", {}, t.name), el("td", {}, t.queue), el("td", {}, t.enabled ? "yes" : "no"), el("td", {}, t.processing),
      el("td", {}, t.rules.join(", ")), el("td", { class: "num" }, String(t.stats.fired)),
      el("td", { class: "num" }, String(t.stats.actions_failed)))), "triggers")
      : el("p", { class: "muted" }, "No triggers (or the Triggers service is not running)."));
}

async function drawCluster() {
  const c = await api("GET", "/api/cluster");
  if (!c.clustered) {
    view.replaceChildren(el("h2", {}, "Cluster"), el("p", { class: "muted" }, "This server is not a virtual server of a cluster."));
    return;
  }
  const ago = ms => ms === null || ms === undefined ? "never" : (ms / 1000).toFixed(1) + " s ago";
  const groups = c.groups.flatMap(g => [
    el("h3", {}, `${g.name}: ${g.state}${g.owner ? " on " + g.owner : ""}`),
    el("p", { class: "muted" }, `failovers ${g.failovers_in_period} in the period (threshold ${g.failover_threshold}), ${g.failover_count} in all` +
      (g.generation !== null && g.generation !== undefined ? ` · disk generation ${g.generation}` : "")),
    table(["Resource", "Type", "State", { label: "Restarts", num: true }], g.resources.map(r => el("tr", {},
      el("td", {}, r.name), el("td", {}, r.kind), el("td", { class: "state" }, r.state),
      el("td", { class: "num" }, String(r.restarts)))), "resources-" + g.name),
  ]);
  view.replaceChildren(el("h2", {}, "Cluster"),
    el("h3", {}, "Nodes"),
    table(["Node", "State", "Last heartbeat", "Process"], c.nodes.map(n => el("tr", {},
      el("td", {}, n.name), el("td", { class: "state" }, n.state), el("td", {}, ago(n.last_seen_ms)),
      el("td", {}, n.pid ? String(n.pid) : ""))), "nodes"),
    ...groups);
}

let clusterChecked = false;
async function showClusterLink() {
  if (clusterChecked) return;
  clusterChecked = true;
  try {
    const c = await api("GET", "/api/cluster");
    document.getElementById("nav-cluster").hidden = !c.clustered;
  } catch (_) { /* no right to see it */ }
}

let lastRoute = null;
async function refresh() {
  const route = location.hash || "#/queues";
  if (route !== lastRoute) { selected = null; page = { after: null, history: [] }; lastRoute = route; }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === route);
  try {
    if (route.startsWith("#/queue/")) await drawQueue(decodeURIComponent(route.slice("#/queue/".length)));
    else if (route === "#/outgoing") await drawOutgoing();
    else if (route === "#/triggers") await drawTriggers();
    else if (route === "#/cluster") await drawCluster();
    else await drawQueues();
    const st = await api("GET", "/api/status");
    document.getElementById("server").textContent =
      `${st.name} · ${st.durable ? "on disk" : "in memory"} · ${st.queues} queues · ${st.messages} messages · up ${st.uptime_secs} s`;
    showError(null);
  } catch (e) { showError(e); }
}

window.addEventListener("hashchange", refresh);
showClusterLink();
refresh();
setInterval(refresh, 2000);
