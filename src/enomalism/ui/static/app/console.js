// A machine's consoles: the serial terminal (xterm.js) and the screen (noVNC), over the
// console endpoints (docs/console.md): a single-use ticket from POST .../console/, then a
// WebSocket whose binary frames are the console's bytes and whose text frames are JSON
// control messages (ping/pong, taken, closed). The page reconnects by itself, with a new
// ticket, unless the reason says that would not help.

const CLOSES = {
  4401: "the ticket or token was refused (expired or used)",
  4403: "you may not use this machine's console",
  4404: "no such machine",
  4409: "someone else has this console open",
  4500: "the hypervisor refused",
  1006: "the connection broke",
};
const FINAL = new Set([4403, 4404, 4409]);  // reconnecting would not help

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (document.querySelector(`script[src="${src}"]`)) { resolve(); return; }
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
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
    if (stopped) return;
    const why = reason || CLOSES[code] || `closed (${code})`;
    if (code === 4409) takeOver.hidden = false;
    if (FINAL.has(code)) { say(`Disconnected: ${why}.`); return; }
    say(`Disconnected: ${why}. Reconnecting…`);
    clearTimeout(timer);
    timer = setTimeout(connect, 2000);
  }

  function control(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    else if (msg.type === "taken") { stopped = true; takeOver.hidden = false; say(`${msg.by} took this console over.`); }
    else if (msg.type === "closed") say(`Closed: ${msg.reason}`);
  }

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
    say("Connecting…");
    try {
      ws = await socket();
    } catch (e) {
      say(`Cannot open the console: ${errorText(e)}`);
      return;
    }
    force = false;
    ws.addEventListener("message", (ev) => { if (typeof ev.data === "string") control(ev.data); });
    ws.addEventListener("close", (ev) => closed(ev.code, ev.reason));
    if (kind === "serial") serial(); else vnc();
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

  async function vnc() {
    const { default: RFB } = await import("/ui/static/vendor/novnc/core/rfb.js");
    if (rfb) { try { rfb.disconnect(); } catch { /* gone */ } }
    screen.replaceChildren();
    rfb = new RFB(screen, ws);  // noVNC takes our socket: we answer its control frames
    rfb.scaleViewport = true;
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
      stopped = true;
      clearTimeout(timer);
      window.removeEventListener("resize", onResize);
      if (ws) ws.close();
      if (rfb) { try { rfb.disconnect(); } catch { /* gone */ } }
      if (term) term.dispose();
    },
  };
}
