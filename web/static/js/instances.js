// Instances: each machine's CPU, memory and load, and the services it runs.
import { get } from "./api.js";
import { $, badge, bytes, debounce, fill, h, notice, percent, show } from "./dom.js";
import { onEvent, startLive } from "./live.js";

const list = $("#instances");
const errorBox = $("#instances-error");
let shown = "";

function meter(label, value, fraction, detail) {
  const bar = h("span");
  if (fraction !== null && isFinite(fraction)) bar.style.width = `${Math.min(100, Math.max(0, fraction * 100)).toFixed(1)}%`;
  return h("div", { class: "meter" },
    h("div", { class: "label muted small" }, label),
    h("div", { class: "value" }, value),
    fraction !== null ? h("div", { class: "bar", role: "presentation" }, bar) : null,
    detail ? h("div", { class: "small muted" }, detail) : null);
}

function card(instance) {
  const known = instance.cpu_percent !== undefined;
  const memoryFraction = instance.memory_total_bytes ? instance.memory_used_bytes / instance.memory_total_bytes : null;
  const load = Array.isArray(instance.load) ? instance.load.map((n) => n.toFixed(2)).join(" · ") : "—";
  const services = instance.services ?? [];
  return h("section", { class: "panel", "aria-labelledby": `instance-${instance.id}`, dataset: { instance: instance.name } },
    h("div", { class: "page-head" },
      h("div", {},
        h("h2", { id: `instance-${instance.id}` }, instance.name),
        h("p", { class: "muted small" }, `${instance.hostname} · dployr ${instance.version} · id ${instance.id}`)),
      h("span", { class: "muted" }, `${services.length} ${services.length === 1 ? "service" : "services"}`)),
    h("div", { class: "meters" },
      meter("CPU", known ? percent(instance.cpu_percent) : "—", known ? instance.cpu_percent / 100 : null),
      meter("Memory", known ? bytes(instance.memory_used_bytes) : "—", memoryFraction,
        instance.memory_total_bytes ? `of ${bytes(instance.memory_total_bytes)}` : null),
      meter("Load (1, 5, 15 min)", load, null)),
    known ? null : h("p", { class: "muted small" }, "This dployr daemon does not report CPU, memory and load yet."),
    h("h3", {}, "Services"),
    services.length === 0
      ? h("p", { class: "muted" }, "No services on this instance yet. ", h("a", { href: "/new" }, "Deploy one"), ".")
      : h("ul", { class: "plain" }, services.map((service) =>
        h("li", {},
          h("a", { class: "service-link", href: `/services/${service.name}` }, service.name),
          badge(service.status), badge(service.health),
          service.port ? h("span", { class: "muted small" }, `port ${service.port}`) : null))));
}

async function load() {
  try {
    const instances = await get("/instances");
    show($("#instances-loading"), false);
    notice(errorBox, "", "");
    const state = JSON.stringify(instances);
    if (state === shown) return;
    shown = state;
    fill(list, instances.map(card));
  } catch (error) {
    show($("#instances-loading"), false);
    notice(errorBox, "error", `Could not load the instances: ${error.message}`);
  }
}

onEvent(debounce(load, 250));
startLive();
await load();
setInterval(load, 10_000);
