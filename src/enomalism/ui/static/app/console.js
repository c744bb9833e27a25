// A machine's consoles: the serial terminal (xterm.js) and the screen (noVNC), over the
// console endpoints (docs/consoles.md): a single-use ticket from POST .../console/, then a
// WebSocket whose binary frames are the console's bytes and whose text frames are JSON
// control messages (ping/pong, taken, closed). The page opens the console again by itself,
// with a new ticket, when the server says that may help (`reconnect`: the machine moved, its
// hypervisor's link dropped) or the connection broke; never after a refusal or a take-over.

const CLOSES = {
  4401: "the ticket or token was refused (expired or used)",
  4403: "you may not use this machine's console",
  4404: "no such machine",
  4409: "someone else has this console open",
  4500: "the hypervisor refused",
  1006: "the connection broke",
  1012: "the server went away",
};
const DROPPED = new Set([1001, 1006, 1011, 1012, 1013, 1014]);  // broke, or the server left
// Refusals that may pass a moment later while a console comes back (the machine arriving on
// its new host, the previous session being let go): tried again within the same budget.
const TRANSIENT = new Set([4404, 4409, 4500]);
const RETRIES = 10;

const scripts = new Map();  // src -> the promise of its loading (one load, however many pages)

function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => { scripts.delete(src); reject(new Error(`could not load ${src}`)); };
      document.head.append(s);
    }));
  }
  return scripts.get(src);
}

// The server's times are UTC without a zone: shown in the viewer's own.
function utcTime(iso) {
  return new Date(/Z|[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`).toLocaleTimeString();
}

function loadStyle(href) {
  if (document.querySelector(`link[href="${href}"]`)) return;
  const l = document.createElement("link");
  l.rel = "stylesheet";
  l.href = href;
  document.head.append(l);
}

export async function consolePage(main, uuid, kind, { h, api, errorText, heading }) {
  const status = h("p", { role: "status", id: "console-status" }, "Connecting…");
  const screen = h("div", { class: `console-box ${kind}`, id: "console", tabindex: "0",
                            "aria-label": kind === "serial" ? "Serial terminal" : "Machine screen" });
  let ws = null, term = null, rfb = null, fit = null, stopped = false, force = false, timer = null;
  let destroyed = false, last = null, fresh = false, budget = RETRIES;
  let name = uuid;
  try { name = (await api("GET", `/rest/machine/${uuid}/`)).machine_obj.name; } catch { /* shown below */ }
  const takeOver = h("button", { type: "button", class: "secondary", hidden: true,
                                 onclick: () => { force = true; takeOver.hidden = true; connect(); } },
                     "Take over");
  const tools = h("p", { class: "actions" },
    h("a", { href: `#/machine/${uuid}`, role: "button", class: "outline" }, "Back to the machine"),
    h("button", { type: "button", class: "outline", onclick: () => screen.requestFullscreen?.() }, "Full screen"),
    h("button", { type: "button", class: "outline", onclick: () =>
      window.open(location.href, `console-${uuid}-${kind}`, "popup,width=900,height=640") }, "Own window"),
    takeOver);
  main.replaceChildren(h("section", {}, heading(`${kind === "serial" ? "Serial console" : "Screen"}: ${name}`),
    tools, status, screen));

  function say(text) { status.textContent = text; }

  function closed(code, reason) {
    if (stopped || destroyed) return;
    const said = last;
    last = null;
    const why = (said && said.reason) || reason || CLOSES[code] || `closed (${code})`;
    const again = (said && said.reconnect) || (!said && DROPPED.has(code)) ||
                  (fresh && TRANSIENT.has(code));
    if (!again || budget <= 0) {
      if (code === 4409) takeOver.hidden = false;
      say(`Disconnected: ${why}.`);
      return;
    }
    budget -= 1;
    say(`Disconnected: ${why}. Reconnecting (${RETRIES - budget}/${RETRIES})…`);
    clearTimeout(timer);
    timer = setTimeout(() => { fresh = true; connect(); }, 1000);
  }

  function control(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    else if (msg.type === "taken") { stopped = true; takeOver.hidden = false; say(`${msg.by} took this console over${msg.at ? ` at ${utcTime(msg.at)}` : ""}.`); }
    else if (msg.type === "closed") { last = msg; say(`Closed: ${msg.reason}`); }
  }

  function received() { fresh = false; budget = RETRIES; }  // it works: a full budget again

  async function socket() {
    const t = await api("POST", `/rest/machine/${uuid}/console/`, { body: { kind } });
    const url = new URL(t.url, location.origin);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (force && kind === "serial") url.searchParams.set("force", "1");
    const s = new WebSocket(url, ["binary"]);
    s.binaryType = "arraybuffer";
    return s;
  }

  async function connect() {
    stopped = false;
    let RFB = null;
    if (kind === "vnc") {  // before the socket: noVNC must see the server's first bytes
      say("Loading the VNC viewer…");
      try { RFB = await viewer(); } catch (e) {
        say(`Cannot load the VNC viewer: ${e.message}`);
        return;
      }
      if (destroyed) return;
    }
    say("Connecting…");
    let s;
    try {
      s = await socket();
    } catch (e) {
      if (destroyed) return;
      if (fresh && budget > 0 && !(e.status >= 400 && e.status < 500)) { closed(1006, errorText(e)); return; }
      say(`Cannot open the console: ${errorText(e)}`);
      return;
    }
    if (destroyed) { s.close(); return; }  // the page was left meanwhile
    ws = s;
    force = false;
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data === "string") control(ev.data); else received();
    });
    ws.addEventListener("close", (ev) => { if (ev.target === ws) closed(ev.code, ev.reason); });
    if (kind === "serial") serial(); else vnc(RFB);
  }

  function serial() {
    ws.addEventListener("open", () => {
      say("Connected.");
      if (fit) { fit.fit(); ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows })); }
      term.focus();
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") term.write(new Uint8Array(ev.data));
    });
  }

  async function viewer() {
    // noVNC is some forty modules: a load cut short (the browser saw the network change) is
    // tried again before the page gives up
    for (let attempt = 1; ; attempt++) {
      try { return (await import("/ui/static/vendor/novnc/core/rfb.js")).default; } catch (e) {
        if (attempt >= 3 || destroyed) throw e;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  function vnc(RFB) {
    if (rfb) { try { rfb.disconnect(); } catch { /* gone */ } }
    screen.replaceChildren();
    rfb = new RFB(screen, ws);  // noVNC takes our socket: we answer its control frames
    rfb.scaleViewport = true;
    say("Waiting for the screen…");
    rfb.addEventListener("connect", () => say("Connected."));
    rfb.addEventListener("securityfailure", (e) => say(`Refused: ${e.detail.reason || "security failure"}`));
  }

  if (kind === "serial") {
    loadStyle("/ui/static/vendor/xterm/css/xterm.css");
    try {
      await loadScript("/ui/static/vendor/xterm/lib/xterm.js");
      await loadScript("/ui/static/vendor/addon-fit/lib/addon-fit.js");
    } catch (e) { say(String(e.message)); return {}; }
    term = new window.Terminal({ convertEol: false, cursorBlink: true });
    if (window.FitAddon) { fit = new window.FitAddon.FitAddon(); term.loadAddon(fit); }
    term.open(screen);
    const enc = new TextEncoder();
    term.onData((d) => { if (ws && ws.readyState === 1) ws.send(enc.encode(d)); });
    window.addEventListener("resize", onResize);
  }
  function onResize() {
    if (fit && term) {
      fit.fit();
      if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  }
  connect();
  return {
    destroy() {
      stopped = destroyed = true;
      clearTimeout(timer);
      window.removeEventListener("resize", onResize);
      if (ws) ws.close();
      if (rfb) { try { rfb.disconnect(); } catch { /* gone */ } }
      if (term) term.dispose();
    },
  };
}
