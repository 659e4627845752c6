// The Services page: every service, its badges, restarts and CPU/memory, kept live.
// Fifty services or more: natural order (s2 before s10), a search box, a sort by status,
// and one metrics request for all of them per refresh.
import { get } from "./api.js";
import {
  $, ago, bytes, dateTime, debounce, fill, h, healthBadge, naturalCompare, notice, percent,
  serviceUrl, servingNote, show, statusBadge,
} from "./dom.js";
import { connectionState, onEvent, startLive } from "./live.js";
import { sparkline } from "./sparkline.js";

const METRICS_EVERY = 15_000;
const SPARK_POINTS = 60; // fifteen minutes of refreshes

/** Sorting by status puts what needs a look first. */
const STATUS_ORDER = ["failed", "restarting", "deploying", "running", "stopped"];

const rows = $("#services-rows");
const errorBox = $("#services-error");
const search = $("#services-search");
const sortBy = $("#services-sort");
const count = $("#services-count");
let services = [];
let loaded = false;
let metricsSupported = true;
const metrics = new Map(); // name -> samples, oldest first, gathered refresh by refresh

const flash = new URLSearchParams(location.search).get("deleted");
if (flash) {
  notice(errorBox, "ok", `Deleted ${flash}.`);
  history.replaceState(null, "", "/services");
}

const offline = () => connectionState() === "offline";

function row(service) {
  const samples = metrics.get(service.name) ?? [];
  const last = samples.at(-1);
  const cpu = h("canvas", { class: "spark", "aria-hidden": "true", dataset: { spark: "cpu" } });
  const memory = h("canvas", { class: "spark", "aria-hidden": "true", dataset: { spark: "memory" } });
  const down = offline();
  const tr = h(
    "tr",
    { dataset: { service: service.name } },
    h("td", { class: "lead", "data-label": "Service" },
      h("a", { class: "service-link", href: `/services/${service.name}` }, service.name)),
    h("td", { "data-label": "Instance", dataset: { cell: "instance" } }, service.instance,
      service.stale ? h("span", { class: "muted small", title: "this instance is away: the service is shown as last known" }, " (away)") : null),
    h("td", { "data-label": "Status", dataset: { cell: "status" } },
      h("span", { class: "status-cell" },
        statusBadge(service.status, { offline: down, title: service.message || undefined }),
        down ? null : servingNote(service))),
    h("td", { "data-label": "Health", dataset: { cell: "health" } }, healthBadge(service.health, { offline: down })),
    h("td", { "data-label": "Restarts", class: "num", dataset: { cell: "restarts" } }, String(service.restarts ?? 0)),
    h("td", { "data-label": "URL", dataset: { cell: "url" } },
      service.port ? h("a", { href: serviceUrl(service.port), class: "mono" }, serviceUrl(service.port)) : "—"),
    h("td", { "data-label": "Last deploy", title: dateTime(service.last_deploy_at) }, ago(service.last_deploy_at)),
    h("td", { "data-label": "CPU" }, h("span", { class: "spark-cell" }, cpu, metricsSupported ? percent(last?.cpu_percent) : "—")),
    h("td", { "data-label": "Memory" }, h("span", { class: "spark-cell" }, memory, metricsSupported ? bytes(last?.memory_rss_bytes) : "—")),
  );
  requestAnimationFrame(() => {
    sparkline(cpu, samples.map((s) => s.cpu_percent), { floor: 5 });
    sparkline(memory, samples.map((s) => s.memory_rss_bytes), { floor: 1, color: "#7c3aed" });
  });
  return tr;
}

/** The services to show, in the chosen order, that match the search. */
function visible() {
  const words = search.value.trim().toLowerCase();
  const matching = words ? services.filter((s) => s.name.toLowerCase().includes(words)) : [...services];
  const rank = (s) => {
    const at = STATUS_ORDER.indexOf(s.status);
    return at < 0 ? STATUS_ORDER.length : at;
  };
  if (sortBy.value === "status") matching.sort((a, b) => rank(a) - rank(b) || naturalCompare(a.name, b.name));
  else matching.sort((a, b) => naturalCompare(a.name, b.name));
  return matching;
}

let shown = "";

function render() {
  if (!loaded) return;
  const list = visible();
  const state = JSON.stringify([list, [...metrics], metricsSupported, offline()]);
  if (state === shown) return;
  shown = state;
  show($("#services-loading"), false);
  show($("#services-empty"), services.length === 0);
  show($("#services-tools"), services.length > 0);
  show($("#services-table"), list.length > 0);
  show($("#services-none"), services.length > 0 && list.length === 0);
  const total = `${services.length} ${services.length === 1 ? "service" : "services"}`;
  fill(count, list.length === services.length ? total : `${list.length} of ${total}`);
  // Keep the keyboard focus on the same service's link across a refresh.
  const focused = document.activeElement?.closest?.("tr[data-service]")?.dataset.service;
  fill(rows, list.map(row));
  if (focused) rows.querySelector(`tr[data-service="${CSS.escape(focused)}"] a`)?.focus();
}

async function load() {
  try {
    services = await get("/services");
    loaded = true;
    if (!flash || errorBox.querySelector(".error")) notice(errorBox, "", "");
    render();
  } catch (error) {
    show($("#services-loading"), false);
    notice(errorBox, "error", `Could not load the services: ${error.message}`);
    render();
  }
}

/** The last sample of every running service, in one request. */
async function loadMetrics() {
  if (!metricsSupported || offline()) return;
  let data;
  try {
    data = await get("/metrics/latest");
  } catch (error) {
    if (error.unsupported) metricsSupported = false;
    render();
    return;
  }
  const running = new Set();
  for (const sample of data.samples ?? []) {
    running.add(sample.service);
    const samples = metrics.get(sample.service) ?? [];
    if (samples.at(-1)?.ts !== sample.ts) samples.push(sample);
    metrics.set(sample.service, samples.slice(-SPARK_POINTS));
  }
  for (const name of metrics.keys()) if (!running.has(name)) metrics.delete(name);
  render();
}

/** Apply an event to its row at once; the full refresh follows. */
function patchRow(event) {
  const tr = rows.querySelector(`tr[data-service="${CSS.escape(event.service ?? "")}"]`);
  if (!tr) return;
  if (event.type === "status") fill(tr.querySelector('[data-cell="status"]'), statusBadge(event.status));
  if (event.type === "health") fill(tr.querySelector('[data-cell="health"]'), healthBadge(event.health));
}

const refresh = debounce(load, 250);
onEvent((event) => {
  if (event.type === "offline") {
    render(); // every badge says "reconnecting" until dployr answers again
    return;
  }
  patchRow(event);
  refresh();
  if (event.type === "reconnected") loadMetrics();
});

search.addEventListener("input", render);
sortBy.addEventListener("change", render);

startLive();
await load();
await loadMetrics();
setInterval(loadMetrics, METRICS_EVERY);
