// Live data: WebSocket feeds that reconnect by themselves, the connection indicator in the
// top bar, and the events feed every page listens to.

const RETRY_FIRST = 500;
const RETRY_MAX = 5000;

/**
 * A feed under /api/v1 that reconnects with a capped backoff until stopped.
 * `query()` is asked for the query string at every (re)connection, so a log feed can resume
 * from the last cursor it saw.
 */
export class Feed {
  constructor(path, { onMessage, onOpen, onDown, query } = {}) {
    this.path = path;
    this.onMessage = onMessage ?? (() => {});
    this.onOpen = onOpen ?? (() => {});
    this.onDown = onDown ?? (() => {});
    this.query = query ?? (() => "");
    this.delay = RETRY_FIRST;
    this.maxDelay = RETRY_MAX;
    this.stopped = true;
    this.socket = null;
    this.timer = null;
    this.open = false;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
    this.socket = null;
  }

  connect() {
    if (this.stopped) return;
    const url = new URL(`/api/v1${this.path}`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = this.query();
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.open = true;
      this.delay = RETRY_FIRST;
      this.onOpen();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      const wasOpen = this.open;
      this.open = false;
      if (this.stopped) return;
      this.onDown(wasOpen);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, this.maxDelay);
    });
  }
}

// -- the connection indicator ----------------------------------------------------------

const indicator = document.getElementById("connection");
const listeners = new Set();
let state = "connecting";
let wasDown = false;

function setState(next, text) {
  state = next;
  if (!indicator) return;
  indicator.dataset.state = next;
  const label = indicator.querySelector(".conn-text");
  if (label) label.textContent = text;
}

function emit(event) {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (error) {
      console.error(error);
    }
  }
}

function up(kind) {
  if (wasDown) {
    wasDown = false;
    emit({ type: "reconnected" });
  }
  if (kind === "live") setState("live", "Live");
  else setState("online", "Connected");
}

function down() {
  setState("offline", "Reconnecting…");
  if (!wasDown) {
    wasDown = true;
    // What the page shows is no longer known: pages stop showing the last status.
    emit({ type: "offline" });
  }
}

async function reachable() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * The events feed: every service's status, health and deployment changes. A daemon without
 * an events feed (an older one) still answers /healthz: then a heartbeat on /healthz tells
 * the indicator whether dployr is reachable, and each beat is passed on as a "tick" so
 * pages can refresh, while the feed is retried only now and then.
 */
const HEARTBEAT = 5000;
const EVENTS_RETRY_WITHOUT_FEED = 30_000;
let heartbeat = null;

async function beat() {
  if (await reachable()) {
    up("online");
    emit({ type: "tick" });
  } else {
    down();
  }
}

const events = new Feed("/events", {
  onMessage: (message) => emit(message),
  onOpen: () => {
    clearInterval(heartbeat);
    heartbeat = null;
    events.maxDelay = RETRY_MAX;
    up("live");
  },
  onDown: async () => {
    if (await reachable()) {
      up("online");
      emit({ type: "tick" });
      events.maxDelay = EVENTS_RETRY_WITHOUT_FEED;
      heartbeat ??= setInterval(beat, HEARTBEAT);
    } else {
      down();
      events.maxDelay = RETRY_MAX;
    }
  },
});

/** Call `fn` with each event, and with {type: "reconnected"} after an outage. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function connectionState() {
  return state;
}

let started = false;
export function startLive() {
  if (started) return;
  started = true;
  events.start();
}
