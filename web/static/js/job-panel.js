// A job's runs on its overview: the next due time, the last runs, and Run now.
import { get, post, sentence, svc } from "./api.js";
import { $, badge, dateTime, debounce, duration, fill, h, notice, show } from "./dom.js";
import { onEvent } from "./live.js";

export async function mount(service) {
  const errorBox = $("#job-error");
  const button = $("#run-now");
  let shown = "";

  function row(run) {
    const took = run.started_at == null ? "—"
      : run.ended_at == null ? "running" : duration(run.ended_at - run.started_at);
    return h("tr", { dataset: { run: run.id } },
      h("td", { class: "lead", "data-label": "Run" }, h("strong", {}, `#${run.id}`)),
      h("td", { "data-label": "Status" }, badge(run.status)),
      h("td", { "data-label": "Trigger" }, run.trigger),
      h("td", { "data-label": "Due" }, run.scheduled_at == null ? "—" : dateTime(run.scheduled_at)),
      h("td", { "data-label": "Started" }, run.started_at == null ? "—" : dateTime(run.started_at)),
      h("td", { "data-label": "Took" }, took),
      h("td", { "data-label": "Note", class: "small muted" }, run.message ? sentence(run.message) : ""),
    );
  }

  async function load() {
    let job;
    try {
      job = await get(`${svc(service.name)}/job?limit=10`);
    } catch (error) {
      notice(errorBox, "error", `Could not load the runs: ${error.message}`);
      return;
    }
    const state = JSON.stringify(job);
    if (state === shown) return;
    shown = state;
    const scheduled = String(job.next_run != null);
    if ($("#job-panel").dataset.scheduled !== scheduled) {
      $("#job-panel").dataset.scheduled = scheduled;
      service.refresh(); // which actions make sense depends on it
    }
    fill($("#job-next"), job.next_run == null
      ? (job.schedule ? "not scheduled (stopped)" : "when asked")
      : dateTime(job.next_run));
    show($("#runs-empty"), job.runs.length === 0);
    show($("#runs-table"), job.runs.length > 0);
    fill($("#runs-rows"), job.runs.map(row));
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const run = await post(`${svc(service.name)}/runs`);
      notice(errorBox, "ok", `Run ${run.id} started.`);
    } catch (error) {
      notice(errorBox, "error", `Could not start a run: ${sentence(error.message)}`);
    } finally {
      button.disabled = false;
      await load();
    }
  });

  const later = debounce(load, 200);
  onEvent((event) => {
    if (event.type === "reconnected" || event.type === "tick" || event.service === service.name) later();
  });
  service.onInfo(() => later());
  await load();
}
