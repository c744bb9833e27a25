// The enomalism dashboard: one page, routed by the URL's fragment, over the REST API and the
// events stream (docs/dashboard.md). Everything shown comes from /rest/; nothing is built
// with innerHTML (names are user input): elements are made with h() and text nodes.

const main = document.getElementById("main");
const PAGE = 50;  // machines per page: the DOM holds at most this many rows
const DEAD_MS = 30000;  // no byte from the stream for this long (heartbeat 15 s): reconnect
let session = null;  // {username, uuid, is_admin, csrf_token}
let current = null;  // the page shown: {onEvent, refresh, destroy}
const names = { hosts: new Map(), users: new Map() };

// -- small helpers ---------------------------------------------------------------------------

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class ApiError extends Error {
  constructor(body, status) {
    super(`${body.message || "error"} (errno ${body.errno ?? status})`);
    this.errno = body.errno ?? status;
    this.status = status;
    this.body = body;
  }
}

// A GET the page will make asked for before it knows it may (the first list page, beside
// GET /rest/session/): taken once by the api() call for the same URL, dropped otherwise.
// The server names the first ones of a logged-in visit in the page's head (preload links,
// asked for while the browser still loads this script); the fetch here takes their answers.
const early = new Map();

function earlyGet(url) {
  if (early.has(url)) return;
  early.set(url, fetch(url, { headers: { Accept: "application/json", "X-Requested-With": "enomalism" },
                              credentials: "same-origin" }).catch(() => null));
}

function apiUrl(path, query) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== "" && v !== null && v !== undefined) url.searchParams.append(k, v);
  }
  return url;
}

export async function api(method, path, { body, query } = {}) {
  const url = apiUrl(path, query);
  const asked = method === "GET" ? early.get(url.href) : undefined;
  if (asked) {
    early.delete(url.href);
    const r0 = await asked;
    const data = r0 && r0.ok ? await r0.json().catch(() => null) : null;
    if (data && !data.errno) return data;  // anything else: asked again, as usual
  }
  const headers = { Accept: "application/json", "X-Requested-With": "enomalism" };
  if (method !== "GET") headers["X-CSRF-Token"] = session ? session.csrf_token : "";
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  let data;
  try { data = await r.json(); } catch { data = { errno: r.status, message: r.statusText }; }
  if (!r.ok || (data.errno && data.errno !== 0)) {
    if (r.status === 401 && path !== "/rest/session/") loggedOut();
    throw new ApiError(data, r.status);
  }
  return data;
}

export function errorText(e) {
  return e instanceof ApiError ? `${e.body.message} (errno ${e.errno})` : String(e.message || e);
}

/** An element that shows an error as the API words it (role=alert: read out at once). */
function errorBox() {
  const box = h("p", { class: "error", role: "alert", hidden: true });
  box.show = (e) => { box.textContent = e ? errorText(e) : ""; box.hidden = !e; };
  return box;
}

function stateBadge(state) {
  return h("span", { class: `state state-${state}`, dataset: { state } }, state);
}

function mib(kib) { return kib ? `${Math.round(kib / 1024)} MiB` : "–"; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
function hostName(uuid) { return names.hosts.get(uuid) || (uuid ? uuid.slice(0, 8) : "–"); }
function userName(uuid) { return names.users.get(uuid) || (uuid ? uuid.slice(0, 8) : "–"); }

/** A table's box, which scrolls sideways on a narrow screen: a region that takes the focus,
 * so a keyboard can scroll it too. */
function scrollBox(label, tableEl) {
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label },
           tableEl);
}

function field(label, input) {
  return h("label", {}, label, input);
}

function progress(value, label) {
  return h("progress", { value: value ?? 0, max: 100, "aria-label": label });
}

function heading(text) {
  document.title = `${text} · enomalism`;
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

function hashQuery() {
  return new URLSearchParams((location.hash.split("?")[1]) || "");
}

async function loadNames() {
  const [hosts, users] = await Promise.all([
    api("GET", "/rest/hosts/").catch(() => null),  // a user may not read hosts
    api("GET", "/rest/users/list/").catch(() => null)]);  // non-administrators
  for (const m of hosts ? hosts.hosts : []) names.hosts.set(m.uuid, m.name);
  for (const [name, id] of users ? users.users : []) names.users.set(id, name);
  if (session) names.users.set(session.uuid, session.username);
}
// The first page does not wait for the names: the machine list asks for its rows meanwhile.
let namesReady = Promise.resolve();

/** uPlot, loaded when a page first draws a graph (the machine list needs none). */
let uplotLoading = null;
function uplotReady() {
  if (window.uPlot) return Promise.resolve();
  uplotLoading = uplotLoading || new Promise((resolve) => {
    document.head.append(h("link", { rel: "stylesheet", href: "/ui/static/vendor/uplot/dist/uPlot.min.css" }));
    const el = h("script", { src: "/ui/static/vendor/uplot/dist/uPlot.iife.min.js" });
    el.addEventListener("load", resolve);
    el.addEventListener("error", resolve);  // the page says there are no graphs
    document.head.append(el);
  });
  return uplotLoading;
}

// -- the events stream: one per tab, resumed with Last-Event-ID ------------------------------

class Stream {
  constructor() { this.last = null; this.running = false; this.seen = new Set(); this.at = 0; }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() { this.running = false; if (this.ctrl) this.ctrl.abort(); }

  /** After a sleep or a network change: if nothing came for a while, reconnect now. */
  check() { if (this.running && Date.now() - this.at > DEAD_MS && this.ctrl) this.ctrl.abort(); }

  async loop() {
    let delay = 1000;
    while (this.running) {
      this.ctrl = new AbortController();
      let watchdog = null;
      const arm = () => {
        this.at = Date.now();
        clearTimeout(watchdog);
        watchdog = setTimeout(() => this.ctrl.abort(), DEAD_MS);
      };
      try {
        const headers = { Accept: "text/event-stream", "X-Requested-With": "enomalism" };
        if (this.last) headers["Last-Event-ID"] = this.last;
        arm();
        const r = await fetch("/rest/events/", { headers, signal: this.ctrl.signal,
                                                 credentials: "same-origin", cache: "no-store" });
        if (r.status === 401) { this.running = false; loggedOut(); return; }
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        streamStatus(null);
        delay = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            this.block(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch { /* aborted or broken: reconnect below */ }
      clearTimeout(watchdog);
      if (!this.running) return;
      streamStatus("Live updates interrupted; reconnecting…");
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }

  block(text) {
    let id = null, type = "message", data = "";
    for (const line of text.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const key = at < 0 ? line : line.slice(0, at);
      let value = at < 0 ? "" : line.slice(at + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (key === "id") id = value;
      else if (key === "event") type = value;
      else if (key === "data") data += (data ? "\n" : "") + value;
    }
    if (id) this.last = id;
    if (!data) return;
    let event;
    try { event = JSON.parse(data); } catch { return; }
    if (event.id !== null && event.id !== undefined) {  // at least once: drop repeats
      if (this.seen.has(event.id)) return;
      this.seen.add(event.id);
      if (this.seen.size > 4000) this.seen = new Set([...this.seen].slice(-1000));
    }
    if (type === "resync") { if (current && current.refresh) current.refresh(); return; }
    if (current && current.onEvent) {
      try { current.onEvent(type, event.object || {}, event); } catch (e) { console.error(e); }
    }
    document.dispatchEvent(new CustomEvent("enomalism-event", { detail: { type, event } }));
  }
}

const stream = new Stream();
window.enomalismStream = stream;  // the browser tests read its state
document.addEventListener("visibilitychange", () => { if (!document.hidden) stream.check(); });
window.addEventListener("online", () => stream.check());
setInterval(() => stream.check(), 5000);  // timers stop in a sleeping laptop: catch up after

function streamStatus(text) {
  const el = document.getElementById("stream");
  el.textContent = text || "";
  el.hidden = !text;
}

// -- login -----------------------------------------------------------------------------------

function loggedOut() {
  session = null;
  early.clear();
  stream.stop();
  document.getElementById("nav").hidden = true;
  loginPage();
}

function loginPage() {
  if (current && current.destroy) current.destroy();
  current = null;
  const err = errorBox();
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", type: "password",
                            autocomplete: "current-password", required: true });
  const form = h("form", { id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    err.show(null);
    try {
      session = await api("POST", "/rest/session/",
                          { body: { username: user.value, password: pass.value } });
      await started();
    } catch (e) { err.show(e); pass.focus(); }
  } }, field("User name", user), field("Password", pass), err,
  h("button", { type: "submit" }, "Log in"));
  main.replaceChildren(h("article", { class: "login" }, heading("Log in"), form));
  user.focus();
}

/** The stream starts where the list's rows asked for early were read (the answer's
 * X-Last-Event-ID): a change made between that read and the stream's start is not lost. */
async function streamFromListRead() {
  const url = [...early.keys()].find((u) => new URL(u).pathname === "/rest/machines/");
  const r = url ? await early.get(url) : null;
  const id = r && r.ok ? r.headers.get("X-Last-Event-ID") : null;
  if (id && !stream.last) stream.last = id;
}

async function started() {
  document.getElementById("nav").hidden = false;
  document.body.classList.toggle("is-admin", !!session.is_admin);
  for (const el of document.querySelectorAll(".admin-only")) el.hidden = !session.is_admin;
  document.getElementById("whoami").textContent = session.username;
  namesReady = loadNames();
  await streamFromListRead();
  stream.start();
  if (!location.hash || location.hash === "#/login") location.hash = "#/machines";
  else route();
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/rest/session/"); } catch { /* gone already */ }
  location.hash = "#/login";
  loggedOut();
});

// -- theme -----------------------------------------------------------------------------------

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem("theme"));
document.getElementById("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme === "dark" ||
    (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
  const next = dark ? "light" : "dark";
  localStorage.setItem("theme", next);
  applyTheme(next);
});

// -- machines --------------------------------------------------------------------------------

const BULK = { create: "Start", suspend: "Suspend", resume: "Resume", shutdown: "Shut down",
               reboot: "Reboot", poweroff: "Power off" };
const STATES = ["running", "paused", "shutoff", "crashed", "missing", "unknown"];

/** What a row of the machine list shows (its XML and leases are not read for the list). */
const ROW_FIELDS = "name,state,host,owner,vcpus,memory_kib,clusters";

/** The list's filters and offset from the URL, and the query of its page of rows. */
function machinesQuery() {
  const q = hashQuery();
  const filters = { search: q.get("search") || "", state: q.get("state") || "",
                    host: q.get("host") || "", cluster: q.get("cluster") || "",
                    owner: q.get("owner") || "" };
  const offset = Math.max(0, parseInt(q.get("offset") || "0", 10) || 0);
  return { filters, offset, query: { detail: 1, fields: ROW_FIELDS, kind: "vm", ...filters,
                                     limit: PAGE, offset } };
}

function machinesPage() {
  const { filters, offset, query } = machinesQuery();
  const err = errorBox();
  const tbody = h("tbody");
  const count = h("span", { role: "status" });
  const results = h("ul", { id: "bulk-results", "aria-live": "polite" });
  let reloadTimer = null;

  const search = h("input", { type: "search", name: "search", value: filters.search });
  const state = h("select", { name: "state" }, h("option", { value: "" }, "any"),
                  STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s)));
  const host = h("select", { name: "host" }, h("option", { value: "" }, "any"));
  const cluster = h("select", { name: "cluster" }, h("option", { value: "" }, "any"),
                    filters.cluster ? h("option", { value: filters.cluster, selected: true },
                                        filters.cluster) : "");
  const owner = h("input", { name: "owner", value: filters.owner, placeholder: "user name",
                             list: "owner-names" });
  const ownerNames = h("datalist", { id: "owner-names" });
  namesReady.then(() => {
    host.append(...[...names.hosts].map(([id, n]) => h("option", { value: id,
                                                                  selected: id === filters.host }, n)));
    ownerNames.append(...[...names.users.values()].map((n) => h("option", { value: n })));
  });
  // the clusters this user may read, for the filter: asked once the rows are shown, so that
  // the first page of rows does not share the server with it
  let clustersAsked = false;
  const loadClusters = () => {
    if (clustersAsked) return;
    clustersAsked = true;
    api("GET", "/rest/cluster/list/").then((a) => {
      const chosen = cluster.value;
      cluster.replaceChildren(h("option", { value: "" }, "any"), ...a.clusters.map((c) =>
        h("option", { value: c.uuid, selected: c.uuid === chosen || c.name === chosen }, c.name)));
    }).catch(() => {});
  };
  const filterForm = h("form", { class: "filters", role: "search", onsubmit: (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of [["search", search], ["state", state], ["host", host],
                           ["cluster", cluster], ["owner", owner]]) {
      if (el.value) p.set(k, el.value);
    }
    location.hash = `#/machines?${p}`;
  } }, field("Name contains", search), field("State", state), field("Host", host),
  field("Cluster", cluster), field("Owner", owner), ownerNames,
  h("button", { type: "submit" }, "Filter"));

  const all = h("input", { type: "checkbox", "aria-label": "Select all shown", onchange: () => {
    for (const c of tbody.querySelectorAll("input[type=checkbox]")) c.checked = all.checked;
    offerBulk();
  } });
  // The bulk bar offers only the actions this user may do now on at least one selected machine
  // (the API's answer per machine, GET /rest/permissions/<UUID>/mine/, kept while it holds);
  // applying acts on each selected machine and shows each one's result, a refusal as the API
  // words it.
  const permitted = new Map();  // uuid -> Promise of the actions this user may do on it now
  let bulkTurn = 0;
  const bulkAction = h("select", { name: "action", id: "bulk-action",
                                   "aria-label": "Action for the selected", disabled: true });
  const apply = h("button", { type: "submit", class: "secondary", disabled: true },
                  "Apply to selected");
  const bulkHint = h("p", { id: "bulk-hint", role: "status" }, "Select machines to act on them.");
  const selected = () => [...tbody.querySelectorAll("input[type=checkbox]:checked")]
    .map((c) => c.closest("tr"));
  const allowed = (uuid) => {
    if (!permitted.has(uuid)) {
      permitted.set(uuid, api("GET", `/rest/permissions/${uuid}/mine/`)
        .then((m) => m.actions || [], () => []));
    }
    return permitted.get(uuid);
  };
  async function offerBulk() {
    const turn = ++bulkTurn;
    const rows = selected();
    const sets = await Promise.all(rows.map((r) => allowed(r.dataset.uuid)));
    if (turn !== bulkTurn) return;
    const may = new Set(sets.flat());
    const chosen = bulkAction.value;
    const offered = Object.entries(BULK).filter(([a]) => may.has(a));
    bulkAction.replaceChildren(...offered.map(([a, l]) =>
      h("option", { value: a, selected: a === chosen }, l)));
    bulkAction.disabled = apply.disabled = !offered.length;
    bulkHint.textContent = !rows.length ? "Select machines to act on them."
      : offered.length ? `${rows.length} selected.`
        : "You may do none of these actions on the selected machines now.";
  }
  tbody.addEventListener("change", offerBulk);
  const bulk = h("form", { class: "actions", id: "bulk", onsubmit: async (ev) => {
    ev.preventDefault();
    const action = bulkAction.value;
    if (!action) return;
    results.replaceChildren();
    await Promise.all(selected().map(async (row) => {
      const item = h("li", { dataset: { uuid: row.dataset.uuid } }, `${row.dataset.name}: …`);
      results.append(item);
      try {
        const a = await api("POST", `/rest/machine/${row.dataset.uuid}/actions/${action}/`);
        item.textContent = `${row.dataset.name}: ${a.message || "done"}`;
      } catch (e) { item.textContent = `${row.dataset.name}: ${errorText(e)}`; item.className = "error"; }
      permitted.delete(row.dataset.uuid);
    }));
    offerBulk();
  } }, bulkAction, apply, bulkHint);

  const prev = h("button", { type: "button", class: "secondary", disabled: offset === 0,
                             onclick: () => page(Math.max(0, offset - PAGE)) }, "Previous");
  const next = h("button", { type: "button", class: "secondary",
                             onclick: () => page(offset + PAGE) }, "Next");
  function page(o) {
    const p = hashQuery();
    p.set("offset", o);
    location.hash = `#/machines?${p}`;
  }

  function row(m) {
    return h("tr", { dataset: { uuid: m.uuid, name: m.name } },
      h("td", {}, h("input", { type: "checkbox", "aria-label": `Select ${m.name}` })),
      h("th", { scope: "row", class: "name" }, h("a", { href: `#/machine/${m.uuid}` }, m.name)),
      h("td", { class: "state-cell" }, stateBadge(m.state)),
      h("td", { class: "hide-narrow" }, hostName(m.host)),
      h("td", { class: "hide-narrow" }, userName(m.owner)),
      h("td", { class: "hide-narrow" }, m.vcpus ?? "–"),
      h("td", { class: "hide-narrow" }, mib(m.memory_kib)),
      h("td", { class: "hide-narrow cpu-use" }, "–"),
      h("td", { class: "hide-narrow mem-use" }, "–"),
      h("td", { class: "hide-narrow" }, (m.clusters || []).length));
  }

  /** CPU and memory use of the rows shown that run: one request for the page's rows. */
  async function loadUse() {
    const running = [...tbody.querySelectorAll("tr")].filter((tr) =>
      ["running", "blocked"].includes(tr.querySelector(".state")?.dataset.state));
    if (!running.length || document.hidden) return;
    try {
      const a = await api("GET", "/rest/stats/", { query: {
        machines: running.map((tr) => tr.dataset.uuid).join(",") } });
      for (const tr of running) {
        const p = a.stats[tr.dataset.uuid];
        tr.querySelector(".cpu-use").textContent = p && p.cpu !== null ? `${p.cpu.toFixed(0)} %` : "–";
        tr.querySelector(".mem-use").textContent = p && p.mem_used !== null
          ? `${Math.round(p.mem_used / 1048576)} MiB` : "–";
      }
    } catch { /* the columns stay as they were */ }
  }

  async function load() {
    try {
      const [a] = await Promise.all([api("GET", "/rest/machines/", { query }), namesReady]);
      tbody.replaceChildren(...a.machine_objs.map(row));
      count.textContent = a.total ? `${offset + 1}–${offset + a.machine_objs.length} of ${a.total}`
        : "no machines match";
      next.disabled = offset + PAGE >= a.total;
      err.show(null);
      all.checked = false;
      offerBulk();
      loadUse();
    } catch (e) { err.show(e); }
    loadClusters();
  }

  function find(uuid) { return tbody.querySelector(`tr[data-uuid="${CSS.escape(uuid)}"]`); }

  function onEvent(type, o) {
    if (o.kind && o.kind !== "vm") return;
    const tr = o.uuid && find(o.uuid);
    if (o.uuid) permitted.delete(o.uuid);  // what may be done on it now changes with it
    if (type === "machine.state" && tr) {
      tr.querySelector(".state-cell").replaceChildren(stateBadge(o.state));
      if (tr.querySelector("input:checked")) offerBulk();
      tr.classList.remove("row-flash");
      void tr.offsetWidth;
      tr.classList.add("row-flash");
    } else if (type === "machine.renamed" && tr) {
      tr.dataset.name = o.name;
      tr.querySelector(".name a").textContent = o.name;
    } else if (type === "machine.deleted" && tr) {
      tr.remove();
    } else if (type === "machine.created" || type === "machine.moved") {
      clearTimeout(reloadTimer);  // where a new machine goes in the sorted page: ask again
      reloadTimer = setTimeout(load, 500);
    }
  }

  main.replaceChildren(h("section", {}, heading("Machines"), filterForm, err,
    scrollBox("Machines", h("table", { id: "machines", class: "striped" },
      h("caption", {}, count),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all),
        ["Name", "State"].map((t) => h("th", { scope: "col" }, t)),
        ["Host", "Owner", "vCPUs", "Memory", "CPU use", "Memory use", "Clusters"].map(
          (t) => h("th", { scope: "col", class: "hide-narrow" }, t)))),
      tbody)),
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, next),
    h("h2", {}, "Selected machines"), bulk, results));
  load();
  const useTimer = setInterval(loadUse, 15000);
  return { onEvent, refresh: load, destroy: () => { clearTimeout(reloadTimer); clearInterval(useTimer); } };
}

// -- one machine -----------------------------------------------------------------------------

const ACTIONS = { create: "Start", resume: "Resume", suspend: "Suspend", shutdown: "Shut down",
                  reboot: "Reboot", poweroff: "Power off", manage: "Manage",
                  totaldelete: "Delete" };
const METRICS = [
  ["cpu", "CPU %", [["cpu", "CPU %"]]],
  ["mem", "Memory (MiB)", [["mem_used", "used"], ["mem_total", "total"]]],
  ["disk", "Disk (KiB/s)", [["disk_read", "read"], ["disk_write", "write"]]],
  ["net", "Network (KiB/s)", [["net_rx", "received"], ["net_tx", "sent"]]],
];

function devices(xml) {
  const doc = new DOMParser().parseFromString(xml || "<domain/>", "application/xml");
  const disks = [...doc.querySelectorAll("devices > disk")].map((d) => {
    const src = d.querySelector("source");
    return [d.getAttribute("device"), d.querySelector("target")?.getAttribute("dev"),
            src && (src.getAttribute("file") || src.getAttribute("volume") ||
                    src.getAttribute("dev") || "")];
  });
  const nics = [...doc.querySelectorAll("devices > interface")].map((i) => {
    const src = i.querySelector("source");
    return [i.getAttribute("type"), i.querySelector("mac")?.getAttribute("address"),
            src && (src.getAttribute("network") || src.getAttribute("bridge") || "")];
  });
  return { disks, nics };
}

function table(id, cols, rows, empty = "none") {
  if (!rows.length) return h("p", { id }, empty);
  return scrollBox(id.replace(/-/g, " "), h("table", { id },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "–")))))));
}

function machinePage(uuid) {
  const err = errorBox();
  const actErr = errorBox();
  const title = heading("Machine");
  const facts = h("dl", { id: "facts" });
  const actions = h("div", { class: "actions", id: "actions", role: "group",
                             "aria-label": "Actions" });
  const consoles = h("p", { class: "actions" });
  const exportBox = h("div");
  const devs = h("div");
  const txs = h("div");
  const perms = h("div");
  const audit = h("div");
  const graphs = h("div", { class: "graphs" });
  let plots = [];
  let statsTimer = null;
  let machine = null;
  let mine = { permissions: [], actions: [] };  // what this user may do here (the API says)

  async function load() {
    try {
      const [a, m] = await Promise.all([api("GET", `/rest/machine/${uuid}/`),
                                        api("GET", `/rest/permissions/${uuid}/mine/`)]);
      machine = a.machine_obj;
      mine = m;
      render(a);
      err.show(null);
    } catch (e) { err.show(e); }
  }

  function render(a) {
    const m = a.machine_obj;
    title.textContent = m.name;
    document.title = `${m.name} · enomalism`;
    const leases = (a.info && a.info.leases) || [];
    facts.replaceChildren(
      h("dt", {}, "State"), h("dd", { id: "machine-state" }, stateBadge(m.state)),
      h("dt", {}, "Host"), h("dd", {}, hostName(m.host)),
      h("dt", {}, "Owner"), h("dd", {}, userName(m.owner)),
      h("dt", {}, "vCPUs · memory"), h("dd", {}, `${m.vcpus ?? "–"} · ${mib(m.memory_kib)}`),
      h("dt", {}, "Addresses"), h("dd", {}, leases.map((l) => l.address || l.ip).join(", ") || m.address || "–"),
      h("dt", {}, "Clusters"), h("dd", {}, (m.clusters || []).join(", ") || "–"),
      ...(m.locked_by ? [h("dt", {}, "Locked by"),
                         h("dd", {}, h("a", { href: `#/transaction/${m.locked_by}` }, m.locked_by))] : []));
    // only the actions valid now that this user may do: the others are not offered at all
    actions.replaceChildren(...mine.actions.filter((x) => x in ACTIONS).map((x) =>
      h("button", { type: "button", class: x === "totaldelete" ? "secondary" : "",
                    dataset: { action: x }, onclick: () => act(x) }, ACTIONS[x])));
    actions.hidden = !actions.children.length;
    const running = (m.state === "running" || m.state === "paused") &&
      mine.permissions.includes("control");  // a console needs control
    consoles.replaceChildren(...(running ? [
      h("a", { role: "button", class: "outline", href: `#/console/${uuid}/serial` }, "Serial console"),
      h("a", { role: "button", class: "outline", href: `#/console/${uuid}/vnc` }, "Screen (VNC)")] : []));
    exportBox.replaceChildren(...(mine.actions.includes("package") ? [exportForm()] : []));
    const d = devices(m.xmldesc);
    devs.replaceChildren(h("h2", {}, "Disks"), table("disks", ["Device", "Target", "Source"], d.disks),
      h("h2", {}, "Interfaces"), table("nics", ["Type", "MAC", "Network"], d.nics));
  }

  function exportForm() {
    const name = h("input", { name: "name", value: machine.name, required: true });
    const exErr = errorBox();
    return h("details", {}, h("summary", {}, "Export to a package"),
      h("form", { id: "export", class: "filters", onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const a = await api("POST", `/rest/machine/${uuid}/actions/package/`,
                              { body: { name: name.value } });
          location.hash = `#/transaction/${a.txid}`;  // its page offers the download at the end
        } catch (e) { exErr.show(e); }
      } }, field("Package name", name), h("button", { type: "submit" }, "Export"), exErr));
  }

  async function act(action) {
    if (action === "totaldelete" && !confirm(`Delete ${machine.name} and its disks?`)) return;
    actErr.show(null);
    for (const b of actions.querySelectorAll("button")) b.disabled = true;
    try {
      await api("POST", `/rest/machine/${uuid}/actions/${action}/`);
      if (action === "totaldelete") { location.hash = "#/machines"; return; }
    } catch (e) { actErr.show(e); }
    await load();
  }

  async function loadTxs() {
    try {
      const a = await api("GET", "/rest/transactions/", { query: { target: uuid, limit: 10 } });
      txs.replaceChildren(table("machine-txs", ["Kind", "State", "Progress", "Started"],
        a.transactions.map((t) => [h("a", { href: `#/transaction/${t.uuid}` }, t.kind), t.state,
                                   progress(t.completion, `${t.kind} progress`), when(t.created_at)])));
    } catch (e) { txs.replaceChildren(h("p", { class: "error" }, errorText(e))); }
  }

  async function loadAudit() {
    if (!session.is_admin) return;
    try {
      const a = await api("GET", "/rest/audit/", { query: { object: uuid, limit: 20 } });
      audit.replaceChildren(h("h2", {}, "Audit"), table("machine-audit", ["When", "Who", "Action", "Result"],
        a.entries.map((e) => [when(e.at), e.actor_name, e.action, e.errno ? `${e.errno}: ${e.message}` : "ok"])));
    } catch { audit.replaceChildren(); }
  }

  async function loadPerms() {
    const permErr = errorBox();
    if (!mine.permissions.includes("admin")) { perms.replaceChildren(); return; }
    try {
      const a = await api("GET", `/rest/permissions/${uuid}/`);
      const who = h("input", { name: "user", required: true });
      const perm = h("select", { name: "permission" },
        ["read", "control", "modify", "export", "delete", "admin"].map((p) => h("option", { value: p }, p)));
      const form = h("form", { id: "grant", class: "filters", onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await api("PUT", `/rest/permissions/${uuid}/`, { body: { user: who.value, permission: perm.value } });
          loadPerms();
        } catch (e) { permErr.show(e); }
      } }, field("User", who), field("Permission", perm), h("button", { type: "submit" }, "Grant"));
      perms.replaceChildren(h("h2", {}, "Permissions"), h("p", {}, `Owner: ${a.owner_name || "–"}`),
        table("grants", ["Who", "Permission", ""], a.permissions.map((g) => [
          `${g.principal_type} ${g.principal_name || g.principal}`, g.permission,
          h("button", { type: "button", class: "outline secondary", onclick: async () => {
            try {
              await api("DELETE", `/rest/permissions/${uuid}/`, { query: {
                [g.principal_type]: g.principal, permission: g.permission } });
              loadPerms();
            } catch (e) { permErr.show(e); }
          } }, `Revoke ${g.permission}`)])), form, permErr);
    } catch { perms.replaceChildren(); }  // only who may administer it sees its grants
  }

  async function loadStats() {
    try {
      const [a] = await Promise.all([api("GET", `/rest/machine/${uuid}/stats/`), uplotReady()]);
      drawStats(a);
    } catch (e) {
      graphs.replaceChildren(h("p", {}, `No statistics: ${errorText(e)}`));
      plots = [];
    }
  }

  function drawStats(a) {
    const hist = a.history || [];
    if (!window.uPlot || !hist.length) {
      if (!plots.length) graphs.replaceChildren(h("p", { id: "no-stats" }, "No statistics yet (they are sampled while the machine runs)."));
      return;
    }
    const t = hist.map((p) => p.t);
    const scale = (k, v) => (v === null || v === undefined) ? null :
      k.startsWith("mem") ? v / 1048576 : k === "cpu" ? v : v / 1024;
    const series = METRICS.map(([, , keys]) => [t, ...keys.map(([k]) => hist.map((p) => scale(k, p[k])))]);
    if (plots.length) { plots.forEach((p, i) => p.setData(series[i])); return; }
    graphs.replaceChildren();
    const width = Math.max(280, Math.min(560, graphs.clientWidth || 560));
    plots = METRICS.map(([id, label, keys], i) => {
      const box = h("figure", { class: "graph", id: `graph-${id}` }, h("figcaption", {}, label));
      graphs.append(box);
      return new window.uPlot({ width, height: 160, series: [{}, ...keys.map(([, l], j) => ({
        label: l, stroke: ["#1e88e5", "#e53935"][j], width: 1.5 }))], axes: [{}, { size: 50 }] },
      series[i], box);
    });
  }

  function onEvent(type, o) {
    if (type.startsWith("machine.") && o.uuid === uuid) {
      if (type === "machine.deleted") { err.show(new Error("This machine was deleted.")); return; }
      load();
    } else if (type.startsWith("transaction.") && o.target === uuid) loadTxs();
  }

  main.replaceChildren(h("section", {}, title, err, facts, actions, actErr, consoles, exportBox,
    h("h2", {}, "Activity"), graphs, devs, h("h2", {}, "Transactions"), txs, perms, audit));
  load().then(() => { loadStats(); loadTxs(); loadPerms(); loadAudit(); });
  statsTimer = setInterval(loadStats, 10000);
  return { onEvent, refresh: load, destroy: () => clearInterval(statsTimer) };
}

// -- transactions ----------------------------------------------------------------------------

function txRow(t) {
  return h("tr", { dataset: { uuid: t.uuid } },
    h("th", { scope: "row" }, h("a", { href: `#/transaction/${t.uuid}` }, t.kind)),
    h("td", {}, t.target ? h("a", { href: `#/machine/${t.target}` }, t.target_name || t.target.slice(0, 8)) : "–"),
    h("td", { class: "tx-state" }, t.state),
    h("td", {}, progress(t.completion, `${t.kind} progress`)),
    h("td", { class: "hide-narrow" }, t.owner_name || "–"),
    h("td", { class: "hide-narrow" }, when(t.created_at)));
}

function updateTx(tr, o) {
  tr.querySelector(".tx-state").textContent = o.state;
  tr.querySelector("progress").value = o.completion ?? 0;
}

function transactionsPage() {
  const err = errorBox();
  const tbody = h("tbody");
  const stateSel = h("select", { name: "state", onchange: load }, h("option", { value: "" }, "any"),
    ["queued", "running", "done", "failed", "cancelled"].map((s) => h("option", { value: s }, s)));

  async function load() {
    try {
      const a = await api("GET", "/rest/transactions/", { query: { limit: 50, state: stateSel.value } });
      tbody.replaceChildren(...a.transactions.map(txRow));
    } catch (e) { err.show(e); }
  }

  async function onEvent(type, o) {
    if (!type.startsWith("transaction.")) return;
    const tr = tbody.querySelector(`tr[data-uuid="${CSS.escape(o.uuid)}"]`);
    if (tr) { updateTx(tr, o); return; }
    try {  // one new transaction: read it alone and put it on top
      const a = await api("GET", `/rest/transaction/${o.uuid}/`);
      if (!tbody.querySelector(`tr[data-uuid="${CSS.escape(o.uuid)}"]`)) tbody.prepend(txRow(a.data));
    } catch { /* not ours to read */ }
  }

  main.replaceChildren(h("section", {}, heading("Transactions"), field("State", stateSel), err,
    scrollBox("Transactions", h("table", { id: "transactions" },
      h("thead", {}, h("tr", {}, ["Kind", "Target", "State", "Progress", "Owner", "Created"]
        .map((c) => h("th", { scope: "col" }, c)))), tbody))));
  load();
  return { onEvent, refresh: load };
}

function transactionPage(uuid) {
  const err = errorBox();
  const title = heading("Transaction");
  const bar = progress(0, "Progress");
  const state = h("span", { id: "tx-state", role: "status" });
  const box = h("div");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true, onclick: async () => {
    try { await api("DELETE", `/rest/transaction/${uuid}/`); load(); } catch (e) { err.show(e); }
  } }, "Cancel");

  async function load() {
    try {
      const t = (await api("GET", `/rest/transaction/${uuid}/`)).data;
      title.textContent = `${t.kind} ${t.target_name || ""}`.trim();
      bar.value = t.completion;
      state.textContent = t.state;
      cancel.hidden = !["queued", "running"].includes(t.state);
      box.replaceChildren(
        t.target ? h("p", {}, "Target: ", h("a", { href: `#/machine/${t.target}`, id: "tx-target" },
                                            t.target_name || t.target)) : "",
        t.error ? h("p", { class: "error", id: "tx-error" }, t.error) : "",
        // an export's package: downloaded with the session like any API call
        t.state === "done" && t.result && t.result.package ? h("p", {},
          h("a", { href: `/rest/vmfeed/${t.result.package}/download/`, id: "tx-download",
                   download: "" }, "Download the package"), " · ",
          h("a", { href: "#/packages" }, "Packages")) : "",
        h("h2", {}, "Log"), table("tx-log", ["When", "Level", "Message"], t.log));
    } catch (e) { err.show(e); }
  }

  function onEvent(type, o) {
    if (!type.startsWith("transaction.") || o.uuid !== uuid) return;
    bar.value = o.completion ?? bar.value;
    state.textContent = o.state;
    if (type === "transaction.end") load();
  }

  main.replaceChildren(h("section", {}, title, err, h("p", {}, "State: ", state), bar, cancel, box));
  load();
  return { onEvent, refresh: load };
}

// -- create from an image --------------------------------------------------------------------

/** A select of the libvirt networks a new machine may join (GET .../networks/ answers only
 * those the user may use) on the hypervisor `where()` names, or on any of `all()` when it
 * names none; `offer()` refills it, and the answer to an older choice is dropped. */
function networkSelect(where, all) {
  const none = () => h("option", { value: "" }, "none (the default)");
  const net = h("select", { name: "libvirt_network" }, none());
  let turn = 0;
  async function offer() {
    const mine = ++turn;
    const one = where();
    const asked = one ? [one] : all().map((v) => v.uuid);
    const lists = await Promise.all(asked.map((u) => api("GET", `/rest/hypervisor/${u}/networks/`)
      .then((a) => a.networks, () => [])));
    if (mine !== turn) return;
    const chosen = net.value;
    const found = [...new Set(lists.flat().map((n) => n.name))].sort();
    net.replaceChildren(none(), ...found.map((n) => h("option", { value: n, selected: n === chosen }, n)));
  }
  return { net, offer };
}

async function createPage() {
  const err = errorBox();
  const name = h("input", { name: "name", required: true });
  const image = h("select", { name: "image" }, h("option", { value: "" }, "no image (a blank disk)"));
  const vcpus = h("input", { name: "vcpus", type: "number", min: 1, value: 1 });
  const memory = h("input", { name: "memory", type: "number", min: 16, value: 256 });
  const disk = h("input", { name: "disk", type: "number", min: 1, placeholder: "the image's size" });
  // where it goes (hvmuuid: the hypervisors this user controls; else the placer, or the
  // image's hypervisor) and the libvirt network it joins (libvirt_network: that hypervisor's
  // networks this user may join, GET /rest/hypervisor/<UUID>/networks/)
  const hv = h("select", { name: "hvmuuid" }, h("option", { value: "" }, "any (the server picks)"));
  const imageHv = new Map();
  let hvs = [];
  const { net, offer: offerNetworks } = networkSelect(() => imageHv.get(image.value) || hv.value,
                                                      () => hvs);
  image.addEventListener("change", offerNetworks);
  hv.addEventListener("change", offerNetworks);
  const form = h("form", { id: "create", onsubmit: async (ev) => {
    ev.preventDefault();
    err.show(null);
    const body = { name: name.value, vcpus: vcpus.value, memory: memory.value };
    if (image.value) body.image = image.value;
    if (disk.value) body.disk = disk.value;
    if (hv.value) body.hvmuuid = hv.value;
    if (net.value) body.libvirt_network = net.value;
    try {
      const a = await api("PUT", "/rest/machines/", { body });
      location.hash = `#/transaction/${a.txid}`;
    } catch (e) { err.show(e); }
  } }, field("Name", name), field("Image", image),
  h("div", { class: "grid" }, field("vCPUs", vcpus), field("Memory (MiB)", memory), field("Disk (GiB)", disk)),
  h("div", { class: "grid" }, field("Hypervisor", hv), field("libvirt network", net)),
  err, h("button", { type: "submit" }, "Create"));
  main.replaceChildren(h("section", {}, heading("Create a machine"), form));
  try {
    const [a, controlled] = await Promise.all([api("GET", "/rest/images/"), controlledHypervisors()]);
    for (const i of a.images.filter((x) => x.state === "ready" && x.format !== "iso")) {
      image.append(h("option", { value: i.uuid }, `${i.name} (${i.format})`));
      imageHv.set(i.uuid, i.hypervisor);
    }
    hvs = controlled;
    hv.append(...hvs.map((v) => h("option", { value: v.uuid }, `${hostName(v.machine)}: ${v.virt_url}`)));
    await offerNetworks();
  } catch (e) { err.show(e); }
  return {};
}

// -- images ----------------------------------------------------------------------------------

function imagesPage() {
  const err = errorBox();
  const upErr = errorBox();
  const list = h("div");
  const file = h("input", { type: "file", name: "file", required: true });
  const name = h("input", { name: "name", required: true });
  const format = h("select", { name: "format" }, ["qcow2", "raw", "iso"].map((f) => h("option", { value: f }, f)));
  const bar = h("progress", { value: 0, max: 100, id: "upload-progress", "aria-label": "Upload progress", hidden: true });
  const done = h("p", { role: "status", id: "upload-status" });
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (!f) return;
    if (!name.value) name.value = f.name.replace(/\.(qcow2|img|raw|iso)$/i, "");
    const ext = (f.name.match(/\.(qcow2|raw|iso)$/i) || [])[1];
    if (ext) format.value = ext.toLowerCase();
  });
  const form = h("form", { id: "upload", onsubmit: (ev) => {
    ev.preventDefault();
    upErr.show(null);
    const xhr = new XMLHttpRequest();
    const query = { name: name.value, format: format.value };
    const hv = form.querySelector("select[name=hvmuuid]").value;
    if (hv) query.hvmuuid = hv;
    const url = `/rest/images/?${new URLSearchParams(query)}`;
    xhr.open("PUT", url);
    xhr.setRequestHeader("X-CSRF-Token", session.csrf_token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-Requested-With", "enomalism");
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
    xhr.onload = () => {
      let body;
      try { body = JSON.parse(xhr.responseText); } catch { body = { errno: xhr.status, message: xhr.statusText }; }
      if (xhr.status >= 400 || body.errno) { upErr.show(new ApiError(body, xhr.status)); return; }
      bar.value = 100;
      done.textContent = `Uploaded ${name.value}.`;
      load();
    };
    xhr.onerror = () => upErr.show(new Error("the upload broke off"));
    done.textContent = "Uploading…";
    xhr.send(file.files[0]);
  } }, field("File", file), h("div", { class: "grid" }, field("Name", name), field("Format", format)),
  h("button", { type: "submit" }, "Upload"), bar, done, upErr);

  async function load() {
    try {
      const a = await api("GET", "/rest/images/");
      // a delete button only where the API says this user holds `delete` (docs/access.md);
      // an administrator holds every permission
      const held = await Promise.all(a.images.map((i) => session.is_admin ? ["delete"]
        : api("GET", `/rest/permissions/${i.uuid}/mine/`).then((m) => m.permissions, () => [])));
      list.replaceChildren(table("images", ["Name", "Format", "Size", "State", "Pool", ""], a.images.map((i, n) => [
        i.name, i.format, i.size ? `${(i.size / 1048576).toFixed(1)} MiB` : "–", i.state, i.pool,
        held[n].includes("delete") ? h("button", { type: "button", class: "outline secondary", onclick: async () => {
          if (!confirm(`Delete image ${i.name}?`)) return;
          try { await api("DELETE", `/rest/images/${i.uuid}/`); load(); } catch (e) { err.show(e); }
        } }, `Delete ${i.name}`) : ""]), "No images yet."));
    } catch (e) { err.show(e); }
  }
  // Anyone may upload to the server's default hypervisor; naming one (hvmuuid) needs `control`
  // on it (docs/access.md), so the choice lists only the hypervisors this user controls.
  const hvSel = h("select", { name: "hvmuuid" }, h("option", { value: "" }, "the default one"));
  form.querySelector(".grid").append(field("Hypervisor", hvSel));
  controlledHypervisors().then((hvs) => hvSel.append(...hvs.map((v) =>
    h("option", { value: v.uuid }, `${hostName(v.machine)}: ${v.virt_url}`))));
  main.replaceChildren(h("section", {}, heading("Images"), err, list, h("h2", {}, "Upload an image"), form));
  load();
  return { refresh: load };
}

// -- hosts, networks -------------------------------------------------------------------------

/** Every hypervisor this user may read, whether or not they may read its host. */
async function readableHypervisors() {
  return (await api("GET", "/rest/hypervisors/").catch(() => ({ hypervisors: [] }))).hypervisors;
}

/** The hypervisors on which this user holds `control` (what naming one in a request needs). */
async function controlledHypervisors() {
  const hvs = await readableHypervisors();
  if (session.is_admin) return hvs;
  const held = await Promise.all(hvs.map((v) => api("GET", `/rest/permissions/${v.uuid}/mine/`)
    .then((m) => m.permissions, () => [])));
  return hvs.filter((v, i) => held[i].includes("control"));
}

function hostsPage() {
  const err = errorBox();
  const box = h("div");
  const addErr = errorBox();
  const hname = h("input", { name: "name", required: true });
  const address = h("input", { name: "address", placeholder: "host name or IP" });
  const uri = h("input", { name: "virt_url", placeholder: "qemu+ssh://root@host/system" });
  const addForm = h("form", { id: "add-host", onsubmit: async (ev) => {
    ev.preventDefault();
    addErr.show(null);
    try {
      await api("PUT", "/rest/hosts/", { body: { name: hname.value, address: address.value || undefined,
                                               virt_url: uri.value || undefined } });
      hname.value = address.value = uri.value = "";
      await loadNames();
      load();
    } catch (e) { addErr.show(e); }
  } }, h("div", { class: "grid" }, field("Name", hname), field("Address", address),
         field("libvirt URI", uri)), h("button", { type: "submit" }, "Add host"), addErr);

  function removeButton(label, what, method, path) {
    return h("button", { type: "button", class: "outline secondary", onclick: async () => {
      if (!confirm(`Remove ${what}?`)) return;
      try { await api(method, path); err.show(null); load(); } catch (e) { err.show(e); }
    } }, label);
  }

  const gib = (b) => (b === null || b === undefined) ? "–" : `${(b / 1073741824).toFixed(1)} GiB`;
  const pct = (used, total) => total ? ` (${Math.round(100 * used / total)} %)` : "";
  // capacity and allocation: vCPUs and memory given to its machines that run (of all defined)
  const given = (v, al) => !al ? ["–", "–", "–"] : [
    `${al.active.vcpus} of ${v.cpus ?? "–"}${pct(al.active.vcpus, v.cpus)}`,
    `${mib(al.active.memory_kib)} of ${mib(v.memory_kib)}${pct(al.active.memory_kib, v.memory_kib)}`,
    `${al.active.machines} running of ${al.defined.machines} (${al.defined.vcpus} vCPUs, ${mib(al.defined.memory_kib)} defined)`];

  async function load() {
    try {
      const [hosts, pools] = await Promise.all([
        api("GET", "/rest/hosts/").then((a) => a.hosts),
        api("GET", "/rest/pools/").then((a) => a.pools, () => [])]);
      const parts = await Promise.all(hosts.map(async (host) => {
        const hvs = (await api("GET", `/rest/machine/${host.uuid}/hypervisors/`)).hypervisors;
        const alloc = await Promise.all(hvs.map((v) =>
          api("GET", `/rest/hypervisor/${v.uuid}/allocation/`).catch(() => null)));
        const hvPools = pools.filter((p) => hvs.some((v) => v.uuid === p.hypervisor));
        return h("article", { dataset: { host: host.uuid } }, h("h2", {}, host.name),
          h("p", {}, `Address: ${host.address || "–"}`),
          table(`hvs-${host.uuid}`, ["URI", "Status", "vCPUs given", "Memory given", "Machines",
                                     "libvirt", ""], hvs.map((v, i) => [
            h("span", { class: "mono" }, v.virt_url), h("span", { dataset: { hv: v.uuid } }, v.status),
            ...given(v, alloc[i]), v.libvirt_version,
            session.is_admin ? removeButton(`Remove ${v.virt_url}`, `hypervisor ${v.virt_url}`,
                                            "DELETE", `/rest/hypervisor/${v.uuid}/`) : ""]), "No hypervisors."),
          hvPools.length ? [h("h3", {}, "Storage pools"),
            table(`pools-${host.uuid}`, ["Pool", "Capacity", "Allocated", "Available"], hvPools.map((p) => [
              p.name, gib(p.capacity), `${gib(p.allocation)}${pct(p.allocation, p.capacity)}`,
              gib(p.available)]))] : "",
          // a host without hypervisors (its own or removed) can go itself
          host.actions.includes("totaldelete") && session.is_admin
            ? removeButton(`Remove host ${host.name}`, `host ${host.name}`, "POST",
                           `/rest/machine/${host.uuid}/actions/totaldelete/`) : "");
      }));
      box.replaceChildren(...parts);
    } catch (e) { err.show(e); }
  }
  let again = null;
  function onEvent(type, o) {
    if (["machine.state", "machine.created", "machine.deleted", "machine.moved"].includes(type)) {
      clearTimeout(again);  // the allocation changed: read it again, once for a burst
      again = setTimeout(load, 1000);
      return;
    }
    if (!type.startsWith("hypervisor.")) return;
    const el = box.querySelector(`[data-hv="${CSS.escape(o.uuid)}"]`);
    if (el) el.textContent = o.status || (type === "hypervisor.up" ? "connected" : "disconnected");
  }
  main.replaceChildren(h("section", {}, heading("Hosts and hypervisors"), err, box,
    session.is_admin ? [h("h2", {}, "Add a host"), addForm] : []));
  load();
  return { onEvent, refresh: load, destroy: () => clearTimeout(again) };
}

function networksPage() {
  const err = errorBox();
  const box = h("div");
  const inputs = { name: h("input", { name: "name", required: true }),
                   ip: h("input", { name: "ip", required: true, placeholder: "10.0.0.0" }),
                   netmask: h("input", { name: "netmask", required: true, placeholder: "24" }),
                   gateway: h("input", { name: "gateway" }),
                   bridge: h("input", { name: "bridge", required: true,
                                       placeholder: "br0 or a libvirt network" }) };
  const newErr = errorBox();
  const newForm = h("form", { id: "new-network", onsubmit: async (ev) => {
    ev.preventDefault();
    newErr.show(null);
    const body = {};
    for (const [k, el] of Object.entries(inputs)) if (el.value) body[k] = el.value;
    try {
      await api("PUT", "/rest/networks/", { body });
      for (const el of Object.values(inputs)) el.value = "";
      load();
    } catch (e) { newErr.show(e); }
  } }, h("div", { class: "grid" }, field("Name", inputs.name), field("Address", inputs.ip),
         field("Netmask or prefix", inputs.netmask)),
  h("div", { class: "grid" }, field("Gateway", inputs.gateway), field("Bridge", inputs.bridge)),
  h("button", { type: "submit" }, "Create network"), newErr);

  function button(label, run) {
    return h("button", { type: "button", class: "outline secondary", onclick: run }, label);
  }

  /** One network: its ranges and the addresses in use, each with its form. */
  async function networkBox(n) {
    const nErr = errorBox();
    const base = `/rest/networks/${n.uuid}`;
    const act = (method, path, body) => async () => {
      nErr.show(null);
      try { await api(method, path, body ? { body } : {}); load(); } catch (e) { nErr.show(e); }
    };
    let leases = [];
    try { leases = (await api("GET", `${base}/leases/`)).leases; } catch (e) { nErr.show(e); }
    const start = h("input", { name: "start_ip", required: true });
    const end = h("input", { name: "end_ip", required: true });
    const addr = h("input", { name: "address", placeholder: "the next free one" });
    const note = h("input", { name: "note" });
    const submit = (run) => async (ev) => { ev.preventDefault(); await run(); };
    return h("article", { dataset: { network: n.uuid } },
      h("h2", {}, n.name),
      h("p", {}, `${n.ip}/${n.prefix}`, n.gateway ? ` · gateway ${n.gateway}` : "",
        n.bridge ? ` · bridge ${n.bridge}` : "", ` · ${n.leased} in use`),
      h("h3", {}, "Ranges"),
      table(`ranges-${n.uuid}`, ["From", "To", "Addresses", ""], n.ranges.map((r) => [
        r.start_ip, r.end_ip, r.size,
        button(`Delete range ${r.start_ip}`, act("DELETE", `${base}/iprange/${r.uuid}/`))]), "No ranges."),
      h("form", { class: "filters add-range", onsubmit: submit(() => act("POST", `${base}/iprange/`,
        { start_ip: start.value, end_ip: end.value })()) },
        field("First address", start), field("Last address", end),
        h("button", { type: "submit" }, "Add range")),
      h("h3", {}, "Leases and reservations"),
      table(`leases-${n.uuid}`, ["Address", "Machine", "MAC", "Note", ""], leases.map((l) => [
        l.address, l.machine ? h("a", { href: `#/machine/${l.machine}` }, l.machine.slice(0, 8)) : "–",
        h("span", { class: "mono" }, l.mac || "–"), l.note || "",
        button(`Release ${l.address}`, act("DELETE", `${base}/leases/${encodeURIComponent(l.address)}/`))]),
        "No address in use."),
      h("form", { class: "filters reserve", onsubmit: submit(() => act("POST", `${base}/leases/`,
        { address: addr.value || undefined, note: note.value || undefined })()) },
        field("Address", addr), field("Note", note), h("button", { type: "submit" }, "Reserve")),
      nErr);
  }

  async function load() {
    try {
      const a = await api("GET", "/rest/networks/");
      const boxes = await Promise.all(a.networks.map(networkBox));
      box.replaceChildren(...(boxes.length ? boxes : [h("p", { id: "networks" }, "No static networks.")]));
      err.show(null);
    } catch (e) { err.show(e); }
  }
  main.replaceChildren(h("section", {}, heading("Networks"), err, box,
    session.is_admin ? [h("h2", {}, "Create a static network"), newForm] : []));
  load();
  return { refresh: load };
}

// -- packages and their feeds ----------------------------------------------------------------

function packagesPage() {
  const err = errorBox();
  const feeds = h("div");
  const list = h("div");
  const url = h("input", { name: "url", type: "url", required: true, placeholder: "https://…/feed.xml" });
  const addErr = errorBox();
  const added = h("p", { role: "status" });
  const run = (method, path) => async () => {
    err.show(null);
    try {
      const a = await api(method, path);
      if (a.txid) location.hash = `#/transaction/${a.txid}`;
      else load();
    } catch (e) { err.show(e); }
  };
  const button = (label, onclick) => h("button", { type: "button", class: "outline secondary", onclick }, label);
  async function load() {
    try {
      const [r, p] = await Promise.all([api("GET", "/rest/vmfeed/repo/"), api("GET", "/rest/vmfeed/")]);
      feeds.replaceChildren(table("feeds", ["Feed", "Packages", "Refreshed", "Last error", "", ""],
        r.repositories.map((f) => [h("span", { class: "mono" }, f.url), f.packages, when(f.refreshed_at),
          f.last_error || "", button(`Refresh ${f.title || f.url}`, async () => {
            err.show(null);
            try {
              const a = await api("POST", `/rest/vmfeed/repo/${f.uuid}/`, { body: { action: "refresh" } });
              added.textContent = a.message;
              load();
            } catch (e) { err.show(e); }
          }),
          button(`Delete ${f.title || f.url}`, async () => {
            if (!confirm(`Delete the feed ${f.url} and its packages?`)) return;
            await run("DELETE", `/rest/vmfeed/repo/${f.uuid}/`)();
          })]), "No feeds."));
      list.replaceChildren(table("packages", ["Package", "Version", "Class", "State", "Size", ""],
        p.packages.map((x) => [x.name, x.version || "–", `${x.virt_class || "–"} ${x.arch || ""}`, x.state,
          x.size ? `${(x.size / 1048576).toFixed(1)} MiB` : "–",
          x.state === "cached"
            ? h("span", { class: "row-actions" },
                h("a", { href: `#/provision/${x.uuid}`, class: "provision" }, `Provision ${x.name}`), " ",
                h("a", { href: `/rest/vmfeed/${x.uuid}/download/`, download: "", class: "download" }, `Download ${x.name}`))
            : button(`Retrieve ${x.name}`, run("POST", `/rest/vmfeed/repo/package/${x.uuid}/`))]),
        "No packages."));
    } catch (e) { err.show(e); }
  }
  function onEvent(type) { if (type === "transaction.end") load(); }
  main.replaceChildren(h("section", {}, heading("Packages and feeds"), err,
    h("h2", {}, "Packages"), list, h("h2", {}, "Feeds"), feeds,
    h("form", { id: "add-feed", class: "filters", onsubmit: async (ev) => {
      ev.preventDefault();
      addErr.show(null);
      try {
        const a = await api("PUT", "/rest/vmfeed/", { body: { url: url.value } });
        added.textContent = a.message;
        url.value = "";
        load();
      } catch (e) { addErr.show(e); }
    } }, field("Feed URL", url), h("button", { type: "submit" }, "Add feed")), addErr, added));
  load();
  return { onEvent, refresh: load };
}

// -- provision a package ---------------------------------------------------------------------

/** The machine provision's path names (`read` on it is needed, docs/access.md): the
 * hypervisor's host when this user may read it, else one of the machines they read on that
 * hypervisor (a VM's UUID names its host), else any host they read. */
async function provisionPath(hv) {
  if (!hv) return [...names.hosts.keys()][0];
  if (names.hosts.has(hv.machine)) return hv.machine;
  const a = await api("GET", "/rest/machines/", { query: { hypervisor: hv.uuid, limit: 1 } })
    .catch(() => null);
  return (a && a.machines[0]) || hv.machine;
}

/** POST /rest/machine/<host>/actions/provision/ (docs/provisioning.md): the hypervisor
 * (hvmuuid: those this user controls, else the placer), a libvirt network of it for the
 * interfaces the package leaves open, the pool, the domain type and the cloud-init seed. The
 * static networks of the chosen host's clusters lease their addresses by themselves. */
async function provisionPage(pkg) {
  const err = errorBox();
  const title = heading("Provision a package");
  const about = h("p", { id: "provision-package" });
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const hv = h("select", { name: "hvmuuid" }, h("option", { value: "" }, "any (the server picks)"));
  const pool = h("input", { name: "pool", placeholder: "the default pool" });
  const virt = h("select", { name: "virt_type" }, h("option", { value: "" }, "the hypervisor's class"),
    ["kvm", "qemu"].map((t) => h("option", { value: t }, t)));
  const hostname = h("input", { name: "hostname", placeholder: "the machine's name" });
  const userData = h("textarea", { name: "user_data", rows: 6, spellcheck: "false",
                                   placeholder: "#cloud-config" });
  const keys = h("textarea", { name: "ssh_key", rows: 3, spellcheck: "false",
                               placeholder: "ssh-ed25519 AAAA… one key a line" });
  const statics = h("p", { id: "provision-networks" });
  let hvs = [];
  const { net, offer: offerNetworks } = networkSelect(() => hv.value, () => hvs);
  hv.addEventListener("change", offerNetworks);
  const form = h("form", { id: "provision", onsubmit: async (ev) => {
    ev.preventDefault();
    err.show(null);
    const body = { pkguuid: pkg, name: name.value };
    for (const [k, el] of [["hvmuuid", hv], ["libvirt_network", net], ["pool", pool],
                           ["virt_type", virt], ["hostname", hostname], ["user_data", userData]]) {
      if (el.value.trim()) body[k] = el.value;
    }
    const sshKeys = keys.value.split("\n").map((k) => k.trim()).filter(Boolean);
    if (sshKeys.length) body.ssh_key = sshKeys;
    // the path names a machine this user may read: the chosen hypervisor's host, else one
    // they control (the placer then chooses among every hypervisor this user controls)
    try {
      const host = await provisionPath(hvs.find((v) => v.uuid === hv.value) || hvs[0]);
      const a = await api("POST", `/rest/machine/${host || "none"}/actions/provision/`, { body });
      location.hash = `#/transaction/${a.txid}`;
    } catch (e) { err.show(e); }
  } }, about, field("Name", name),
  h("div", { class: "grid" }, field("Hypervisor", hv), field("libvirt network", net)),
  statics,
  h("div", { class: "grid" }, field("Storage pool", pool), field("Domain type", virt),
    field("Host name (cloud-init)", hostname)),
  field("User data (cloud-init)", userData), field("SSH public keys (one a line)", keys),
  err, h("button", { type: "submit" }, "Provision"));
  main.replaceChildren(h("section", {}, title, form));
  api("GET", `/rest/vmfeed/${pkg}/`).then(({ package: x }) => {
    title.textContent = `Provision ${x.name}`;
    document.title = `Provision ${x.name} · enomalism`;
    about.textContent = `${x.name} ${x.version || ""} · ${x.virt_class || "any class"} ${x.arch || ""}` +
      ` · ${x.state}`;
  }, (e) => err.show(e));
  try {
    const [controlled, nets] = await Promise.all([controlledHypervisors(),
      api("GET", "/rest/networks/").then((a) => a.networks, () => [])]);
    hvs = controlled;
    hv.append(...hvs.map((v) => h("option", { value: v.uuid }, `${hostName(v.machine)}: ${v.virt_url}`)));
    statics.textContent = nets.length
      ? `Static networks you may use (an address is leased on those serving the chosen host): ${
        nets.map((n) => n.name).join(", ")}.`
      : "No static network: the interfaces join the libvirt network.";
    await offerNetworks();
  } catch (e) { err.show(e); }
  return {};
}

// -- users and the audit log (administrators) ------------------------------------------------

function usersPage() {
  const err = errorBox();
  const box = h("div");
  const username = h("input", { name: "username", required: true, autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", required: true, autocomplete: "new-password" });
  const admin = h("input", { name: "admin", type: "checkbox", role: "switch" });
  const form = h("form", { id: "new-user", onsubmit: async (ev) => {
    ev.preventDefault();
    err.show(null);
    try {
      await api("POST", "/rest/user/create/", { body: { username: username.value,
        password: password.value, admin: admin.checked } });
      username.value = password.value = "";
      await loadNames();
      load();
    } catch (e) { err.show(e); }
  } }, h("div", { class: "grid" }, field("User name", username), field("Password", password)),
  h("label", {}, admin, " Administrator"), h("button", { type: "submit" }, "Add user"));
  async function load() {
    try {
      const users = (await api("GET", "/rest/users/list/")).users;
      const groups = (await api("GET", "/rest/group/list/")).groups;
      box.replaceChildren(table("users", ["User", "Id", ""], users.map(([n, id]) => [n, h("span", { class: "mono" }, id),
        n === session.username ? "" : h("button", { type: "button", class: "outline secondary", onclick: async () => {
          if (!confirm(`Delete user ${n}?`)) return;
          try { await api("DELETE", `/rest/user/${id}/`); load(); } catch (e) { err.show(e); }
        } }, `Delete ${n}`)])),
      h("h2", {}, "Groups"), table("groups", ["Group", "Id"], groups.map(([n, id]) => [n, id]), "No groups."));
    } catch (e) { err.show(e); }
  }
  main.replaceChildren(h("section", {}, heading("Users"), box, h("h2", {}, "Add a user"), form, err,
    h("p", {}, "Grant permissions on a machine from its page.")));
  load();
  return { refresh: load };
}

function auditPage() {
  const err = errorBox();
  const tbody = h("tbody");
  const actor = h("input", { name: "actor" });
  const object = h("input", { name: "object" });
  const failed = h("select", { name: "failed" }, h("option", { value: "" }, "all"),
                   h("option", { value: "true" }, "refused or failed"), h("option", { value: "false" }, "succeeded"));
  const rowOf = (e) => h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.actor_name || e.actor),
    h("td", { class: "hide-narrow" }, e.source), h("td", {}, e.action), h("td", {}, e.object_name || e.object || "–"),
    h("td", {}, e.errno ? `${e.errno}: ${e.message}` : "ok"));
  async function load() {
    try {
      const a = await api("GET", "/rest/audit/", { query: { actor: actor.value, object: object.value,
        failed: failed.value, limit: 100 } });
      tbody.replaceChildren(...a.entries.map(rowOf));
      err.show(null);
    } catch (e) { err.show(e); }
  }
  function onEvent(type, o) {
    if (type === "audit" && !actor.value && !object.value && !failed.value) {
      tbody.prepend(rowOf({ ...o, at: new Date().toISOString(), actor_name: o.actor }));
      while (tbody.children.length > 100) tbody.lastChild.remove();
    }
  }
  main.replaceChildren(h("section", {}, heading("Audit log"),
    h("form", { class: "filters", role: "search", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      field("User", actor), field("Object id", object), field("Outcome", failed),
      h("button", { type: "submit" }, "Filter")), err,
    scrollBox("Audit log", h("table", { id: "audit" }, h("thead", {}, h("tr", {},
      ["When", "Who", "From", "Action", "Object", "Result"].map((c) => h("th", { scope: "col" }, c)))), tbody))));
  load();
  return { onEvent, refresh: load };
}

// -- the user's own account: password and API tokens -----------------------------------------

function accountPage() {
  const err = errorBox();
  const box = h("div");
  const secret = h("p", { role: "status", class: "mono" });
  const tname = h("input", { name: "name", required: true });
  const days = h("input", { name: "expires_in_days", type: "number", min: 1, placeholder: "never" });
  const oldp = h("input", { name: "old_password", type: "password", autocomplete: "current-password", required: true });
  const newp = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true });
  async function load() {
    try {
      const a = await api("GET", "/rest/tokens/");
      box.replaceChildren(table("tokens", ["Name", "Expires", ""], a.tokens.map((t) => [t.name, when(t.expires_at),
        h("button", { type: "button", class: "outline secondary", onclick: async () => {
          try { await api("DELETE", `/rest/tokens/${t.uuid}/`); load(); } catch (e) { err.show(e); }
        } }, `Revoke ${t.name}`)]), "No tokens."));
    } catch (e) { err.show(e); }
  }
  main.replaceChildren(h("section", {}, heading(`Account: ${session.username}`), err,
    h("h2", {}, "API tokens"), box,
    h("form", { class: "filters", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const a = await api("PUT", "/rest/tokens/", { body: { name: tname.value, expires_in_days: days.value || undefined } });
        secret.textContent = `New token (shown only now): ${a.secret}`;
        load();
      } catch (e) { err.show(e); }
    } }, field("Token name", tname), field("Expires in days", days), h("button", { type: "submit" }, "Create token")),
    secret, h("h2", {}, "Password"),
    h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", `/rest/user/${session.uuid}/`, { body: { action: "set_password",
          old_password: oldp.value, password: newp.value } });
        oldp.value = newp.value = "";
        err.show(null);
        secret.textContent = "Password changed.";
      } catch (e) { err.show(e); }
    } }, h("div", { class: "grid" }, field("Current password", oldp), field("New password", newp)),
    h("button", { type: "submit" }, "Change password"))));
  load();
  return { refresh: load };
}

// -- routing ---------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/machines$/, machinesPage],
  [/^#\/machine\/([\w-]+)$/, machinePage],
  [/^#\/transactions$/, transactionsPage],
  [/^#\/transaction\/([\w-]+)$/, transactionPage],
  [/^#\/create$/, createPage],
  [/^#\/images$/, imagesPage],
  [/^#\/hosts$/, hostsPage],
  [/^#\/networks$/, networksPage],
  [/^#\/packages$/, packagesPage],
  [/^#\/provision\/([\w-]+)$/, provisionPage],
  [/^#\/users$/, usersPage],
  [/^#\/audit$/, auditPage],
  [/^#\/account$/, accountPage],
  // the console module is loaded when a console opens: the list's first paint does not wait on it
  [/^#\/console\/([\w-]+)\/(serial|vnc)$/, async (uuid, kind) =>
    (await import("./console.js")).consolePage(main, uuid, kind, { h, api, errorText, heading })],
];

let routing = 0;  // which route() call is the latest: an older page that resolves later is let go
let opening = null;  // the path of the page being opened: asked again meanwhile, it is not opened twice

async function route() {
  if (!session) return;
  const path = (location.hash || "#/machines").split("?")[0];
  if (path === opening) return;
  const turn = ++routing;
  opening = path;
  try { await show(path, turn); } finally { if (turn === routing) opening = null; }
}

async function show(path, turn) {
  if (current && current.destroy) current.destroy();
  current = null;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page] of ROUTES) {
    const m = path.match(re);
    if (m) {
      if (page !== machinesPage) await namesReady;
      const shown = (await page(...m.slice(1))) || {};
      if (turn !== routing) { if (shown.destroy) shown.destroy(); return; }
      current = shown;
      const title = document.getElementById("page-title");
      if (title) title.focus({ preventScroll: true });
      early.clear();  // asked early and not wanted after all
      return;
    }
  }
  location.hash = "#/machines";
}

window.addEventListener("hashchange", route);

(async () => {
  const path = (location.hash || "#/machines").split("?")[0];
  if (path === "#/machines") earlyGet(apiUrl("/rest/machines/", machinesQuery().query).href);
  for (const link of document.querySelectorAll('link[rel="preload"][as="fetch"]')) {
    earlyGet(link.href);  // taken, or dropped once the first page shows
  }
  try {
    session = await api("GET", "/rest/session/");
    await started();
  } catch { loginPage(); }
})();
