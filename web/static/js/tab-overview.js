// Overview: what the service is doing now; for a failed one, the output it died with.
import { get, sentence, svc } from "./api.js";
import { $, ago, dateTime, duration, fill, h, show } from "./dom.js";

const EXCERPT = 20;

export function mount(service) {
  const fact = (key) => $(`[data-fact="${key}"]`);
  let current = null;
  let excerptFor = null; // the restarts count the shown excerpt belongs to

  /** The last lines the process wrote (stdout and stderr) before it failed. */
  async function showCrash(info) {
    if (info.status !== "failed") {
      excerptFor = null;
      show($("#crash"), false);
      return;
    }
    const key = `${info.restarts}:${info.since}`;
    if (excerptFor === key) return;
    excerptFor = key;
    fill($("#crash-reason"), info.message ? sentence(info.message) : "The process stopped and was not restarted.");
    const output = $("#crash-output");
    try {
      const page = await get(`${svc(service.name)}/logs?tail=${EXCERPT}&streams=stdout,stderr`);
      fill(output, page.lines.length
        ? page.lines.map((line) => h("span", { class: line.stream }, `${line.line}\n`))
        : h("span", { class: "muted" }, "The process wrote nothing before it stopped."));
    } catch (error) {
      excerptFor = null;
      fill(output, h("span", { class: "muted" }, `Could not read the log: ${error.message}`));
    }
    show($("#crash"), true);
  }

  const uptime = () => {
    if (!current) return;
    const running = current.status === "running" || current.status === "deploying";
    fill(fact("uptime"), running && current.pid ? duration(Date.now() / 1000 - current.since) : "—");
  };

  service.onInfo((info) => {
    current = info;
    // Status and health are service.js's: it says "unknown (reconnecting)" while offline.
    fill(fact("pid"), info.pid ?? "—");
    fill(fact("restarts"), info.restarts);
    const active = info.deployment === null ? "none yet" : `#${info.deployment}`;
    fill(fact("deployment"), info.deploying ? `${active} (deploying #${info.deploying})` : active);
    fill(fact("port"), info.port ?? "—");
    fill(fact("instance"), info.instance);
    const last = fact("last_deploy");
    fill(last, info.last_deploy_at ? ago(info.last_deploy_at) : "—");
    last.title = dateTime(info.last_deploy_at);
    fill(fact("message"), info.message ? `Last event: ${info.message}` : "");
    uptime();
    showCrash(info);
  });
  setInterval(uptime, 1000);
  if ($("#job-panel")) import("./job-panel.js").then((panel) => panel.mount(service));
}
