// Small DOM and formatting helpers. Data goes into the page as text only (never as HTML).

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Build an element: h("a", {href: "/x", class: "y", onclick: fn}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function show(el, visible = true) {
  if (el) el.hidden = !visible;
}

/** Show a message in place (kind: error, ok, info); an empty text clears it. */
export function notice(el, kind, text, ...extra) {
  if (!el) return;
  if (!text) {
    el.replaceChildren();
    return;
  }
  const role = kind === "error" ? "alert" : "status";
  fill(el, h("div", { class: `notice ${kind}`, role }, text, ...extra));
}

export function badge(value, title) {
  return h("span", { class: `badge ${value}`, title }, value);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// -- formatting ------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

export function clock(ts) {
  const d = new Date(ts * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function dateTime(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ts)}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function ago(ts) {
  if (ts === null || ts === undefined) return "never";
  const s = Date.now() / 1000 - ts;
  if (s < 45) return "just now";
  return `${duration(s).split(" ").slice(0, 2).join(" ")} ago`;
}

export function bytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

export function percent(n) {
  if (n === null || n === undefined || !isFinite(n)) return "—";
  return `${n.toFixed(n < 10 ? 1 : 0)} %`;
}

// -- shared by several pages -------------------------------------------------------------

/** Names in the order people expect: s2 before s10. */
export const naturalCompare = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" }).compare;

/** The badges shown while dployr cannot be reached: the last status is not known now. */
export const UNREACHABLE = "dployr cannot be reached: the status is unknown until it reconnects";

export function statusBadge(status, { offline = false, title } = {}) {
  if (offline) return h("span", { class: "badge unknown", title: UNREACHABLE }, "reconnecting");
  return badge(status, title);
}

export function healthBadge(health, { offline = false } = {}) {
  if (offline) return h("span", { class: "badge unknown", title: UNREACHABLE }, "unknown");
  return badge(health);
}

/** While a deploy runs: which deployment it is, and which older release keeps serving. */
export function servingNote(info) {
  if (info.deploying === null || info.deploying === undefined) return null;
  const serving = info.deployment === null || info.deployment === undefined ? "" : `, #${info.deployment} serves`;
  return h("span", { class: "serving small muted" }, `deploying #${info.deploying}${serving}`);
}

/** The address a service answers on, on the host this page was loaded from. */
export function serviceUrl(port) {
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `http://${host}:${port}`;
}

/** Bring a message into view if it is not (the person's eyes are on the control they used). */
export function reveal(el) {
  if (!el) return;
  const box = el.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) el.scrollIntoView({ block: "nearest" });
}
