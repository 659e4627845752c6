// Deployments: history, each one's build log, and rollback to a kept release.
import { get, post, sentence, svc } from "./api.js";
import { $, badge, dateTime, debounce, duration, fill, h, notice, show } from "./dom.js";
import { onEvent } from "./live.js";

export async function mount(service) {
  const rows = $("#deployments-rows");
  const errorBox = $("#deployments-error");
  const open = new Set(); // deployments whose build log is shown
  let deployments = [];
  let shown = "";

  async function buildLog(deployment, target) {
    fill(target, h("p", { class: "loading" }, "Loading the build log…"));
    try {
      const since = new Date((deployment.created_at - 1) * 1000).toISOString();
      const page = await get(`${svc(service.name)}/logs?since=${encodeURIComponent(since)}&limit=10000`);
      const mine = page.lines.filter((line) => line.deployment === deployment.id && (line.stream === "build" || line.stream === "system"));
      if (mine.length === 0) {
        const tail = deployment.output_tail ?? [];
        fill(target, tail.length
          ? h("pre", { class: "deploy-log" }, tail.join("\n"))
          : h("p", { class: "muted" }, "No build output for this deployment (it had no build command, or its lines have left the log history)."));
        return;
      }
      fill(target, h("pre", { class: "deploy-log", tabindex: "0", "aria-label": `Build log of deployment ${deployment.id}` },
        mine.map((line) => h("span", { class: line.stream }, `${line.line}\n`))));
    } catch (error) {
      fill(target, h("div", { class: "notice error" }, `Could not load the build log: ${error.message}`));
    }
  }

  /** Ask first: a rollback replaces the running release. */
  function confirmRollback(deployment, button) {
    const dialog = $("#rollback-dialog");
    const active = service.info?.deployment;
    fill($("#rollback-text"),
      `${service.name} switches from ${active ? `deployment #${active}` : "its running release"} to the release of deployment #${deployment.id}`,
      deployment.revision ? ` (${deployment.revision.slice(0, 12)})` : "",
      ". Nothing is rebuilt, and the switch drops no request.");
    fill($("#confirm-rollback"), `Roll back to #${deployment.id}`);
    dialog.returnValue = "";
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "rollback") rollback(deployment, button);
      else button.focus();
    }, { once: true });
    dialog.showModal();
  }

  async function rollback(deployment, button) {
    button.disabled = true;
    notice(errorBox, "info", `Rolling back ${service.name} to deployment ${deployment.id}…`);
    try {
      const made = await post(`${svc(service.name)}/rollback`, { deployment: deployment.id });
      notice(errorBox, "ok", `Rolling back to deployment ${deployment.id} as deployment ${made.id}: no rebuild, its release is reused, and the switch drops no request.`);
    } catch (error) {
      const text = error.unsupported ? "This dployr daemon cannot roll back yet." : sentence(error.message);
      notice(errorBox, "error", `Could not roll back: ${text}`);
    } finally {
      button.disabled = false;
      await load();
      await service.refresh();
    }
  }

  /** The release folder a deployment runs: its own, or for a rollback the one it went back to. */
  const folder = (deployment) => deployment?.release ?? deployment?.id;

  function row(deployment) {
    const active = service.info?.deployment === deployment.id;
    const activeFolder = folder(deployments.find((d) => d.id === service.info?.deployment));
    const finished = deployment.finished_at ?? null;
    const logCell = h("td", { colspan: "6", class: "lead wide" });
    const logRow = h("tr", { class: "build-log-row", hidden: !open.has(deployment.id) }, logCell);
    const toggle = h("button", {
      type: "button",
      "aria-expanded": String(open.has(deployment.id)),
      "aria-controls": `build-log-${deployment.id}`,
      onclick: () => {
        const opening = !open.has(deployment.id);
        if (opening) open.add(deployment.id);
        else open.delete(deployment.id);
        toggle.setAttribute("aria-expanded", String(opening));
        logRow.hidden = !opening;
        if (opening) buildLog(deployment, logCell);
      },
    }, "Build log");
    logCell.id = `build-log-${deployment.id}`;
    if (open.has(deployment.id)) buildLog(deployment, logCell);
    // Rolling back to the release that runs now would change nothing.
    const canRollback = deployment.status === "succeeded" && !active && folder(deployment) !== activeFolder;
    const rollbackButton = canRollback
      ? h("button", { type: "button", onclick: () => confirmRollback(deployment, rollbackButton) }, "Rollback")
      : null;
    return [
      h("tr", { dataset: { deployment: deployment.id } },
        h("td", { class: "lead", "data-label": "Deployment" }, h("strong", {}, `#${deployment.id}`), " ", active ? badge("active", "The running release") : null,
          deployment.rollback_of != null ? h("div", { class: "small muted" }, `rollback to #${deployment.rollback_of}`) : null),
        h("td", { "data-label": "Status" }, badge(deployment.status),
          deployment.error ? h("div", { class: "small muted" }, sentence(deployment.error)) : null),
        h("td", { "data-label": "Revision", class: "mono", title: deployment.revision ?? "" }, deployment.revision ? deployment.revision.slice(0, 12) : "—"),
        h("td", { "data-label": "Started" }, dateTime(deployment.created_at)),
        h("td", { "data-label": "Took" }, finished ? duration(finished - deployment.created_at) : "running"),
        h("td", { "data-label": "Actions" }, h("span", { class: "actions" }, toggle, rollbackButton)),
      ),
      logRow,
    ];
  }

  async function load() {
    try {
      deployments = await get(`${svc(service.name)}/deployments?limit=50`);
    } catch (error) {
      show($("#deployments-loading"), false);
      notice(errorBox, "error", `Could not load the deployments: ${error.message}`);
      return;
    }
    const state = JSON.stringify([deployments, service.info?.deployment]);
    show($("#deployments-loading"), false);
    if (state === shown) return;
    shown = state;
    show($("#deployments-empty"), deployments.length === 0);
    show($("#deployments-table"), deployments.length > 0);
    fill(rows, deployments.map(row));
  }

  const later = debounce(load, 200);
  onEvent((event) => {
    if (event.type === "reconnected" || event.type === "tick" || event.service === service.name) later();
  });
  service.onInfo(() => later());
  await load();
}
