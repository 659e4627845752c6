// Overview: what the service is doing now.
import { $, ago, dateTime, duration, fill } from "./dom.js";

export function mount(service) {
  const fact = (key) => $(`[data-fact="${key}"]`);
  let current = null;

  const uptime = () => {
    if (!current) return;
    const running = current.status === "running" || current.status === "deploying";
    fill(fact("uptime"), running && current.pid ? duration(Date.now() / 1000 - current.since) : "—");
  };

  service.onInfo((info) => {
    current = info;
    fill(fact("status"), info.status);
    fill(fact("health"), info.health);
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
  });
  setInterval(uptime, 1000);
}
