// The Services page: every service, its badges, and CPU/memory sparklines, kept live.
import { get, svc } from "./api.js";
import { $, ago, badge, bytes, dateTime, debounce, fill, h, notice, percent, show } from "./dom.js";
import { onEvent, startLive } from "./live.js";
import { sparkline } from "./sparkline.js";

const rows = $("#services-rows");
const errorBox = $("#services-error");
let services = [];
let metricsSupported = true;
const metrics = new Map(); // name -> samples

const flash = new URLSearchParams(location.search).get("deleted");
if (flash) {
  notice(errorBox, "ok", `Deleted ${flash}.`);
  history.replaceState(null, "", "/services");
}

function row(service) {
  const samples = metrics.get(service.name) ?? [];
  const last = samples.at(-1);
  const cpu = h("canvas", { class: "spark", "aria-hidden": "true", dataset: { spark: "cpu" } });
  const memory = h("canvas", { class: "spark", "aria-hidden": "true", dataset: { spark: "memory" } });
  const tr = h(
    "tr",
    { dataset: { service: service.name } },
    h("td", { class: "lead", "data-label": "Service" },
      h("a", { class: "service-link", href: `/services/${service.name}` }, service.name)),
    h("td", { "data-label": "Instance" }, service.instance),
    h("td", { "data-label": "Status", dataset: { cell: "status" } }, badge(service.status, service.message || undefined)),
    h("td", { "data-label": "Health", dataset: { cell: "health" } }, badge(service.health)),
    h("td", { "data-label": "Port", class: "num" }, service.port ?? "—"),
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

let shown = "";

function render() {
  const state = JSON.stringify([services, [...metrics], metricsSupported]);
  if (state === shown) return;
  shown = state;
  show($("#services-loading"), false);
  show($("#services-empty"), services.length === 0);
  show($("#services-table"), services.length > 0);
  // Keep the keyboard focus on the same service's link across a refresh.
  const focused = document.activeElement?.closest?.("tr[data-service]")?.dataset.service;
  fill(rows, services.map(row));
  if (focused) rows.querySelector(`tr[data-service="${CSS.escape(focused)}"] a`)?.focus();
}

async function load() {
  try {
    services = await get("/services");
    if (!flash || errorBox.querySelector(".error")) notice(errorBox, "", "");
    render();
  } catch (error) {
    show($("#services-loading"), false);
    notice(errorBox, "error", `Could not load the services: ${error.message}`);
  }
}

async function loadMetrics() {
  if (!metricsSupported) return;
  await Promise.all(
    services.map(async (service) => {
      try {
        const data = await get(`${svc(service.name)}/metrics?since=15m`);
        metrics.set(service.name, data.points ?? []);
      } catch (error) {
        if (error.unsupported) metricsSupported = false;
      }
    }),
  );
  render();
}

/** Apply an event to its row at once; the full refresh follows. */
function patchRow(event) {
  const tr = rows.querySelector(`tr[data-service="${CSS.escape(event.service ?? "")}"]`);
  if (!tr) return;
  if (event.type === "status") fill(tr.querySelector('[data-cell="status"]'), badge(event.status));
  if (event.type === "health") fill(tr.querySelector('[data-cell="health"]'), badge(event.health));
}

const refresh = debounce(load, 250);
onEvent((event) => {
  patchRow(event);
  refresh();
  if (event.type === "reconnected") loadMetrics();
});

startLive();
await load();
await loadMetrics();
setInterval(loadMetrics, 30_000);
