// Instances: each machine of the cluster (connected, away or pending), its address, last
// contact, version, CPU, memory and disk, and the services it runs; above them, the control
// plane that served the page and the one that leads the cluster.
import { get } from "./api.js";
import { $, ago, badge, bytes, debounce, fill, h, notice, percent, show } from "./dom.js";
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

const STATE_WORDS = {
  connected: "connected",
  away: "away",
  pending: "pending",
};

function stateLine(instance) {
  if (instance.state === "pending") return "Added: its agent has not joined yet.";
  if (instance.state === "away") {
    const seen = instance.last_seen ? `last seen ${ago(instance.last_seen)}` : "never seen";
    return `Away (${seen}): its services keep running there, shown as last known.`;
  }
  const connected = instance.address ? `Connected from ${instance.address}.` : "Connected.";
  // A control plane started with --no-local-services: new services go to its agents.
  return instance.takes_services === false ? `${connected} Takes no new services.` : connected;
}

function card(instance) {
  const known = instance.cpu_percent !== null && instance.cpu_percent !== undefined;
  const memoryFraction = instance.memory_total_bytes ? instance.memory_used_bytes / instance.memory_total_bytes : null;
  const disk = instance.disk_full ? "full" : (instance.disk_free_bytes != null ? `${bytes(instance.disk_free_bytes)} free` : "—");
  const services = instance.services ?? [];
  const facts = [
    instance.hostname,
    instance.version ? `dployr ${instance.version}` : null,
    instance.address,
    instance.last_seen ? `seen ${ago(instance.last_seen)}` : null,
  ].filter(Boolean).join(" · ");
  return h("section", { class: "panel", "aria-labelledby": `instance-${instance.name}`, dataset: { instance: instance.name, state: instance.state } },
    h("div", { class: "page-head" },
      h("div", {},
        h("h2", { id: `instance-${instance.name}` }, instance.name, " ",
          badge(STATE_WORDS[instance.state] ?? instance.state)),
        h("p", { class: "muted small", dataset: { facts: "" } }, facts || "—"),
        h("p", { class: "small", dataset: { stateLine: "" } }, stateLine(instance))),
      h("span", { class: "muted" }, `${services.length} ${services.length === 1 ? "service" : "services"}`)),
    h("div", { class: "meters" },
      meter("CPU", known ? percent(instance.cpu_percent) : "—", known ? instance.cpu_percent / 100 : null),
      meter("Memory", instance.memory_used_bytes != null ? bytes(instance.memory_used_bytes) : "—", memoryFraction,
        instance.memory_total_bytes ? `of ${bytes(instance.memory_total_bytes)}` : null),
      meter("Disk", disk, null)),
    h("h3", {}, "Services"),
    services.length === 0
      ? h("p", { class: "muted" }, "No services on this instance yet. ", h("a", { href: "/new" }, "Deploy one"), ".")
      : h("ul", { class: "plain" }, services.map((service) =>
        h("li", {},
          h("a", { class: "service-link", href: `/services/${service.name}` }, service.name),
          badge(service.status), badge(service.health),
          service.stale ? h("span", { class: "muted small", title: "its instance is away: as last known" }, "last known") : null,
          service.port ? h("span", { class: "muted small" }, `port ${service.port}`) : null))));
}

const planesBox = $("#control-planes");
let planesShown = "";

function planeName(plane) {
  return `${plane.url} (${plane.id})`;
}

function showPlanes(planes) {
  const state = JSON.stringify(planes.map((p) => [p.id, p.url, p.leads, p.self]));
  if (state === planesShown) return;
  planesShown = state;
  const answered = planes.find((p) => p.self);
  const leader = planes.find((p) => p.leads);
  fill($("[data-answered]", planesBox), answered ? `This page is served by the control plane at ${planeName(answered)}.` : "");
  let leads = "No control plane leads right now: another takes over within seconds.";
  if (leader && leader === answered) leads = planes.length === 1 ? "It leads the cluster: it is the only one." : "It leads the cluster.";
  else if (leader) leads = `The control plane at ${planeName(leader)} leads the cluster.`;
  fill($("[data-leader]", planesBox), leads);
  // With several, each one: which leads, which answered.
  fill($("[data-planes]", planesBox), planes.length < 2 ? [] : planes.map((plane) =>
    h("li", { dataset: { plane: plane.id } }, plane.url, " ",
      h("span", { class: "muted" }, plane.id),
      plane.leads ? [" ", badge("leader")] : null,
      plane.self ? [" ", h("span", { class: "muted" }, "(this one)")] : null)));
  show(planesBox, true);
}

async function loadPlanes() {
  try {
    showPlanes(await get("/control-planes"));
  } catch (error) {
    // A daemon older than this page has no such route: the page shows its instances alone.
    if (error.unsupported) return;
    planesShown = "";
    fill($("[data-answered]", planesBox), `Could not load the control planes: ${error.message}`);
    fill($("[data-leader]", planesBox));
    fill($("[data-planes]", planesBox));
    show(planesBox, true);
  }
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
await Promise.all([load(), loadPlanes()]);
setInterval(load, 10_000);
setInterval(loadPlanes, 10_000);
