// Environment: variables and secrets. Secrets are write-only: their values never come back.
import { get, post, put, sentence, svc } from "./api.js";
import { $, badge, fill, h, notice, reveal, show } from "./dom.js";

export async function mount(service) {
  const rows = $("#env-rows");
  const message = $("#env-message");
  const form = $("#env-form");
  const keyInput = $("#env-key");
  const valueInput = $("#env-value");
  const secretBox = $("#env-secret");
  const restartBox = $("#env-restart");

  /** A notice next to the form's button, scrolled into view (on a phone it may be below). */
  const tell = (...args) => {
    notice(message, ...args);
    reveal(message);
  };

  function applied(listing, what) {
    const when = listing.applies ?? "at the next start, restart or deploy";
    const now = when.startsWith("now");
    const restartNow = h("button", { type: "button", class: "link", onclick: restart }, "Restart now");
    const running = ["running", "restarting"].includes(service.info?.status);
    tell("ok", `${what}. ${now ? sentence(`it applies ${when}`) : `It applies ${when}.`} `,
      !now && running ? restartNow : null);
  }

  async function restart() {
    tell("info", `Restarting ${service.name}…`);
    try {
      await post(`${svc(service.name)}/restart`);
      tell("ok", `Restarted ${service.name}: it runs with the new environment now.`);
    } catch (error) {
      tell("error", `Could not restart: ${sentence(error.message)}`);
    }
    await service.refresh();
  }

  function edit(variable) {
    keyInput.value = variable.key;
    secretBox.checked = variable.secret;
    valueInput.value = variable.secret ? "" : variable.value;
    valueInput.type = variable.secret ? "password" : "text";
    valueInput.placeholder = variable.secret ? "Type a new value to replace the secret" : "";
    $("#env-form-title").textContent = `Change ${variable.key}`;
    valueInput.focus();
  }

  async function remove(variable, button) {
    if (button.dataset.confirm !== "yes") {
      button.dataset.confirm = "yes";
      button.textContent = `Confirm: remove ${variable.key}`;
      return;
    }
    button.disabled = true;
    try {
      const listing = await post(`${svc(service.name)}/env/unset`, { keys: [variable.key], restart: restartBox.checked });
      render(listing);
      applied(listing, `Removed ${variable.key}`);
    } catch (error) {
      button.disabled = false;
      tell("error", `Could not remove ${variable.key}: ${sentence(error.message)}`);
    }
  }

  function row(variable) {
    const removeButton = h("button", { type: "button", class: "danger", onclick: () => remove(variable, removeButton) }, "Remove");
    return h("tr", { dataset: { key: variable.key } },
      h("td", { class: "lead mono", "data-label": "Name" }, variable.key),
      h("td", { "data-label": "Value" },
        variable.secret
          ? h("span", {}, h("span", { class: "mono", "aria-label": "hidden value" }, "••••••••"), " ", badge("secret"))
          : h("span", { class: "mono" }, variable.value)),
      h("td", { "data-label": "Actions" }, h("span", { class: "actions" },
        h("button", { type: "button", onclick: () => edit(variable) }, variable.secret ? "Replace" : "Edit"),
        removeButton)),
    );
  }

  function render(listing) {
    show($("#env-loading"), false);
    show($("#env-empty"), listing.vars.length === 0);
    show($("#env-table"), listing.vars.length > 0);
    fill(rows, listing.vars.map(row));
  }

  secretBox.addEventListener("change", () => {
    valueInput.type = secretBox.checked ? "password" : "text";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      tell("error", "A variable name uses letters, digits and “_”, and does not start with a digit.");
      keyInput.setAttribute("aria-invalid", "true");
      keyInput.focus();
      return;
    }
    keyInput.removeAttribute("aria-invalid");
    const button = $("#env-save");
    button.disabled = true;
    try {
      const listing = await put(`${svc(service.name)}/env`, {
        values: { [key]: valueInput.value },
        secret: secretBox.checked,
        restart: restartBox.checked,
      });
      render(listing);
      applied(listing, `Saved ${key}${secretBox.checked ? " (secret)" : ""}`);
      form.reset();
      valueInput.type = "text";
      valueInput.placeholder = "";
      $("#env-form-title").textContent = "Add or change a variable";
      if (restartBox.checked) await service.refresh();
    } catch (error) {
      tell("error", `Not saved: ${sentence(error.message)}`);
    } finally {
      button.disabled = false;
    }
  });

  // Until now a click would have sent the form the browser's way (a reload that loses it).
  $("#env-save").disabled = false;
  try {
    render(await get(`${svc(service.name)}/env`));
  } catch (error) {
    show($("#env-loading"), false);
    notice(message, "error", `Could not load the variables: ${error.message}`);
  }
}
