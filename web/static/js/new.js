// New service: the deploy fields; the deploy is then shown live, and we land on its page.
import { get, post, sentence, svc } from "./api.js";
import { $, $$, h, notice } from "./dom.js";
import { followDeploy } from "./deploy-progress.js";
import { startLive } from "./live.js";

const form = $("#new-service");
const errorBox = $("#new-error");
const progress = $("#deploy-progress");
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

startLive();

function fail(text, input) {
  notice(errorBox, "error", text);
  for (const el of $$("[aria-invalid]", form)) el.removeAttribute("aria-invalid");
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  return null;
}

/** KEY=value lines as an object, or null after saying which line is wrong. */
function pairs(textarea, what) {
  const values = {};
  const lines = textarea.value.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const at = line.indexOf("=");
    const key = at > 0 ? line.slice(0, at).trim() : "";
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      return fail(`${what}, line ${index + 1}: write KEY=value, with a name of letters, digits and “_”.`, textarea);
    }
    values[key] = line.slice(at + 1);
  }
  return values;
}

function blueprint() {
  const value = (id) => $(`#${id}`).value.trim();
  const name = value("name");
  if (!NAME.test(name)) return fail("The name must be 1 to 63 lowercase letters, digits or “-”, starting and ending with a letter or digit.", $("#name"));
  if (!value("remote")) return fail("Say where the code is: a git URL or a folder on the daemon's machine.", $("#remote"));
  if (!value("run_cmd")) return fail("The run command is required: it is what dployr starts and keeps running.", $("#run_cmd"));
  let port = null;
  if (value("port")) {
    port = Number(value("port"));
    if (!Number.isInteger(port) || port < 1 || port > 65535) return fail("The port must be a whole number from 1 to 65535.", $("#port"));
  }
  const envVars = pairs($("#env_vars"), "Variables");
  if (envVars === null) return null;
  const secrets = pairs($("#secrets"), "Secrets");
  if (secrets === null) return null;
  const body = {
    name,
    remote: { url: value("remote") },
    run_cmd: value("run_cmd"),
    working_dir: value("working_dir") || ".",
    description: $("#description").value,
    env_vars: envVars,
    secrets,
  };
  if (value("branch")) body.remote.branch = value("branch");
  if (value("commit")) body.remote.commit = value("commit");
  if (value("build_cmd")) body.build_cmd = value("build_cmd");
  if (port !== null) body.port = port;
  if (value("health_check")) body.health_check = value("health_check");
  return body;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  notice(errorBox, "", "");
  const body = blueprint();
  if (!body) return;
  const button = $("#deploy-button");
  button.disabled = true;
  try {
    try {
      await get(svc(body.name));
      fail(`A service named ${body.name} already exists. Open it to redeploy, or choose another name.`, $("#name"));
      notice(errorBox, "error", `A service named ${body.name} already exists. `,
        h("a", { href: `/services/${body.name}` }, `Open ${body.name}`), " to redeploy it, or choose another name.");
      return;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    const deployment = await post(`${svc(body.name)}/deploy`, body);
    form.hidden = true;
    const record = await followDeploy(progress, body.name, deployment, 0);
    if (record.status === "succeeded") {
      progress.append(h("p", { class: "loading" }, `Opening ${body.name}…`));
      setTimeout(() => location.assign(`/services/${body.name}`), 800);
    } else {
      progress.append(h("p", { class: "actions" },
        h("a", { class: "button primary", href: `/services/${body.name}/settings` }, "Fix the settings"),
        h("a", { class: "button", href: `/services/${body.name}/logs` }, "Open the logs"),
        h("a", { class: "button", href: `/services/${body.name}` }, `Open ${body.name}`)));
    }
  } catch (error) {
    form.hidden = false;
    notice(errorBox, "error", `The deploy could not start: ${sentence(error.message)}`);
  } finally {
    button.disabled = false;
  }
});
