// Settings: stored at once, applied at the next deploy; nothing is restarted.
import { get, patch, sentence, svc } from "./api.js";
import { $, $$, h, notice, reveal, show } from "./dom.js";

const LABELS = {
  port: "port",
  build_cmd: "build command",
  run_cmd: "run command",
  working_dir: "working dir",
  description: "description",
  health_check: "health check",
  health: "health check",
  source: "source",
  stop_grace: "stop grace",
};
const HEALTH_NUMBERS = ["interval", "timeout", "start_period", "failures", "successes", "restart_after"];

export async function mount(service) {
  const form = $("#settings-form");
  const message = $("#settings-message");
  const redeployButton = $("#settings-redeploy");
  let loaded = null;
  let richHealth = false;

  const field = (name) => form.querySelector(`#s-${name}`);
  const healthField = (name) => form.querySelector(`#h-${name}`);

  function healthKindChanged() {
    const kind = healthField("kind").value;
    for (const el of $$("[data-health]", form)) {
      const part = el.dataset.health;
      el.hidden = part === "advanced" ? !richHealth || !kind : part !== kind;
    }
  }

  /** The health check's kind: the stored one, else HTTP when there is a path. */
  function effectiveKind(settings) {
    return settings.health?.kind ?? (settings.health_check || settings.health?.path ? "http" : "");
  }

  function fillForm(view) {
    const s = view.settings;
    loaded = s;
    richHealth = s.health !== undefined && s.health !== null;
    field("port").value = s.port ?? "";
    field("working_dir").value = s.working_dir ?? ".";
    field("build_cmd").value = s.build_cmd ?? "";
    field("run_cmd").value = s.run_cmd ?? "";
    field("description").value = s.description ?? "";
    const kindSelect = healthField("kind");
    for (const option of kindSelect.options) option.disabled = !richHealth && !["", "http"].includes(option.value);
    kindSelect.value = effectiveKind(s);
    healthField("path").value = s.health?.path ?? s.health_check ?? "";
    const health = s.health ?? {};
    healthField("command").value = health.command ?? "";
    healthField("webhook").value = health.webhook ?? "";
    for (const name of HEALTH_NUMBERS) healthField(name).value = health[name] ?? "";
    show($("#health-basic-note"), !richHealth);
    healthKindChanged();
  }

  function pendingNote(view) {
    const pending = (view.pending ?? []).map((name) => LABELS[name] ?? name);
    show(redeployButton, pending.length > 0);
    return pending.length ? `Waiting for the next deploy: ${pending.join(", ")}.` : "";
  }

  /** The health options as the form has them (the path aside), in the API's shape. */
  function healthValue() {
    const kind = healthField("kind").value || null;
    const health = { ...(loaded.health ?? {}), kind };
    delete health.path;
    health.command = healthField("command").value.trim() || null;
    health.webhook = healthField("webhook").value.trim() || null;
    for (const name of HEALTH_NUMBERS) {
      const raw = healthField(name).value.trim();
      health[name] = raw === "" ? (name === "restart_after" ? null : loaded.health?.[name] ?? null) : Number(raw);
    }
    return health;
  }

  function sameHealth(a, b) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((key) => (a[key] ?? null) === (b[key] ?? null));
  }

  /** The fields that differ from what was loaded, in the API's terms. */
  function changes() {
    const change = {};
    const text = (name) => field(name).value.trim();
    const port = text("port") === "" ? null : Number(text("port"));
    if (port !== (loaded.port ?? null)) change.port = port;
    const build = text("build_cmd") || null;
    if (build !== (loaded.build_cmd ?? null)) change.build_cmd = build;
    for (const name of ["run_cmd", "working_dir"]) if (text(name) !== (loaded[name] ?? "")) change[name] = text(name);
    if (field("description").value !== (loaded.description ?? "")) change.description = field("description").value;
    const kind = healthField("kind").value;
    const path = kind === "http" ? healthField("path").value.trim() || "/" : null;
    if (path !== (loaded.health?.path ?? loaded.health_check ?? null)) change.health_check = path;
    if (richHealth) {
      const health = healthValue();
      const before = { ...loaded.health };
      delete before.path;
      // An HTTP check needs no stored kind when there is a path: the path says it.
      if (kind === "http" && !loaded.health?.kind) health.kind = null;
      if (!sameHealth(health, before)) change.health = health;
    }
    return change;
  }

  function markInvalid(text) {
    for (const input of $$("input, select", form)) input.removeAttribute("aria-invalid");
    const lower = text.toLowerCase();
    const guesses = { port: "s-port", "run-cmd": "s-run_cmd", "build-cmd": "s-build_cmd", "working-dir": "s-working_dir", description: "s-description", "health": "h-path" };
    for (const [word, id] of Object.entries(guesses)) {
      if (lower.startsWith(word) || lower.includes(` ${word} `)) {
        const input = form.querySelector(`#${id}`);
        input?.setAttribute("aria-invalid", "true");
        input?.focus();
        return;
      }
    }
  }

  healthField("kind").addEventListener("change", healthKindChanged);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!loaded) return;
    const change = changes();
    if (field("run_cmd").value.trim() === "") {
      notice(message, "error", "The run command is required.");
      markInvalid("run-cmd");
      return;
    }
    if (Object.keys(change).length === 0) {
      notice(message, "info", "Nothing changed.");
      reveal(message);
      return;
    }
    const button = $("#settings-save");
    button.disabled = true;
    try {
      const view = await patch(`${svc(service.name)}/settings`, change);
      fillForm(view);
      markInvalid("");
      notice(message, "ok", "Saved. The changes apply at the next deploy; nothing was restarted.",
        h("br"), pendingNote(view));
    } catch (error) {
      notice(message, "error", `Not saved: ${sentence(error.message)}`);
      markInvalid(error.message);
    } finally {
      button.disabled = false;
      reveal(message);
    }
  });

  redeployButton.addEventListener("click", () => service.redeploy());

  try {
    const view = await get(`${svc(service.name)}/settings`);
    fillForm(view);
    const note = pendingNote(view);
    if (note) notice(message, "info", note);
    $("#settings-fields").disabled = false;
    $("#health-fields").disabled = false;
    $("#settings-save").disabled = false;
  } catch (error) {
    notice(message, "error", `Could not load the settings: ${error.message}`);
  } finally {
    show($("#settings-loading"), false);
  }
}
