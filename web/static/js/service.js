// The service page: its header (badges and actions) on every tab, and the tab itself.
import { del, get, post, sentence, svc } from "./api.js";
import { $, $$, debounce, fill, h, healthBadge, notice, serviceUrl, servingNote, statusBadge } from "./dom.js";
import { followDeploy, lastCursor } from "./deploy-progress.js";
import { connectionState, onEvent, startLive } from "./live.js";

const name = document.body.dataset.service;
const tab = document.body.dataset.tab;
const message = $("#action-message");
const progress = $("#deploy-progress");
const listeners = new Set();
let info = null;
let busy = false;
let deploying = null;

/** Which actions make sense in each status. */
const POSSIBLE = {
  running: ["stop", "restart", "redeploy", "delete"],
  restarting: ["stop", "restart", "redeploy", "delete"],
  stopped: ["start", "redeploy", "delete"],
  failed: ["start", "restart", "redeploy", "delete"],
  deploying: ["stop", "delete"],
};

/** Show a badge's word, colour and title in an element that stays in place. */
function setBadge(el, made) {
  fill(el, made.textContent).className = made.className;
  el.title = made.title;
}

/**
 * The overview's status and health facts, kept here with the badges rather than in the tab's
 * module: a daemon that goes away before the tab's module is loaded leaves the page with
 * only this script, and the facts must not keep saying what the service did last.
 */
function showFacts(current) {
  const status = $('[data-fact="status"]');
  const health = $('[data-fact="health"]');
  if (status) fill(status, current ? current.status : "unknown (reconnecting)");
  if (health) fill(health, current ? current.health : "unknown");
}

function renderHeader() {
  if (info === null) {
    // The service is not read yet, but an action can already run (a click on a page still
    // loading, on a slow machine): only say whether the buttons may be used.
    for (const button of $$("#service-actions button")) button.disabled = busy;
    return;
  }
  const offline = connectionState() === "offline";
  setBadge($("#status-badge"), statusBadge(info.status, { offline, title: info.message ? `Status: ${info.message}` : "Status" }));
  setBadge($("#health-badge"), healthBadge(info.health, { offline }));
  showFacts(offline ? null : info);
  fill($("#serving"), offline ? null : servingNote(info));
  fill($("#service-url"), info.port ? h("a", { href: serviceUrl(info.port), class: "mono" }, serviceUrl(info.port)) : null);
  fill($("#service-description"), info.description);
  const possible = new Set(POSSIBLE[info.status] ?? ["delete"]);
  if (info.deployment === null) {
    possible.delete("start");
    possible.delete("restart");
  }
  // A job between runs is stopped, yet scheduled: Stop ends its schedule (job-panel.js).
  if ($("#job-panel")?.dataset.scheduled === "true") possible.add("stop");
  for (const button of $$("#service-actions button")) {
    button.disabled = busy || !possible.has(button.dataset.action);
  }
}

async function refresh() {
  try {
    info = await get(svc(name));
  } catch (error) {
    if (error.status === 404) {
      notice(message, "error", `${name} no longer exists: it was deleted.`);
      for (const button of $$("#service-actions button")) button.disabled = true;
      return;
    }
    notice(message, "error", `Could not refresh ${name}: ${error.message}`);
    return;
  }
  renderHeader();
  for (const listener of listeners) listener(info);
}

const WORDS = {
  start: ["Starting", "Started"],
  stop: ["Stopping", "Stopped"],
  restart: ["Restarting", "Restarted"],
};

async function act(action) {
  if (action === "delete") {
    $("#delete-dialog").showModal();
    return;
  }
  if (action === "redeploy") {
    await redeploy();
    return;
  }
  busy = true;
  renderHeader();
  notice(message, "info", `${WORDS[action][0]} ${name}…`);
  try {
    info = await post(`${svc(name)}/${action}`);
    notice(message, "ok", `${WORDS[action][1]} ${name}.`);
  } catch (error) {
    notice(message, "error", `Could not ${action} ${name}: ${sentence(error.message)}`);
  } finally {
    busy = false;
  }
  await refresh();
}

/** Deploy the stored settings again, and show the deploy as it happens. */
export async function redeploy() {
  if (deploying) return deploying;
  busy = true;
  renderHeader();
  notice(message, "info", `Starting a deploy of ${name}…`);
  const run = async () => {
    try {
      const after = await lastCursor(name);
      const deployment = await post(`${svc(name)}/deploy`);
      notice(message, "", "");
      busy = false;
      await refresh();
      const record = await followDeploy(progress, name, deployment, after);
      notice(message, record.status === "succeeded" ? "ok" : "error",
        record.status === "succeeded" ? `Redeployed ${name} (deployment ${record.id}).` : `Deployment ${record.id} of ${name} failed; the previous release keeps running if there was one.`);
    } catch (error) {
      notice(message, "error", `Could not redeploy ${name}: ${sentence(error.message)}`);
    } finally {
      busy = false;
      deploying = null;
      await refresh();
    }
  };
  deploying = run();
  return deploying;
}

$("#delete-dialog").addEventListener("close", async () => {
  if ($("#delete-dialog").returnValue !== "delete") return;
  busy = true;
  renderHeader();
  notice(message, "info", `Deleting ${name}…`);
  try {
    await del(svc(name));
    location.assign(`/services?deleted=${encodeURIComponent(name)}`);
  } catch (error) {
    busy = false;
    notice(message, "error", `Could not delete ${name}: ${sentence(error.message)}`);
    await refresh();
  }
});

for (const button of $$("#service-actions button")) {
  button.addEventListener("click", () => act(button.dataset.action));
}

const context = {
  name,
  get info() {
    return info;
  },
  onInfo(fn) {
    listeners.add(fn);
    if (info) fn(info);
  },
  refresh,
  redeploy,
};

const later = debounce(refresh, 200);
onEvent((event) => {
  if (event.type === "offline") {
    // The last status is not known now (even the one this page was rendered with).
    if (info) renderHeader();
    else {
      setBadge($("#status-badge"), statusBadge("", { offline: true }));
      setBadge($("#health-badge"), healthBadge("", { offline: true }));
      showFacts(null);
    }
  }
  if (event.type === "reconnected" || event.type === "tick" || event.service === name) later();
});

startLive();
await refresh();
const parts = tab === "settings" ? ["settings", "environment"] : [tab];
const modules = await Promise.all(parts.map((part) => import(`./tab-${part}.js`)));
await Promise.all(modules.map((module) => module.mount(context)));
