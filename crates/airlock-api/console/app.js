// Airlock console: a client of the HTTP API and nothing else. Plain
// JavaScript with no build step and no third-party code. Every value from the
// API reaches the page as text (text nodes), never as markup, and through
// safe(): control and invisible formatting characters are shown as visible
// escapes, and the text is bidi-isolated.
"use strict";

// ---------------------------------------------------------------- basics

const TOKEN_KEY = "airlock.token";
const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------- untrusted text

// Characters never shown raw: C0 controls but TAB and LF, DEL, C1 controls,
// format characters (bidi overrides and isolates, zero-width characters, the
// BOM, ...) and the line/paragraph separators. The same table as
// airlock_config::text::UNSAFE_RANGES; a test in airlock-api keeps them equal.
const UNSAFE_RANGES = [
  [0x00, 0x08], [0x0b, 0x1f], [0x7f, 0x9f], [0xad, 0xad], [0x600, 0x605], [0x61c, 0x61c],
  [0x6dd, 0x6dd], [0x70f, 0x70f], [0x890, 0x891], [0x8e2, 0x8e2], [0x180e, 0x180e],
  [0x200b, 0x200f], [0x2028, 0x202e], [0x2060, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffb],
  [0x110bd, 0x110bd], [0x110cd, 0x110cd], [0x13430, 0x1343f], [0x1bca0, 0x1bca3],
  [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];
const isUnsafe = (cp) => UNSAFE_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);

/** How an unsafe character reads: `\r`, `\x1b`, `\u{202e}` (as the CLI shows it). */
function escapeChar(cp) {
  if (cp === 0x0a) return "\\n";
  if (cp === 0x0d) return "\\r";
  if (cp === 0x09) return "\\t";
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, "0")}`;
  return `\\u{${cp.toString(16)}}`;
}

/** Plain text with every unsafe character escaped (for SVG text and titles). */
function escapeText(text) {
  let out = "";
  for (const ch of String(text)) {
    const cp = ch.codePointAt(0);
    out += isUnsafe(cp) ? escapeChar(cp) : ch;
  }
  return out;
}

/** Untrusted text as a node. Plain printable ASCII stays a text node; anything
 * else goes in a <bdi> (right-to-left text cannot reorder what is around it),
 * with each unsafe character shown as a visible escape badge (span.ctl). LF
 * and TAB are kept: <pre> shows the lines of a statement or an output. */
function safe(text) {
  const s = String(text);
  if (!/[^\x20-\x7e\n\t]/.test(s)) return document.createTextNode(s);
  const el = document.createElement("bdi");
  let run = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (!isUnsafe(cp)) { run += ch; continue; }
    if (run) el.append(document.createTextNode(run));
    run = "";
    const badge = document.createElement("span");
    badge.className = "ctl";
    badge.title = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    badge.textContent = escapeChar(cp);
    el.append(badge);
  }
  if (run) el.append(document.createTextNode(run));
  return el;
}

// ---------------------------------------------------------------- markup

/** h("tag.class", {attr: v, onclick: f}, ...children): children are nodes or
 * text; text goes through safe(). */
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.append(safe(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : safe(c));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(escapeText(c)));
  return el;
}

let uid = 0;
/** A labelled control: every input has a visible label. */
function field(label, control) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  return h("label", { for: id }, label, control);
}

function toast(text) {
  const t = $("#toast");
  t.replaceChildren(safe(text));
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
}

// The server's clock decides expiry; the console only counts down to it.
let clockOffset = 0;
const serverNow = () => Date.now() + clockOffset;

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function fmtNs(ns) {
  if (ns === null || ns === undefined) return "";
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)}µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(2)}ms`;
  return `${(ns / 1e9).toFixed(2)}s`;
}
function fmtLeft(ms) {
  if (ms <= 0) return "ended";
  const s = Math.floor(ms / 1000);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}h ${two(mm)}m ${two(ss)}s left` : `${mm}m ${two(ss)}s left`;
}
function fmtDuration(ms) {
  const m = Math.round(ms / 60000);
  return m >= 60 ? `${Math.floor(m / 60)}h${m % 60 ? ` ${m % 60}m` : ""}` : `${m}m`;
}

// ---------------------------------------------------------------- the API

/** An answer from the API that was not a success: what, why, what next. */
class ApiFailure extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `the gateway answered ${status}`);
    this.status = status;
    this.hint = body && body.hint;
  }
}

const auth = {
  // Sign-in methods. An API token is the only one today; single sign-on will
  // be another entry here that ends in the same place: a bearer token held
  // in this tab only.
  token: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  const token = auth.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  const date = res.headers.get("Date");
  if (date) clockOffset = Date.parse(date) - Date.now();
  if (res.status === 401 && token && me) {
    // Signed in, and the token stopped working (revoked, expired).
    auth.clear();
    me = null;
    route();
    throw new ApiFailure(401, { message: "your session ended: sign in again" });
  }
  if (!res.ok) {
    let b = null;
    try { b = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiFailure(res.status, b);
  }
  if (raw) return res;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

function errorBox(e) {
  return h("div.card.error-box", { role: "alert" },
    h("strong", {}, e.message || String(e)),
    e.hint ? h("div.muted", {}, e.hint) : null);
}

/** Runs an action from a button; shows failures next to it. */
function action(button, where, f) {
  button.addEventListener("click", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    where.replaceChildren();
    try { await f(); } catch (e) { where.replaceChildren(errorBox(e)); }
    finally { button.disabled = false; }
  });
  return button;
}

// ---------------------------------------------------------------- shell

let me = null;
let timers = [];
function every(ms, f) { timers.push(setInterval(f, ms)); }
function stopTimers() { timers.forEach(clearInterval); timers = []; }

const pages = {
  access: pageAccess, requests: pageRequests, timeline: pageTimeline, trace: pageTrace,
  compare: pageCompare, sessions: pageSessions, session: pageSession, audit: pageAudit,
  runbooks: pageRunbooks,
};

async function route() {
  stopTimers();
  const main = $("#main");
  const signedIn = !!auth.token();
  $("#nav").hidden = !signedIn;
  $("#signout").hidden = !signedIn;
  $("#who").hidden = !signedIn;
  if (!signedIn) { me = null; main.replaceChildren(signIn()); return; }
  if (!me) {
    try { me = await api("/api/v1/whoami"); } catch (e) { main.replaceChildren(errorBox(e)); return; }
    $("#who").textContent = `${me.user} (${(me.roles || []).join(", ") || "no roles"})`;
  }
  // #/page/arg?query: the query belongs to the page (filters).
  const [, name = "access", ...rest] = (location.hash || "#/access").split("?")[0].split("/");
  const page = pages[name] || pageAccess;
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").slice(2);
    if (target === name || (name === "trace" && target === "timeline") || (name === "session" && target === "sessions")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = h("div");
  main.replaceChildren(root);
  try { await page(root, rest.map(decodeURIComponent)); } catch (e) { root.replaceChildren(errorBox(e)); }
  refreshInbox();
}

async function refreshInbox() {
  try {
    const pending = await api("/api/v1/requests?pending=true");
    const mine = pending.filter((r) => r.user !== me.user && r.state === "pending").length;
    const badge = $("#inbox-count");
    badge.hidden = mine === 0;
    badge.textContent = String(mine);
    badge.setAttribute("aria-label", `${mine} waiting for you`);
  } catch (_) { /* the page shows errors */ }
}

function signIn() {
  const token = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true, name: "token" });
  const out = h("div");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form.stack.card", { "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Airlock"),
    field("API token", token),
    h("p.muted", {}, "Get one on the gateway host with ", h("code", {}, "airlock token issue USER"),
      ". It stays in this tab only, and is never put in a URL."),
    button, out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    out.replaceChildren();
    auth.set(token.value.trim());
    try {
      me = await api("/api/v1/whoami");
      $("#who").textContent = `${me.user} (${(me.roles || []).join(", ") || "no roles"})`;
      if (!location.hash || location.hash === "#/") location.hash = "#/access"; else route();
    } catch (e) {
      auth.clear();
      out.replaceChildren(errorBox(e.status === 401 ? new ApiFailure(401, { message: "that token was not accepted", hint: "check it, or issue a new one" }) : e));
    } finally { button.disabled = false; }
  });
  setTimeout(() => token.focus(), 0);
  return form;
}

// ---------------------------------------------------------------- my access

async function pageAccess(root) {
  const list = await api("/api/v1/resources");
  const byResource = new Map();
  for (const a of list) {
    if (!byResource.has(a.resource)) byResource.set(a.resource, []);
    byResource.get(a.resource).push(a);
  }
  root.append(h("h1", {}, "My access"));
  const grid = h("div.grid");
  for (const [resource, ways] of byResource) {
    const rows = ways.map((w) => {
      let what;
      if (w.kind === "grant") {
        what = h("span", {}, h("span.tag", {}, "active grant"), " ",
          h("span.countdown", { "data-expires": w.expires_ms }, fmtLeft(w.expires_ms - serverNow())));
      } else if (w.kind === "standing") {
        what = h("span.tag", {}, "standing");
      } else if (w.kind === "requestable") {
        what = h("span", {}, h("span.tag", {}, "requestable"), ` up to ${fmtDuration(w.max_ms)}, ${w.approvals} approval(s) from ${(w.approvers || []).join(", ") || "nobody"}`);
      } else if (w.kind === "break_glass") {
        what = h("span", {}, h("span.tag.error", {}, "break-glass"), ` up to ${fmtDuration(w.max_ms)}, announced`);
      } else {
        what = h("span.tag", {}, w.kind);
      }
      return h("tr", {}, h("td", {}, w.access), h("td", {}, what));
    });
    grid.append(h("section.card", { "aria-label": `Access to ${resource}` },
      h("h2", {}, resource),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Access"), h("th", {}, "How"))), h("tbody", {}, rows))));
  }
  if (!byResource.size) grid.append(h("p.muted", {}, "No access: ask the policy's owners for a role."));
  root.append(grid);
  every(1000, () => {
    for (const el of document.querySelectorAll("[data-expires]")) {
      el.textContent = fmtLeft(Number(el.dataset.expires) - serverNow());
    }
  });

  // Connect: a session credential, shown once.
  const usable = list.filter((w) => w.kind === "standing" || w.kind === "grant");
  const resources = [...new Set(usable.map((w) => w.resource))];
  const cRes = h("select", { name: "resource" }, resources.map((r) => h("option", { value: r }, r)));
  const cAccess = h("select", { name: "access" }, h("option", { value: "read" }, "read"), h("option", { value: "write" }, "write"));
  const cTtl = h("input", { name: "ttl", value: "1h", size: 6 });
  const cOut = h("div");
  const cButton = h("button", { type: "button" }, "Get a credential");
  action(cButton, cOut, async () => {
    const c = await api("/api/v1/credentials", { method: "POST", body: { resource: cRes.value, access: cAccess.value, ttl: cTtl.value } });
    const enc = encodeURIComponent;
    const host = c.host.includes(":") ? `[${c.host}]` : c.host;
    const uri = `postgresql://${enc(c.user)}:${enc(c.password)}@${host}:${c.port}/${enc(c.database)}?sslmode=${c.sslmode}&sslrootcert=airlock-ca.crt`;
    cOut.replaceChildren(
      h("p", {}, `Credential ${c.id} for ${c.access} access to ${c.resource}, until ${fmtTime(c.expires_at_ms)}. It is shown once.`),
      copyable("psql command", `psql '${uri}'`),
      copyable("Connection URI", uri),
      c.ca_pem ? h("p.muted", {}, "Save the gateway's CA as airlock-ca.crt first: ", h("a", { href: "/api/v1/ca.crt", download: "airlock-ca.crt" }, "download it"), ".") : null);
  });
  root.append(h("section.card", { "aria-labelledby": "connect-title" },
    h("h2", { id: "connect-title" }, "Connect"),
    resources.length
      ? h("div.row", {}, field("Resource", cRes), field("Access", cAccess), field("Lifetime", cTtl), cButton)
      : h("p.muted", {}, "Nothing to connect to right now."),
    cOut));

  // Request time-boxed access.
  const requestable = list.filter((w) => w.kind === "requestable");
  if (requestable.length) {
    const rRes = h("select", { name: "resource" }, [...new Set(requestable.map((w) => w.resource))].map((r) => h("option", { value: r }, r)));
    const rAccess = h("select", { name: "access" }, [...new Set(requestable.map((w) => w.access))].map((a) => h("option", { value: a }, a)));
    const rFor = h("input", { name: "for", value: "30m", size: 6 });
    const rReason = h("input", { name: "reason", placeholder: "INC-42: what and why", required: true });
    const rOut = h("div");
    const rButton = h("button", { type: "button" }, "Request access");
    action(rButton, rOut, async () => {
      const r = await api("/api/v1/requests", { method: "POST", body: { resource: rRes.value, access: rAccess.value, for: rFor.value, reason: rReason.value } });
      rOut.replaceChildren(h("p.ok", {}, `Request ${r.id} filed; approvers: ${(r.approvers || []).join(", ")}. This page updates when it is approved.`));
      pollForGrant(r.id, rOut);
    });
    root.append(h("section.card", { "aria-labelledby": "request-title" },
      h("h2", { id: "request-title" }, "Request access"),
      h("div.row", {}, field("Resource", rRes), field("Access", rAccess), field("For", rFor), field("Reason", rReason), rButton),
      rOut));
  }
}

function pollForGrant(id, out) {
  every(2000, async () => {
    const r = await api(`/api/v1/requests/${encodeURIComponent(id)}`);
    if (r.state === "approved") { toast(`request ${id} approved`); route(); }
    else if (r.state === "denied" || r.state === "expired") {
      out.replaceChildren(h("p.bad", {}, `Request ${id} was ${r.state}${r.decision_comment ? `: ${r.decision_comment}` : ""}.`));
      stopTimers();
    }
  });
}

function copyable(label, text) {
  const pre = h("pre", { tabindex: "0", "aria-label": label }, text);
  const b = h("button.secondary", { type: "button", "aria-label": `Copy ${label}` }, "Copy");
  b.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(text); toast(`${label} copied`); }
    catch (_) {
      const r = document.createRange(); r.selectNodeContents(pre);
      const s = getSelection(); s.removeAllRanges(); s.addRange(r);
      toast("selected: press Ctrl-C to copy");
    }
  });
  return h("div", {}, h("div.muted", {}, label), h("div.copy", {}, pre, b));
}

// ---------------------------------------------------------------- requests

async function pageRequests(root) {
  root.append(h("h1", {}, "Requests"));
  const inbox = h("div"), mine = h("div");
  root.append(h("h2", {}, "Waiting for your decision"), inbox, h("h2", {}, "Yours"), mine);
  const seen = new Map();
  async function load() {
    const all = await api("/api/v1/requests?pending=true");
    const waiting = all.filter((r) => r.user !== me.user);
    const key = JSON.stringify(waiting.map((r) => [r.id, r.state, (r.approvals || []).length]));
    if (seen.get("inbox") !== key) {
      seen.set("inbox", key);
      inbox.replaceChildren(...(waiting.length ? waiting.map(requestCard) : [h("p.muted", {}, "Nothing waiting.")]));
    }
    const own = await api("/api/v1/requests?mine=true&limit=20");
    const key2 = JSON.stringify(own.map((r) => [r.id, r.state]));
    if (seen.get("mine") !== key2) {
      seen.set("mine", key2);
      mine.replaceChildren(own.length ? h("div.scroll", {}, h("table", {},
        h("thead", {}, h("tr", {}, ["Request", "What", "State", "Filed", "Reason"].map((t) => h("th", {}, t)))),
        h("tbody", {}, own.map((r) => h("tr", {}, h("td.mono", {}, r.id), h("td", {}, describe(r)), h("td", {}, r.state), h("td", {}, fmtTime(r.created_ms)), h("td", {}, r.reason)))))) : h("p.muted", {}, "None."));
    }
  }
  await load();
  every(3000, () => load().catch(() => {}));
}

function describe(r) {
  if (r.kind === "statement") return `one reviewed statement on ${r.resource}`;
  if (r.kind === "runbook") return `runbook ${r.resource}`;
  return `${r.access} access to ${r.resource} for ${fmtDuration(r.duration_ms)}`;
}

function requestCard(r) {
  const comment = h("textarea", { name: "comment", rows: 2 });
  const out = h("div");
  const approve = h("button", { type: "button" }, "Approve");
  const deny = h("button.danger", { type: "button" }, "Deny");
  const details = [
    ["Requester", r.user], ["Resource", r.resource], ["Access", r.access],
    ["Duration", r.kind === "access" ? fmtDuration(r.duration_ms) : "once"],
    ["Reason", r.reason], ["Approvals", `${(r.approvals || []).length} of ${r.approvals_required}`],
    ["Expires", fmtTime(r.expires_ms)],
  ];
  const card = h("article.card", { "aria-label": `Request ${r.id}`, "data-request": r.id },
    h("h2", {}, describe(r), " ", h("span.muted.mono", {}, r.id)),
    h("dl.kv", {}, details.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    r.statement ? h("div", {}, h("div.muted", {}, "The exact statement"), h("pre", {}, r.statement)) : null,
    r.runbook ? h("div", {}, h("div.muted", {}, "Parameters"),
      h("pre", {}, Object.entries(r.runbook.params || {}).map(([k, v]) => `${k} = ${v}`).join("\n")),
      h("div.muted", {}, "Steps"),
      h("pre", {}, ((r.runbook.plan || {}).steps || []).map((s) => `${s.index + 1}. ${s.name} (${s.kind})`).join("\n"))) : null,
    field("Comment (required to deny)", comment),
    h("div.row", {}, approve, deny), out);
  action(approve, out, async () => {
    await api(`/api/v1/requests/${encodeURIComponent(r.id)}/approve`, { method: "POST", body: { comment: comment.value || null } });
    toast(`approved ${r.id}`);
    card.replaceWith(h("p.ok.card", {}, `Approved ${describe(r)} for ${r.user} (${r.id}).`));
  });
  action(deny, out, async () => {
    await api(`/api/v1/requests/${encodeURIComponent(r.id)}/deny`, { method: "POST", body: { reason: comment.value } });
    toast(`denied ${r.id}`);
    card.replaceWith(h("p.card", {}, `Denied ${r.id}.`));
  });
  return card;
}

// ---------------------------------------------------------------- timeline

const KINDS = ["logs", "spans", "metrics", "deploys", "access"];

async function pageTimeline(root) {
  root.append(h("h1", {}, "Timeline"));
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const since = h("select", { name: "since" }, ["15m", "1h", "6h", "24h", "7d"].map((s) => h("option", { value: s, selected: (q.get("since") || "1h") === s }, `last ${s}`)));
  const service = h("input", { name: "service", value: q.get("service") || "", size: 10 });
  const version = h("input", { name: "version", value: q.get("version") || "", size: 8 });
  const env = h("input", { name: "env", value: q.get("env") || "", size: 8 });
  const grep = h("input", { name: "grep", value: q.get("grep") || "", size: 12 });
  const kinds = KINDS.map((k) => h("input", { type: "checkbox", name: "kind", value: k, checked: !q.get("kinds") || q.get("kinds").split(",").includes(k) }));
  const go = h("button", { type: "submit" }, "Show");
  const form = h("form.card.stack", { "aria-label": "Timeline filters" },
    h("div.row", {}, field("Range", since), field("Service", service), field("Version", version), field("Environment", env), field("Text", grep), go),
    h("fieldset.row", { style: null }, h("legend.muted", {}, "Kinds"),
      kinds.map((c) => h("label", { for: c.id = `k-${c.value}` }, h("span", {}, c, " ", c.value)))));
  const chart = h("div.card.chart", { "aria-label": "Events and errors per version over time" });
  const list = h("ol.events", { "aria-label": "Events" });
  root.append(form, chart, h("div.card", {}, list));
  const dur = { "15m": 9e5, "1h": 36e5, "6h": 216e5, "24h": 864e5, "7d": 6048e5 };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    p.set("since", since.value);
    for (const [k, el] of [["service", service], ["version", version], ["env", env], ["grep", grep]]) if (el.value) p.set(k, el.value);
    p.set("kinds", kinds.filter((c) => c.checked).map((c) => c.value).join(","));
    location.hash = `#/timeline?${p}`;
  });
  const until = serverNow();
  const from = until - dur[since.value];
  const p = new URLSearchParams({ since_ms: from, until_ms: until, limit: 2000, kinds: kinds.filter((c) => c.checked).map((c) => c.value).join(",") || KINDS.join(",") });
  for (const [k, el] of [["service", service], ["version", version], ["env", env], ["grep", grep]]) if (el.value) p.set(k, el.value);
  const page = await api(`/api/v1/timeline?${p}`);
  const events = page.events || [];
  drawChart(chart, events, from * 1e6, until * 1e6);
  if (!events.length) list.append(h("li.muted", {}, "No events in this window."));
  for (const e of events) list.append(eventItem(e));
}

function eventItem(e) {
  const who = e.service ? `${e.service}${e.version ? `@${e.version}` : ""}` : "";
  const what = h("span.what", {}, who ? h("span.muted", {}, who, " ") : null, e.summary,
    e.duration_ns ? h("span.muted", {}, ` ${fmtNs(e.duration_ns)}`) : null);
  if (e.trace_id) what.append(" ", h("a", { href: `#/trace/${e.trace_id}` }, "trace"));
  const session = e.detail && e.detail.session;
  if (e.kind === "access" && session) what.append(" ", h("a", { href: `#/session/${session}` }, "replay"));
  return h("li", { "data-kind": e.kind },
    h("span.when", {}, fmtTime(Math.floor(e.time_ns / 1e6))),
    h("span", {}, h(`span.tag${e.kind === "deploy" ? ".deploy" : ""}${e.error ? ".error" : ""}`, {}, e.kind)),
    what);
}

/** Events and errors per version in time buckets, with deploy markers. */
function drawChart(box, events, fromNs, untilNs) {
  const W = 960, H = 180, L = 40, B = 22, T = 8, N = 48;
  const span = Math.max(1, untilNs - fromNs);
  const bucket = (t) => Math.min(N - 1, Math.max(0, Math.floor(((t - fromNs) / span) * N)));
  const series = new Map();
  const errors = new Array(N).fill(0);
  const deploys = [];
  for (const e of events) {
    if (e.kind === "deploy") { deploys.push(e); continue; }
    if (e.kind === "access") continue;
    const key = e.version ? `${e.service || "?"}@${e.version}` : (e.service || "other");
    if (!series.has(key)) series.set(key, new Array(N).fill(0));
    series.get(key)[bucket(e.time_ns)] += 1;
    if (e.error) errors[bucket(e.time_ns)] += 1;
  }
  const max = Math.max(1, ...[...series.values()].flat());
  const x = (i) => L + (i / N) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const palette = ["#2251d1", "#137a3b", "#9a5b00", "#7b3fc4", "#0b7a8a", "#b04a7a"];
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Events per version; ${deploys.length} deploy marker(s)` });
  g.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }), svg("text", { x: 2, y: T + 10 }, String(max)), svg("text", { x: 2, y: H - B }, "0"));
  let i = 0;
  const legend = h("div.row.muted");
  for (const [key, counts] of series) {
    const color = palette[i++ % palette.length];
    g.append(svg("polyline", { fill: "none", stroke: color, "stroke-width": 2, points: counts.map((c, j) => `${x(j + 0.5)},${y(c)}`).join(" ") }));
    const item = h("span", {}, `■ ${key}`);
    item.style.color = color; // CSSOM, which the CSP allows (style attributes it does not)
    legend.append(item);
  }
  if (errors.some((c) => c > 0)) {
    g.append(svg("polyline", { fill: "none", stroke: "#b3261e", "stroke-width": 2, "stroke-dasharray": "2 2", points: errors.map((c, j) => `${x(j + 0.5)},${y(c)}`).join(" ") }));
    legend.append(h("span.bad", {}, "┄ errors"));
  }
  for (const d of deploys) {
    const px = L + ((d.time_ns - fromNs) / span) * (W - L - 4);
    g.append(svg("line", { class: "deploy", x1: px, y1: T, x2: px, y2: H - B }, svg("title", {}, d.summary)),
      svg("text", { x: px + 3, y: T + 10 }, `⚑ ${d.version || d.summary}`));
  }
  g.append(svg("text", { x: L, y: H - 6 }, fmtTime(Math.floor(fromNs / 1e6))), svg("text", { x: W - 150, y: H - 6 }, fmtTime(Math.floor(untilNs / 1e6))));
  box.replaceChildren(g, legend);
}

async function pageTrace(root, [id]) {
  const t = await api(`/api/v1/traces/${encodeURIComponent(id)}`);
  root.append(h("h1", {}, "Trace ", h("span.mono", {}, t.trace_id)));
  if (!t.spans.length && !t.logs.length) { root.append(h("p.muted", {}, "Nothing stored for this trace.")); return; }
  const start = Math.min(...t.spans.map((s) => s.start_ns), ...t.logs.map((l) => l.time_ns));
  const end = Math.max(...t.spans.map((s) => s.end_ns), ...t.logs.map((l) => l.time_ns));
  const total = Math.max(1, end - start);
  const children = new Map();
  const ids = new Set(t.spans.map((s) => s.span_id));
  for (const s of t.spans) {
    const p = s.parent_span_id && ids.has(s.parent_span_id) ? s.parent_span_id : "";
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(s);
  }
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) || []).sort((a, b) => a.start_ns - b.start_ns)) {
      const left = ((s.start_ns - start) / total) * 100, width = Math.max(0.5, (s.duration_ns / total) * 100);
      // A scaled SVG places the bar: no style attributes (CSP).
      const track = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", width: "100%", height: 10, role: "img", "aria-label": `${fmtNs(s.duration_ns)} from +${fmtNs(s.start_ns - start)}` },
        svg("rect", { x: left, y: 0, width, height: 10, fill: s.status === "error" ? "#b3261e" : "#2251d1" }));
      rows.push(h("tr", {},
        h("td", {}, "\u00a0\u00a0".repeat(depth), s.name),
        h("td.track", {}, track),
        h("td", {}, fmtNs(s.duration_ns)),
        h("td", {}, `${s.service}@${s.version || "?"}`),
        h("td", {}, s.status === "error" ? h("span.bad", {}, `error ${s.status_message}`) : s.status)));
      for (const l of t.logs.filter((l) => l.span_id === s.span_id)) {
        rows.push(h("tr.muted", {}, h("td", { colspan: 5 }, "\u00a0\u00a0".repeat(depth + 1), `↳ +${fmtNs(l.time_ns - start)} ${l.severity_text || ""} ${l.body}`)));
      }
      walk(s.span_id, depth + 1);
    }
  };
  walk("", 0);
  root.append(h("div.card.scroll.waterfall", {}, h("table", {},
    h("thead", {}, h("tr", {}, ["Span", "Timeline", "Duration", "Version", "Status"].map((x) => h("th", {}, x)))),
    h("tbody", {}, rows))));
}

// ---------------------------------------------------------------- compare

async function pageCompare(root) {
  root.append(h("h1", {}, "Compare versions"));
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const service = h("input", { name: "service", value: q.get("service") || "", required: true });
  const from = h("input", { name: "from", value: q.get("from") || "", required: true, size: 10 });
  const to = h("input", { name: "to", value: q.get("to") || "", required: true, size: 10 });
  const since = h("select", { name: "since" }, ["1h", "24h", "7d"].map((s) => h("option", { value: s, selected: (q.get("since") || "24h") === s }, `last ${s}`)));
  const form = h("form.card.row", { "aria-label": "Versions to compare" }, field("Service", service), field("From version", from), field("To version", to), field("Range", since), h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/compare?${new URLSearchParams({ service: service.value, from: from.value, to: to.value, since: since.value })}`;
  });
  root.append(form);
  if (!service.value || !from.value || !to.value) return;
  const ms = { "1h": 36e5, "24h": 864e5, "7d": 6048e5 }[since.value];
  const c = await api(`/api/v1/compare?${new URLSearchParams({ service: service.value, from: from.value, to: to.value, since_ms: serverNow() - ms })}`);
  const pct = (r) => (r === null || r === undefined ? "-" : `${(r * 100).toFixed(2)}%`);
  const rows = [
    ["Requests", c.from.requests, c.to.requests],
    ["Error rate", pct(c.from.error_rate), pct(c.to.error_rate)],
    ["p50", fmtNs(c.from.p50_ns), fmtNs(c.to.p50_ns)],
    ["p95", fmtNs(c.from.p95_ns), fmtNs(c.to.p95_ns)],
    ["p99", fmtNs(c.from.p99_ns), fmtNs(c.to.p99_ns)],
  ];
  root.append(h("div.card.scroll", {}, h("table", { "aria-label": "Side by side" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, c.from.version), h("th", {}, c.to.version))),
    h("tbody", {}, rows.map(([k, a, b]) => h("tr", {}, h("th", {}, k), h("td", {}, a), h("td", {}, b)))))));
  const chart = h("div.card.chart", {}, h("h2", {}, "Latency distribution"));
  chart.append(histogram([c.from, c.to]));
  root.append(chart);
  root.append(h("div.card", {}, h("h2", {}, `Errors only in ${c.to.version}`),
    c.new_errors.length ? h("ol", {}, c.new_errors.map((m) => h("li", {}, `${m.count}× ${m.message}`))) : h("p.muted", {}, "None.")));
}

function histogram(sides) {
  const bounds = [...new Set(sides.flatMap((s) => (s.histogram || []).map(([b]) => b)))].sort((a, b) => a - b);
  const W = 960, H = 200, L = 40, B = 30, T = 8;
  const share = sides.map((s) => {
    const total = Math.max(1, (s.histogram || []).reduce((n, [, c]) => n + c, 0));
    const m = new Map((s.histogram || []).map(([b, c]) => [b, c / total]));
    return bounds.map((b) => m.get(b) || 0);
  });
  const max = Math.max(0.01, ...share.flat());
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Share of requests per latency bucket, ${sides.map((s) => s.version).join(" vs ")}` });
  const bw = (W - L) / Math.max(1, bounds.length);
  const colors = ["#2251d1", "#b04a7a"];
  share.forEach((vals, si) => vals.forEach((v, i) => {
    const hgt = (v / max) * (H - T - B);
    g.append(svg("rect", { x: L + i * bw + si * (bw / 2), y: H - B - hgt, width: Math.max(1, bw / 2 - 1), height: hgt, fill: colors[si] }, svg("title", {}, `${sides[si].version} ≤ ${fmtNs(bounds[i])}: ${(v * 100).toFixed(1)}%`)));
  }));
  bounds.forEach((b, i) => { if (i % Math.ceil(bounds.length / 8) === 0) g.append(svg("text", { x: L + i * bw, y: H - 10 }, b > 9e18 ? "more" : `≤${fmtNs(b)}`)); });
  g.append(svg("text", { x: 2, y: T + 10 }, `${(max * 100).toFixed(0)}%`));
  const legend = h("div.row", {}, sides.map((s, i) => {
    const item = h("span", {}, `▮ ${s.version}`);
    item.style.color = colors[i];
    return item;
  }));
  return h("div", {}, g, legend);
}

// ---------------------------------------------------------------- sessions and replay

async function pageSessions(root) {
  root.append(h("h1", {}, "Sessions"));
  const list = await api("/api/v1/sessions?limit=100");
  root.append(list.length ? h("div.card.scroll", {}, h("table", {},
    h("thead", {}, h("tr", {}, ["Session", "Resource", "Access", "Started", "Ended", "Statements", "Refused"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.map((s) => h("tr", {},
      h("td", {}, h("a.mono", { href: `#/session/${s.id}` }, s.id)), h("td", {}, s.resource), h("td", {}, s.break_glass ? h("span.tag.error", {}, `${s.access} (break-glass)`) : s.access),
      h("td", {}, fmtTime(s.started_ms)), h("td", {}, s.ended_ms ? fmtTime(s.ended_ms) : h("span.ok", {}, "open")),
      h("td", {}, s.statement_count), h("td", {}, s.refused_count)))))) : h("p.muted", {}, "No sessions yet."));
}

async function pageSession(root, [id]) {
  root.append(h("h1", {}, "Session ", h("span.mono", {}, id)));
  const statements = await api(`/api/v1/sessions/${encodeURIComponent(id)}/statements`);
  if (!statements.length) root.append(h("p.muted", {}, "No statements in this session."));
  for (const s of statements) {
    const runs = s.runs || [];
    const card = h("article.card", { "aria-label": `Statement ${s.seq}` },
      h("div.row", {}, h("strong", {}, `#${s.seq}`), h("span.muted", {}, fmtTime(s.at_ms)),
        h(`span.tag${s.decision !== "allowed" ? ".refused" : ""}`, {}, `${s.decision} (${s.rule})`),
        runs.map((r) => h("span.muted", {}, `${(r.tags || []).join(", ")} ${r.rows} row(s) in ${(r.duration_us / 1000).toFixed(1)} ms${r.error ? ` — ${r.error}` : ""}`))),
      h("pre", {}, s.text));
    for (const r of runs) {
      if (r.columns && r.columns.length) {
        card.append(h("div.scroll", {}, h("table", { "aria-label": `First rows of statement ${s.seq}` },
          h("thead", {}, h("tr", {}, r.columns.map((c) => h("th", {}, c)))),
          h("tbody", {}, (r.first_rows || []).map((row) => h("tr", {}, row.map((v) => h("td", {}, v === null ? h("span.muted", {}, "NULL") : v))))))));
      }
    }
    root.append(card);
  }
}

// ---------------------------------------------------------------- audit

async function pageAudit(root) {
  root.append(h("h1", {}, "Audit"));
  const verifyOut = h("div");
  const verify = h("button.secondary", { type: "button" }, "Verify the log");
  action(verify, verifyOut, async () => {
    const v = await api("/api/v1/audit/verify");
    verifyOut.replaceChildren(h("dl.kv", {},
      h("dt", {}, "Result"), h("dd", { class: v.ok ? "ok" : "bad" }, v.ok ? "intact" : `PROBLEM: ${v.problem && v.problem.text}`),
      h("dt", {}, "Records"), h("dd", {}, `${v.records} (seq ${v.first_seq}–${v.last_seq})`),
      h("dt", {}, "Last checkpoint"), h("dd", {}, v.last_checkpoint ? `seq ${v.last_checkpoint.seq} at ${fmtTime(v.last_checkpoint.ts)}, hash ${v.last_checkpoint.hash.slice(0, 16)}…` : "none yet"),
      h("dt", {}, "Unsealed records"), h("dd", {}, String(v.unsealed)),
      h("dt", {}, "Signing key"), h("dd.mono", {}, v.key)));
  });
  root.append(h("section.card", { "aria-label": "Verify" }, h("div.row", {}, verify, h("span.muted", {}, "Checks every record's hash chain and the signed checkpoints (auditors).")), verifyOut));
  const grep = h("input", { name: "grep", size: 18 });
  const kind = h("input", { name: "kind", size: 14, placeholder: "statement,access" });
  const since = h("select", { name: "since" }, ["1h", "24h", "7d", "30d"].map((s) => h("option", { value: s }, `last ${s}`)));
  const out = h("div");
  const search = h("button", { type: "submit" }, "Search");
  const form = h("form.card.row", { "aria-label": "Search the audit log" }, field("Text", grep), field("Kinds", kind), field("Range", since), search);
  root.append(form, out);
  const run = async () => {
    const ms = { "1h": 36e5, "24h": 864e5, "7d": 6048e5, "30d": 2592e6 }[since.value];
    const p = new URLSearchParams({ since_ms: serverNow() - ms, limit: 200 });
    if (grep.value) p.set("grep", grep.value);
    if (kind.value) p.set("kind", kind.value);
    const r = await api(`/api/v1/audit?${p}`);
    const records = r.records || [];
    out.replaceChildren(records.length ? h("div.card.scroll", {}, h("table", {},
      h("thead", {}, h("tr", {}, ["Seq", "Time", "Kind", "Record"].map((t) => h("th", {}, t)))),
      h("tbody", {}, records.map((e) => {
        const { seq, ts, kind: k, prev, ...rest } = e;
        void prev;
        const text = rest.text || rest.summary || JSON.stringify(rest);
        return h("tr", {}, h("td", {}, seq), h("td", {}, fmtTime(ts)), h("td", {}, k), h("td.mono", {}, text.length > 300 ? `${text.slice(0, 300)}…` : text));
      })))) : h("p.muted", {}, "No records match."));
  };
  form.addEventListener("submit", async (ev) => { ev.preventDefault(); try { await run(); } catch (e) { out.replaceChildren(errorBox(e)); } });
  await run();
}

// ---------------------------------------------------------------- runbooks

async function pageRunbooks(root) {
  root.append(h("h1", {}, "Runbooks"));
  const { runbooks } = await api("/api/v1/runbooks");
  if (!runbooks.length) { root.append(h("p.muted", {}, "No runbooks you may run.")); return; }
  for (const rb of runbooks) root.append(runbookCard(rb));
}

function runbookCard(rb) {
  const inputs = rb.params.map((p) => {
    let control;
    if (p.type === "enum") control = h("select", { name: p.name }, p.values.map((v) => h("option", { value: v, selected: p.default === v }, v)));
    else if (p.type === "bool") control = h("select", { name: p.name }, h("option", { value: "true", selected: p.default === true }, "true"), h("option", { value: "false", selected: p.default !== true }, "false"));
    else control = h("input", { name: p.name, type: p.type === "int" ? "number" : "text", min: p.min, max: p.max, value: p.default ?? "", required: p.required, pattern: p.pattern || null, maxlength: p.max_len });
    const hint = [p.description, p.pattern ? `matches ${p.pattern}` : null].filter(Boolean).join("; ");
    return { p, control, label: field(`${p.name}${hint ? ` — ${hint}` : ""}`, control) };
  });
  const reason = h("input", { name: "reason", placeholder: "INC-42", required: rb.approvals > 0 });
  const out = h("div");
  const params = () => Object.fromEntries(inputs.filter((i) => i.control.value !== "").map((i) => [i.p.name, i.control.value]));
  const dry = h("button.secondary", { type: "button" }, "Dry run");
  const go = h("button", { type: "button" }, rb.approvals > 0 ? "Request a run" : "Run");
  action(dry, out, async () => {
    const r = await api(`/api/v1/runbooks/${encodeURIComponent(rb.name)}/runs`, { method: "POST", body: { params: params(), reason: reason.value || null, dry_run: true } });
    out.replaceChildren(h("pre", {}, JSON.stringify(r.plan.steps, null, 2)));
  });
  action(go, out, async () => {
    const res = await api(`/api/v1/runbooks/${encodeURIComponent(rb.name)}/runs`, { method: "POST", body: { params: params(), reason: reason.value || null }, raw: true });
    if (!(res.headers.get("Content-Type") || "").includes("ndjson")) {
      const r = await res.json();
      out.replaceChildren(h("p.ok", {}, `Request ${r.id} filed; approvers: ${(r.approvers || []).join(", ")}.`));
      return;
    }
    await streamRun(res, out);
  });
  return h("article.card", { "aria-label": `Runbook ${rb.name}` },
    h("h2", {}, rb.name), h("p", {}, rb.description),
    rb.approvals > 0 ? h("p.warn", {}, `Needs ${rb.approvals} approval(s) from ${rb.approvers.join(" or ")}.`) : null,
    h("ol.muted", {}, rb.steps.map((s) => h("li", {}, `${s.name} (${s.kind} ${s.target})`))),
    h("div.stack", {}, inputs.map((i) => i.label), field("Reason", reason)),
    h("div.row", {}, dry, go), out);
}

async function streamRun(res, out) {
  const log = h("pre.output", { "aria-live": "polite", "aria-label": "Run output" });
  const status = h("p");
  out.replaceChildren(status, log);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, at); buf = buf.slice(at + 1);
      let e; try { e = JSON.parse(line); } catch (_) { continue; }
      if (e.event === "run_started") status.replaceChildren(safe(`Run ${e.run}: ${e.steps} step(s)…`));
      else if (e.event === "step_started") log.append(safe(`▶ step ${e.index + 1} ${e.name}: ${e.summary}\n`));
      else if (e.event === "output") log.append(safe(e.text));
      else if (e.event === "step_finished") log.append(safe(`${e.status === "ok" ? "✔" : e.status === "skipped" ? "-" : "✘"} step ${e.index + 1} ${e.name}: ${e.status}${e.error ? `: ${e.error}` : ""}\n`));
      else if (e.event === "finished") { status.textContent = `Run ${e.status} in ${e.duration_ms} ms`; status.className = e.status === "ok" ? "ok" : "bad"; }
      log.scrollTop = log.scrollHeight;
    }
  }
}

// ---------------------------------------------------------------- start

$("#signout").addEventListener("click", () => { auth.clear(); me = null; location.hash = ""; route(); });
window.addEventListener("hashchange", route);
route();
