/**
 * The review page's assets, inlined so they ship inside the bundled CLI and the npm tarball with no file to find at
 * run time, no CDN and no network (issue 9). The script builds every element with `textContent`, never `innerHTML`:
 * tool arguments are written by the agent and must never become markup. The CSP served with them allows only these
 * same-origin files.
 */

export const REVIEW_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Review · atlas-gateway</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/review/app.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true">◆</span> atlas-gateway <span class="sub">review</span></div>
  <nav id="nav" aria-label="Views" hidden>
    <button type="button" class="tab" data-view="inbox" aria-current="page">Inbox <span id="count" class="count" aria-label="pending calls">0</span></button>
    <button type="button" class="tab" data-view="history">History &amp; search</button>
  </nav>
  <div id="halt" class="halt" role="status" aria-live="polite" hidden></div>
  <div id="who" class="who" hidden><span id="who-name"></span> <span id="who-role" class="role"></span> <button type="button" id="signout" class="link">Sign out</button></div>
</header>
<div id="halt-banner" class="banner" role="alert" hidden></div>
<form id="halt-form" class="haltform" hidden aria-label="Stop every tool call"></form>
<main id="main" tabindex="-1">
  <section id="gate" class="gate" hidden aria-labelledby="gate-title"></section>
  <section id="inbox" hidden aria-label="Inbox">
    <div class="split">
      <div class="listpane">
        <h1 class="pane-title">Waiting for a decision <span id="live" class="live" title="Updates live from every gateway on this data dir">live</span></h1>
        <ol id="list" class="list" aria-label="Pending calls, newest first"></ol>
        <p id="empty" class="empty" hidden>Nothing is waiting. New held calls appear here as they arrive.</p>
      </div>
      <article id="detail" class="detail" aria-label="Selected call"></article>
    </div>
  </section>
  <section id="history" hidden aria-label="History and search">
    <form id="search" class="search" role="search">
      <label for="q">Search by ref, tool or reviewer</label>
      <div class="row"><input id="q" name="q" type="search" autocomplete="off" placeholder="evt_1a2b3c4d, modify_welfare_record, alice"><button type="submit" class="btn">Search</button></div>
    </form>
    <div class="split">
      <div class="listpane"><table id="results" class="results" hidden><caption class="sr">Matching calls, newest first</caption><thead><tr><th scope="col">Ref</th><th scope="col">Tool</th><th scope="col">Status</th><th scope="col">Score</th><th scope="col">Decided by</th><th scope="col">Received</th></tr></thead><tbody></tbody></table><p id="noresults" class="empty" hidden>No calls match.</p></div>
      <article id="timeline" class="detail" aria-label="History of one call"></article>
    </div>
  </section>
</main>
<div id="toast" class="toast" role="status" aria-live="polite" hidden></div>
<div id="announce" class="sr" aria-live="polite"></div>
<script type="module" src="/review/app.js"></script>
</body>
</html>
`;

export const REVIEW_PAGE_CSS = `:root {
  --bg: #f5f6f8; --panel: #fff; --ink: #16202c; --muted: #5b6775; --line: #dde2e8; --accent: #1f5fbf;
  --ok: #1d7a46; --warn: #a15c00; --bad: #b3261e; --crit: #7d1220; --focus: #ffbf47;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); font-size: 15px; line-height: 1.45;
}
* { box-sizing: border-box; }
body { margin: 0; }
[hidden] { display: none !important; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.skip { position: absolute; left: -999px; top: 0; background: var(--focus); color: #000; padding: 8px 12px; z-index: 10; }
.skip:focus { left: 8px; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.top { display: flex; align-items: center; gap: 20px; padding: 10px 24px; background: #14213d; color: #fff; flex-wrap: wrap; }
.brand { font-weight: 650; letter-spacing: .2px; font-size: 16px; }
.brand .logo { color: #7fb2ff; }
.brand .sub { font-weight: 400; opacity: .75; }
nav { display: flex; gap: 4px; }
.tab { background: transparent; color: #dfe7f5; border: 0; padding: 7px 12px; border-radius: 6px; font: inherit; cursor: pointer; }
.tab:hover { background: rgba(255,255,255,.08); }
.tab[aria-current="page"] { background: rgba(255,255,255,.16); color: #fff; font-weight: 600; }
.count { display: inline-block; min-width: 22px; padding: 0 7px; border-radius: 11px; background: #fff; color: #14213d; font-size: 12px; font-weight: 700; text-align: center; }
.halt { margin-left: auto; font-size: 13px; display: flex; align-items: center; gap: 8px; }
.halt .dot { width: 9px; height: 9px; border-radius: 50%; background: #3ecf7a; display: inline-block; }
.halt.on .dot { background: #ff5a4f; }
.who { font-size: 13px; color: #dfe7f5; }
.role { border: 1px solid rgba(255,255,255,.4); border-radius: 4px; padding: 0 6px; font-size: 11px; text-transform: uppercase; letter-spacing: .5px; }
.link { background: none; border: 0; color: #9cc3ff; cursor: pointer; font: inherit; text-decoration: underline; padding: 0 2px; }
.link.dark { color: var(--accent); }
.banner { background: var(--bad); color: #fff; padding: 10px 24px; font-weight: 600; }
main { padding: 20px 24px 40px; max-width: 1400px; margin: 0 auto; }
main:focus { outline: none; }
.split { display: grid; grid-template-columns: minmax(280px, 400px) 1fr; gap: 20px; align-items: start; }
#history .split { grid-template-columns: minmax(0, 1fr) minmax(0, 1.2fr); }
.listpane { min-width: 0; overflow-x: auto; }
@media (max-width: 900px) { .split, #history .split { grid-template-columns: 1fr; } }
.pane-title { font-size: 14px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 4px 0 10px; display: flex; align-items: center; gap: 8px; }
.live { font-size: 11px; color: var(--ok); border: 1px solid currentColor; border-radius: 10px; padding: 0 7px; text-transform: none; letter-spacing: 0; }
.live.off { color: var(--muted); }
.list { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 8px; }
.item { width: 100%; text-align: left; background: var(--panel); border: 1px solid var(--line); border-left: 5px solid var(--line); border-radius: 8px; padding: 10px 12px; font: inherit; color: inherit; cursor: pointer; display: grid; grid-template-columns: 1fr auto; gap: 2px 10px; }
.item:hover { border-color: #b9c3cf; }
.item[aria-current="true"] { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.item.critical { border-left-color: var(--crit); } .item.high { border-left-color: var(--bad); } .item.medium { border-left-color: var(--warn); } .item.low { border-left-color: var(--ok); }
.item .tool { font-weight: 650; font-family: var(--mono); font-size: 14px; overflow-wrap: anywhere; }
.item .meta { color: var(--muted); font-size: 12.5px; grid-column: 1 / -1; }
.item .new { color: var(--accent); font-weight: 700; font-size: 11px; margin-left: 6px; }
.score { display: inline-flex; align-items: center; justify-content: center; min-width: 42px; padding: 2px 8px; border-radius: 6px; font-weight: 700; font-size: 13px; color: #fff; background: var(--muted); }
.score.critical { background: var(--crit); } .score.high { background: var(--bad); } .score.medium { background: var(--warn); } .score.low { background: var(--ok); }
.empty { color: var(--muted); background: var(--panel); border: 1px dashed var(--line); border-radius: 8px; padding: 18px; }
.detail { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px; min-height: 200px; }
.detail h2 { margin: 0 0 2px; font-size: 20px; font-family: var(--mono); overflow-wrap: anywhere; }
.detail h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 20px 0 8px; }
.sub-title { color: var(--muted); margin: 0 0 12px; }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 10px 18px; margin: 12px 0 0; }
.facts div { border-left: 3px solid var(--line); padding-left: 10px; }
.facts dt { font-size: 12px; color: var(--muted); }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.urgent { color: var(--bad); }
pre.json { background: #0f1724; color: #e6edf7; border-radius: 8px; padding: 12px 14px; overflow: auto; max-height: 420px; font-family: var(--mono); font-size: 13px; margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.masknote { display: flex; align-items: center; gap: 10px; margin-top: 8px; color: var(--muted); font-size: 13px; flex-wrap: wrap; }
ul.reasons { margin: 0; padding-left: 20px; }
ul.reasons li { margin: 3px 0; }
table.rules, table.results { width: 100%; border-collapse: collapse; font-size: 14px; background: var(--panel); }
table.results { font-size: 13px; }
table.rules td:first-child, table.rules th:first-child { white-space: nowrap; }
table.results td { white-space: nowrap; }
table.rules th, table.rules td, table.results th, table.results td { text-align: left; padding: 7px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.results { border: 1px solid var(--line); border-radius: 8px; }
table.results tbody tr:hover { background: #f0f4fa; }
code, .mono { font-family: var(--mono); font-size: 13px; }
.chips { display: flex; gap: 6px; flex-wrap: wrap; }
.chip { border: 1px solid var(--line); border-radius: 12px; padding: 1px 9px; font-size: 12.5px; background: #f7f9fb; }
.chip.on { border-color: var(--bad); color: var(--bad); background: #fdf1f0; }
.pin { padding: 10px 12px; border-radius: 8px; background: #f1f7f3; border: 1px solid #cfe6d7; }
.pin.changed { background: #fdf1f0; border-color: #f1c4c0; }
.sidebyside { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; margin-top: 8px; }
.sidebyside h4 { margin: 0 0 4px; font-size: 12px; color: var(--muted); }
.actions { position: sticky; bottom: 0; background: var(--panel); border-top: 1px solid var(--line); margin: 22px -22px -18px; padding: 14px 22px; border-radius: 0 0 10px 10px; display: flex; flex-direction: column; gap: 10px; }
.actions .row, .search .row, .haltform .row { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
.btn { font: inherit; font-weight: 600; border-radius: 7px; padding: 8px 16px; border: 1px solid #b9c3cf; background: #fff; color: var(--ink); cursor: pointer; }
.btn:hover { background: #f0f3f7; }
.btn:disabled { opacity: .55; cursor: not-allowed; }
.btn.approve { background: var(--ok); border-color: var(--ok); color: #fff; }
.btn.approve:hover { background: #17643a; }
.btn.deny { background: #fff; border-color: var(--bad); color: var(--bad); }
.btn.deny.confirm { background: var(--bad); color: #fff; }
.btn.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
label { font-weight: 600; font-size: 14px; }
textarea, input[type="search"], input[type="text"] { font: inherit; width: 100%; border: 1px solid #b9c3cf; border-radius: 7px; padding: 8px 10px; background: #fff; color: inherit; }
textarea.code { font-family: var(--mono); font-size: 13px; min-height: 180px; }
.search { max-width: 900px; margin-bottom: 16px; }
.search .row input { flex: 1; min-width: 220px; width: auto; }
.error { color: var(--bad); font-weight: 600; }
.hint { color: var(--muted); font-size: 13px; margin: 0; }
.gate { max-width: 640px; margin: 40px auto; background: var(--panel); border: 1px solid var(--line); border-radius: 12px; padding: 28px 32px; }
.gate h1 { margin-top: 0; font-size: 22px; }
.gate pre { background: #0f1724; color: #e6edf7; padding: 10px 12px; border-radius: 7px; overflow: auto; }
.gate form { display: flex; flex-direction: column; gap: 8px; margin-top: 18px; }
.timeline { list-style: none; margin: 0; padding: 0; border-left: 2px solid var(--line); }
.timeline li { margin: 0 0 12px 0; padding-left: 14px; position: relative; }
.timeline li::before { content: ""; position: absolute; left: -6px; top: 6px; width: 10px; height: 10px; border-radius: 50%; background: var(--accent); }
.timeline .type { font-family: var(--mono); font-weight: 650; }
.timeline .when { color: var(--muted); font-size: 12.5px; margin-left: 6px; }
.timeline details summary { cursor: pointer; color: var(--muted); font-size: 13px; }
.status { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .4px; }
.status.executed, .status.approved { color: var(--ok); } .status.denied, .status.expired, .status.unknown { color: var(--bad); } .status.pending { color: var(--warn); }
.toast { position: fixed; right: 20px; bottom: 20px; background: #14213d; color: #fff; padding: 12px 16px; border-radius: 8px; box-shadow: 0 6px 24px rgba(0,0,0,.25); max-width: 420px; }
.toast.bad { background: var(--bad); }
.halt .btn.small { padding: 3px 10px; font-size: 12.5px; }
.halt .btn.stop { border-color: #ff5a4f; color: #ff5a4f; background: transparent; font-weight: 650; }
.haltform { background: #fff4f3; border-bottom: 1px solid #f3c2bd; padding: 12px 20px; display: grid; gap: 8px; }
.haltform textarea { width: 100%; max-width: 720px; }
.approvals { font-weight: 650; }
.approvals.partial { color: var(--warn); }
`;

export const REVIEW_PAGE_JS = String.raw`"use strict";
const state = { session: null, snapshot: { pending: [], halt: { halted: false } }, selected: null, mode: "view", revealed: {}, seen: {}, firstSnapshot: true, events: null, view: "inbox" };
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Appends children, skipping the null/false of conditional parts (DOM append would print "null"). */
function fill(el, ...children) {
  el.append(...children.flat(2).filter((child) => child !== null && child !== undefined && child !== false));
  return el;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
const ageOf = (iso) => duration(Date.now() - Date.parse(iso));
function timeLeft(deadline) {
  if (!deadline) return "no deadline";
  const ms = Date.parse(deadline) - Date.now();
  return ms <= 0 ? "deadline passed (expires as denied)" : duration(ms) + " left";
}
const classOf = (item) => (item.assessment && item.assessment.classification) || "unassessed";
// the agent writes the arguments: bidi overrides and C1 controls are shown escaped, never applied (as renderJson does)
const pretty = (value) => JSON.stringify(value, null, 2).replace(/[\u0080-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

async function api(path, body) {
  const options = body === undefined ? { credentials: "same-origin" } : {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-atlas-csrf": (state.session && state.session.csrf) || "" },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, options);
  let data = {};
  try { data = await res.json(); } catch { data = {}; }
  if (!res.ok) {
    if (res.status === 401) { state.session = null; setTimeout(boot, 0); }
    throw new Error(data.error || ("HTTP " + res.status));
  }
  return data;
}

function toast(text, bad) {
  const el = $("toast");
  el.textContent = text;
  el.className = "toast" + (bad ? " bad" : "");
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

// ---- sign-in ----

async function boot() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const token = hash.get("signin");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    try { state.session = remember(await api("/review/api/signin", { token })); }
    catch (error) { showGate({ signedIn: false, reviewersConfigured: true }, error.message); return; }
  }
  const session = await api("/review/api/session");
  if (!session.signedIn) { forget(); showGate(session); return; }
  // the CSRF token came once, at sign-in, and lives only in this origin's storage (the cookie reaches every port)
  session.csrf = localStorage.getItem(CSRF_KEY) || "";
  if (!session.csrf) { showGate({ signedIn: false, reviewersConfigured: true }, "Sign in again in this browser: open a new sign-in link (atlas-gateway reviewers link <id>)."); return; }
  state.session = session;
  showApp();
}

const CSRF_KEY = "atlas-review-csrf";
function remember(session) { if (session && session.csrf) localStorage.setItem(CSRF_KEY, session.csrf); return session; }
function forget() { localStorage.removeItem(CSRF_KEY); }

/** Forgets everything the previous session saw (revealed values above all) before another one starts. */
function resetView() {
  if (state.events) { state.events.close(); state.events = null; }
  Object.assign(state, { snapshot: { pending: [], halt: { halted: false } }, selected: null, mode: "view", revealed: {}, seen: {}, firstSnapshot: true, detailKey: null, haltKey: null });
  showHaltForm(false);
  $("list").replaceChildren();
  $("detail").replaceChildren();
  $("timeline").replaceChildren();
  $("results").tBodies[0].replaceChildren();
}

function showGate(session, error) {
  resetView();
  for (const id of ["nav", "who", "inbox", "history", "halt", "halt-banner"]) $(id).hidden = true;
  const gate = $("gate");
  gate.replaceChildren();
  gate.hidden = false;
  if (!session.reviewersConfigured) {
    fill(gate, 
      h("h1", { id: "gate-title" }, "No reviewers yet"),
      h("p", {}, "This page never runs open: only reviewers with their own credentials can see held calls or decide them. Add one on the gateway's machine:"),
      h("pre", {}, 'atlas-gateway reviewers add alice --name "Alice Martin" --role approver'),
      h("p", {}, "It prints a one-time sign-in link for this page. Approvers decide; viewers only see. Use the same --data-dir as the gateway."),
    );
  } else {
    fill(gate, 
      h("h1", { id: "gate-title" }, "Sign in to review"),
      error ? h("p", { class: "error", role: "alert" }, error) : null,
      h("p", {}, "Open the one-time sign-in link printed by ", h("code", {}, "atlas-gateway reviewers add <id>"), " or ", h("code", {}, "atlas-gateway reviewers link <id>"), ", or paste its token here."),
      h("form", { onsubmit: async (event) => {
        event.preventDefault();
        const value = $("token").value.trim().replace(/^.*#signin=/, "");
        try { state.session = remember(await api("/review/api/signin", { token: value })); showApp(); }
        catch (e) { showGate(session, e.message); }
      } },
        h("label", { for: "token" }, "Sign-in token"),
        h("input", { id: "token", type: "text", autocomplete: "off", spellcheck: "false" }),
        h("div", {}, h("button", { type: "submit", class: "btn primary" }, "Sign in"))),
    );
  }
}

function showApp() {
  resetView();
  $("gate").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("halt").hidden = false;
  const reviewer = state.session.reviewer;
  $("who-name").textContent = reviewer.name ? reviewer.name + " (" + reviewer.id + ")" : reviewer.id;
  $("who-role").textContent = reviewer.role;
  setView(state.view);
  connect();
}

function connect() {
  if (state.events) state.events.close();
  const events = new EventSource("/review/api/events");
  state.events = events;
  events.addEventListener("snapshot", (event) => { $("live").className = "live"; onSnapshot(JSON.parse(event.data)); });
  events.addEventListener("signedout", () => { events.close(); state.session = null; boot(); });
  events.addEventListener("error", () => {
    $("live").className = "live off";
    if (events.readyState === EventSource.CLOSED) setTimeout(() => { if (state.events === events) boot(); }, 1000);
  });
}

// ---- inbox ----

function onSnapshot(snapshot) {
  state.snapshot = snapshot;
  const arrived = [];
  for (const item of snapshot.pending) {
    if (item.ref in state.seen) continue;
    state.seen[item.ref] = state.firstSnapshot ? "old" : "new";
    if (!state.firstSnapshot) arrived.push(item);
  }
  // screen readers hear about new calls; sighted reviewers see the NEW tag and the count
  if (arrived.length) $("announce").textContent = arrived.map((item) => "New call waiting: " + item.tool + ", risk " + (item.assessment ? item.assessment.score : "unknown")).join(". ");
  state.firstSnapshot = false;
  renderHalt();
  renderInbox();
}

function renderHalt() {
  const halt = state.snapshot.halt || { halted: false };
  const approver = state.session && state.session.reviewer.role === "approver";
  // rebuilt only when the state changes: a rebuild would drop the focus of a reviewer about to press the button
  const key = JSON.stringify(halt) + "|" + approver;
  if (key === state.haltKey) return;
  state.haltKey = key;
  const el = $("halt");
  el.replaceChildren(h("span", { class: "dot", "aria-hidden": "true" }), halt.halted ? "Gateway HALTED" : "Gateway running",
    approver ? (halt.halted
      ? h("button", { type: "button", class: "btn small", id: "resume", onclick: resume }, "Resume")
      : h("button", { type: "button", class: "btn small stop", id: "stop", onclick: () => showHaltForm(true) }, "Stop all calls…")) : null);
  el.className = "halt" + (halt.halted ? " on" : "");
  const banner = $("halt-banner");
  banner.hidden = !halt.halted;
  banner.replaceChildren();
  if (halt.halted) {
    showHaltForm(false);
    fill(banner, "Stopped: every tool call is refused",
      halt.by ? " — halted by " + halt.by : "",
      halt.at ? [" since ", h("time", { datetime: halt.at }, new Date(halt.at).toLocaleString())] : "",
      halt.reason ? ". Reason: " + halt.reason : "",
      ". Pending calls stay pending and their deadlines keep running. ",
      approver ? "Press Resume (or run 'atlas-gateway resume') to continue." : "An approver resumes it here or with 'atlas-gateway resume'.");
  }
}

function showHaltForm(open) {
  const form = $("halt-form");
  if (!open) { form.hidden = true; form.replaceChildren(); return; }
  form.replaceChildren(
    h("label", { for: "halt-reason" }, "Why stop every tool call? (required; agents, reviewers and the audit trail see it)"),
    h("textarea", { id: "halt-reason", rows: "2", "aria-required": "true" }),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "btn deny confirm", id: "confirm-halt" }, "Halt every tool call"),
      h("button", { type: "button", class: "btn", onclick: () => showHaltForm(false) }, "Cancel")));
  form.onsubmit = async (event) => {
    event.preventDefault();
    const reason = $("halt-reason").value.trim();
    if (!reason) { $("halt-reason").focus(); toast("A halt needs a reason.", true); return; }
    $("confirm-halt").disabled = true;
    try {
      const result = await api("/review/api/halt", { action: "halt", reason });
      showHaltForm(false);
      toast("Halted: every tool call on this data dir is refused until you resume.");
      onHalt(result);
    } catch (error) { toast(error.message, true); if ($("confirm-halt")) $("confirm-halt").disabled = false; }
  };
  form.hidden = false;
  $("halt-reason").focus();
}

async function resume() {
  $("resume").disabled = true;
  try {
    onHalt(await api("/review/api/halt", { action: "resume" }));
    toast("Resumed: tool calls are routed by policy again.");
  } catch (error) { toast(error.message, true); if ($("resume")) $("resume").disabled = false; }
}

/** Shows the new state at once; the live stream confirms it from the ledgers a moment later. */
function onHalt(result) {
  state.snapshot = Object.assign({}, state.snapshot, { halt: result.halted ? { halted: true, by: result.by, at: result.at, reason: result.reason } : { halted: false } });
  renderHalt();
}

/** "1 of 2 approvals (alice)": where a two-person call stands. */
function approvalsText(approvals) {
  return approvals.count + " of " + approvals.required + " approvals" + (approvals.by.length ? " (" + approvals.by.join(", ") + ")" : "");
}

function renderInbox() {
  const pending = state.snapshot.pending;
  $("count").textContent = String(pending.length);
  document.title = (pending.length ? "(" + pending.length + ") " : "") + "Review · atlas-gateway";
  $("empty").hidden = pending.length > 0;
  if (!pending.some((item) => item.ref === state.selected)) { state.selected = pending.length ? pending[0].ref : null; state.mode = "view"; }
  const list = $("list");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.ref : undefined;
  list.replaceChildren(...pending.map((item) => h("li", {},
    h("button", { type: "button", class: "item " + classOf(item), "data-ref": item.ref, "aria-current": item.ref === state.selected ? "true" : "false",
      onclick: () => select(item.ref), onkeydown: onListKey },
      h("span", { class: "tool" }, item.tool, state.seen[item.ref] === "new" ? h("span", { class: "new" }, "NEW") : null),
      h("span", { class: "score " + classOf(item), title: "risk score" }, item.assessment ? item.assessment.score : "?"),
      h("span", { class: "meta" }, item.approvals ? h("span", { class: "approvals partial" }, approvalsText(item.approvals) + " · ") : null, item.upstream, " · ", item.ref, " · ", h("span", { "data-age": item.createdAt }, ageOf(item.createdAt)), " ago · ", h("span", { "data-deadline": item.deadline || "" }, timeLeft(item.deadline)))))));
  if (focused) { const again = list.querySelector('[data-ref="' + focused + '"]'); if (again) again.focus(); }
  // Re-render the detail only when what it shows changed: a re-render would drop the keyboard focus (and a
  // half-typed reason) of a reviewer working in it while other calls arrive.
  const item = pending.find((entry) => entry.ref === state.selected);
  const key = state.selected + "|" + state.mode + "|" + JSON.stringify(item || null) + "|" + (state.revealed[state.selected] ? "r" : "");
  if (key !== state.detailKey) renderDetail();
}

function onListKey(event) {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  event.preventDefault();
  const buttons = [...$("list").querySelectorAll("button.item")];
  const at = buttons.indexOf(event.currentTarget);
  const next = buttons[at + (event.key === "ArrowDown" ? 1 : -1)];
  if (next) { next.focus(); select(next.dataset.ref); }
}

function select(ref) {
  if (state.selected !== ref) state.mode = "view";
  state.selected = ref;
  if (state.seen[ref] === "new") state.seen[ref] = "old";
  renderInbox();
}

function fact(label, value, cls) { return h("div", {}, h("dt", {}, label), h("dd", cls ? { class: cls } : {}, value)); }

function renderDetail() {
  const detail = $("detail");
  const item = state.snapshot.pending.find((entry) => entry.ref === state.selected);
  state.detailKey = state.selected + "|" + state.mode + "|" + JSON.stringify(item || null) + "|" + (state.revealed[state.selected] ? "r" : "");
  const focusedId = detail.contains(document.activeElement) ? document.activeElement.id : "";
  detail.dataset.ref = item ? item.ref : "";
  detail.replaceChildren();
  if (!item) { fill(detail, h("p", { class: "hint" }, "Select a call to see everything about it.")); return; }
  const a = item.assessment || { score: "?", classification: "unassessed", reasons: [], evaluator: "?" };
  const left = item.deadline ? Date.parse(item.deadline) - Date.now() : Infinity;
  const revealed = state.revealed[item.ref];
  fill(detail, 
    h("h2", {}, item.tool),
    h("p", { class: "sub-title" }, "on upstream ", h("strong", {}, item.upstream), item.upstreamTool !== item.tool ? " (tool " + item.upstreamTool + ")" : "", " · ref ", h("code", {}, item.ref), " · ",
      h("button", { type: "button", class: "link dark", onclick: () => openHistory(item.ref) }, "full history")),
    h("dl", { class: "facts" },
      fact("Risk", h("span", { class: "score " + a.classification }, String(a.score)), null),
      fact("Classification", a.classification),
      fact("Evaluator", a.evaluator),
      fact("Asked by", item.client ? (item.client.name || "unknown client") + (item.client.version ? " " + item.client.version : "") : "unknown client"),
      fact("Received", h("span", { "data-age": item.createdAt }, ageOf(item.createdAt) + " ago"), null),
      fact("Time left", h("span", { "data-deadline": item.deadline || "" }, timeLeft(item.deadline)), left < 3600000 ? "urgent" : null),
      fact("Instance", item.instance),
      item.approvals ? fact("Approvals", h("span", { class: "approvals partial", id: "approvals" }, approvalsText(item.approvals) + "; it runs after " + item.approvals.required + " different approvers")) : null),
    h("h3", {}, "Arguments"),
    h("pre", { class: "json", id: "args", tabindex: "0", "aria-label": "Arguments as JSON" }, pretty(revealed || item.args)),
    item.masked ? h("div", { class: "masknote" }, revealed
      ? h("span", {}, "Masked values revealed to you; the reveal is recorded in the audit ledger.")
      : [h("span", {}, "Secret values are masked."), h("button", { type: "button", class: "btn", id: "reveal", onclick: () => reveal(item.ref) }, "Reveal masked values (recorded)")]) : null,
    h("h3", {}, "Why it was held"),
    a.reasons && a.reasons.length ? h("ul", { class: "reasons" }, a.reasons.map((reason) => h("li", {}, reason))) : h("p", { class: "hint" }, "No reasons recorded."),
    a.rules && a.rules.length ? h("table", { class: "rules" }, h("caption", { class: "sr" }, "Policy rules fired"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Rule fired"), h("th", { scope: "col" }, "Effect"), h("th", { scope: "col" }, "Reason"))),
      h("tbody", {}, a.rules.map((rule) => h("tr", {}, h("td", {}, h("code", {}, rule.id)), h("td", {}, describeEffect(rule.effect)), h("td", {}, rule.reason))))) : null,
    a.verdict ? h("p", { class: "hint" }, "Policy verdict: " + a.verdict) : null,
    h("h3", {}, "Tool"),
    renderAnnotations(item.annotations),
    renderPin(item.pin),
    renderActions(item),
  );
  if (focusedId && $(focusedId)) $(focusedId).focus();
}

const describeEffect = (effect) => (typeof effect === "number" ? "score " + effect : String(effect));

function renderAnnotations(annotations) {
  if (!annotations || !Object.keys(annotations).length) return h("p", { class: "hint" }, "The tool declares no annotations.");
  return h("div", { class: "chips", "aria-label": "Tool annotations" }, Object.entries(annotations).map(([key, value]) =>
    h("span", { class: "chip" + ((key === "destructiveHint" || key === "openWorldHint") && value === true ? " on" : "") }, key + ": " + (typeof value === "object" ? JSON.stringify(value) : String(value)))));
}

function renderPin(pin) {
  if (!pin || pin.state === "unpinned") return h("p", { class: "hint" }, "Definition not pinned yet.");
  if (pin.state === "pinned") return h("p", { class: "pin" }, "Definition pinned since " + new Date(pin.pinnedAt).toLocaleString() + (pin.trustedBy ? ", trusted by " + pin.trustedBy : "") + ": unchanged.");
  return h("div", { class: "pin changed" },
    h("strong", {}, "Definition CHANGED since it was trusted"), (pin.changed && pin.changed.length ? " (" + pin.changed.join(", ") + ")" : ""), ". Trust it with ", h("code", {}, "atlas-gateway tools trust"), " after comparing:",
    h("div", { class: "sidebyside" },
      h("div", {}, h("h4", {}, "Trusted definition"), h("pre", { class: "json" }, pretty(pin.pinned || {}))),
      h("div", {}, h("h4", {}, "Definition now served"), h("pre", { class: "json" }, pretty(pin.current || {})))));
}

function renderActions(item) {
  if (state.session.reviewer.role !== "approver") return h("div", { class: "actions" }, h("p", { class: "hint" }, "You are a viewer: approvers decide."));
  const box = h("div", { class: "actions", "aria-label": "Decision" });
  if (state.mode === "deny") {
    fill(box, 
      h("label", { for: "reason" }, "Reason for denying (required; the agent and the audit trail see it)"),
      h("textarea", { id: "reason", rows: "3", required: true }),
      h("div", { class: "row" },
        h("button", { type: "button", class: "btn deny confirm", id: "confirm-deny", onclick: () => {
          const reason = $("reason").value.trim();
          if (!reason) { $("reason").focus(); toast("A denial needs a reason.", true); return; }
          decide(item.ref, { decision: "denied", reason });
        } }, "Deny this call"),
        h("button", { type: "button", class: "btn", onclick: () => { state.mode = "view"; renderDetail(); } }, "Cancel")));
    setTimeout(() => $("reason") && $("reason").focus(), 0);
    return box;
  }
  if (state.mode === "edit") {
    fill(box, 
      h("label", { for: "edited" }, "Edited arguments (JSON). Masked values you leave as shown keep their original value."),
      h("textarea", { id: "edited", class: "code", spellcheck: "false" }, pretty(state.revealed[item.ref] || item.args)),
      h("label", { for: "edit-reason" }, "Note (optional)"),
      h("input", { id: "edit-reason", type: "text" }),
      h("p", { class: "hint" }, "The ledger keeps the original and the edited arguments; the agent is told its arguments were changed."),
      h("div", { class: "row" },
        h("button", { type: "button", class: "btn approve", id: "confirm-edit", onclick: () => {
          let args;
          try { args = JSON.parse($("edited").value); } catch (error) { toast("Not valid JSON: " + error.message, true); return; }
          if (!args || typeof args !== "object" || Array.isArray(args)) { toast("The arguments must be a JSON object.", true); return; }
          const reason = $("edit-reason").value.trim();
          decide(item.ref, Object.assign({ decision: "approved", args }, reason ? { reason } : {}));
        } }, "Approve with these arguments"),
        h("button", { type: "button", class: "btn", onclick: () => { state.mode = "view"; renderDetail(); } }, "Cancel")));
    setTimeout(() => $("edited") && $("edited").focus(), 0);
    return box;
  }
  fill(box, 
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn approve", id: "approve", onclick: () => decide(item.ref, { decision: "approved" }) }, "Approve"),
      item.approvals ? null : h("button", { type: "button", class: "btn", id: "edit", onclick: () => { state.mode = "edit"; renderDetail(); } }, "Approve with edits…"),
      h("button", { type: "button", class: "btn deny", id: "deny", onclick: () => { state.mode = "deny"; renderDetail(); } }, "Deny…")),
    h("p", { class: "hint" }, "Deciding as " + state.session.reviewer.id + "; the decision is recorded in the audit ledger under your name."));
  return box;
}

async function decide(ref, body) {
  for (const button of $("detail").querySelectorAll(".actions button")) button.disabled = true;
  try {
    const result = await api("/review/api/decide", Object.assign({ ref }, body));
    state.mode = "view";
    if (body.decision === "approved" && result.status === "pending" && result.approvals) {
      toast("Your approval of " + ref + " is recorded: " + approvalsText(result.approvals) + ". It runs once another reviewer approves.");
      for (const button of $("detail").querySelectorAll(".actions button")) button.disabled = false;
      return;
    }
    toast((body.decision === "approved" ? (result.edited ? "Approved with edits: " : "Approved: ") : "Denied: ") + ref + (body.decision === "approved" ? " — it runs now; the agent gets the result." : " — it will not run."));
  } catch (error) {
    toast(error.message, true);
    for (const button of $("detail").querySelectorAll(".actions button")) button.disabled = false;
  }
}

async function reveal(ref) {
  try {
    const result = await api("/review/api/reveal", { ref });
    state.revealed[ref] = result.args;
    renderDetail();
  } catch (error) { toast(error.message, true); }
}

// ---- history & search ----

function setView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-current", tab.dataset.view === view ? "page" : "false");
  $("inbox").hidden = view !== "inbox";
  $("history").hidden = view !== "history";
}

async function runSearch(q) {
  try {
    const data = await api("/review/api/search?q=" + encodeURIComponent(q));
    const body = $("results").tBodies[0];
    body.replaceChildren(...data.results.map((hit) => h("tr", {},
      h("td", {}, h("button", { type: "button", class: "link dark mono", onclick: () => openHistory(hit.ref) }, hit.ref)),
      h("td", {}, h("code", {}, hit.tool)),
      h("td", {}, h("span", { class: "status " + hit.status }, hit.status)),
      h("td", {}, hit.score === undefined ? "" : String(hit.score)),
      h("td", {}, hit.reviewer ? hit.reviewer + (hit.decision ? " (" + hit.decision + ")" : "") : ""),
      h("td", {}, new Date(hit.createdAt).toLocaleString()))));
    $("results").hidden = data.results.length === 0;
    $("noresults").hidden = data.results.length !== 0;
  } catch (error) { toast(error.message, true); }
}

async function openHistory(ref) {
  setView("history");
  const box = $("timeline");
  box.replaceChildren(h("p", { class: "hint" }, "Loading " + ref + "…"));
  try {
    const data = await api("/review/api/history?ref=" + encodeURIComponent(ref));
    const view = data.view;
    const d = view.decision;
    box.replaceChildren();
    fill(box,
      h("h2", {}, view.name),
      h("p", { class: "sub-title" }, "ref ", h("code", {}, view.ref), " · upstream ", view.upstream, " · instance ", data.instance, " · ", h("span", { class: "status " + view.status, id: "history-status" }, view.status)),
      h("dl", { class: "facts" },
        fact("Decided by", d ? (d.source === "timeout" ? "nobody (expired)" : (d.reviewer || "?") + " — " + d.decision) : view.autoApproved ? "policy (auto-approved)" : "not yet"),
        fact("Reason", d && d.reason ? d.reason : "—"),
        fact("Outcome", view.outcome || "—"),
        fact("Risk", view.assessment ? view.assessment.score + " (" + view.assessment.classification + ")" : "—")),
      h("h3", {}, "Arguments the agent sent"), h("pre", { class: "json" }, pretty(view.args)),
      view.editedArgs ? [h("h3", {}, "Arguments the reviewer approved instead"), h("pre", { class: "json" }, pretty(view.editedArgs))] : null,
      view.result !== undefined ? [h("h3", {}, "Result"), h("pre", { class: "json" }, pretty(view.result))] : null,
      h("h3", {}, "Ledger records"),
      h("ol", { class: "timeline" }, data.records.map((record) => h("li", {},
        h("span", { class: "type" }, record.type), h("span", { class: "when" }, "#" + record.seq + " · " + new Date(record.ts).toLocaleString()),
        summarize(record),
        h("details", {}, h("summary", {}, "record data"), h("pre", { class: "json" }, pretty(record.data)))))));
  } catch (error) {
    box.replaceChildren(h("p", { class: "error" }, error.message));
  }
}

function summarize(record) {
  const data = record.data || {};
  if (record.type === "decision.recorded") return h("div", {}, data.decision + " by " + (data.reviewer || data.source) + (data.reason ? ": " + data.reason : "") + (data.edited_args ? " (arguments edited)" : ""));
  if (record.type === "request.assessed") return h("div", {}, "score " + data.score + " (" + data.classification + ")");
  if (record.type === "review.revealed") return h("div", {}, "masked arguments revealed to " + data.reviewer);
  if (record.type === "execution.finished") return h("div", {}, "outcome " + data.outcome);
  return null;
}

// ---- wiring ----

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => { setView(tab.dataset.view); if (tab.dataset.view === "history" && !$("results").tBodies[0].children.length) runSearch(""); });
$("search").addEventListener("submit", (event) => { event.preventDefault(); runSearch($("q").value); });
$("signout").addEventListener("click", async () => { try { await api("/review/api/signout", {}); } catch {} forget(); state.session = null; boot(); });
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && !/^(INPUT|TEXTAREA)$/.test(document.activeElement.tagName)) { event.preventDefault(); setView("history"); $("q").focus(); }
});
setInterval(() => {
  for (const el of document.querySelectorAll("[data-age]")) el.textContent = ageOf(el.dataset.age) + (el.closest(".facts") ? " ago" : "");
  for (const el of document.querySelectorAll("[data-deadline]")) el.textContent = timeLeft(el.dataset.deadline || undefined);
}, 1000);
// a sign-in link opened in a tab already showing the page changes only the fragment: no reload, so sign in here
window.addEventListener("hashchange", () => { if (location.hash.includes("signin=")) boot().catch((error) => toast(error.message, true)); });
boot().catch((error) => toast(error.message, true));
`;
