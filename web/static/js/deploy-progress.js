// A deploy as it happens: its steps (the "deploy N: ..." system lines) and its build
// output, read live from the service's log feed, until the deployment has finished.
import { get, sentence, svc } from "./api.js";
import { fill, h, notice, reveal } from "./dom.js";
import { Feed, onEvent } from "./live.js";

/** The service's last log cursor now (0 for a service with no history yet). */
export async function lastCursor(name) {
  try {
    const page = await get(`${svc(name)}/logs?tail=1`);
    return page.last_cursor ?? 0;
  } catch {
    return 0;
  }
}

/**
 * Follow deployment `deployment` of service `name` in `panel`, reading the log from after
 * `after`. Resolves with the finished deployment record.
 */
export function followDeploy(panel, name, deployment, after) {
  const id = deployment.id;
  const steps = h("ol", { class: "steps", id: "deploy-steps" });
  const output = h("pre", { class: "deploy-log", id: "deploy-output", tabindex: "0", "aria-label": "Build output" });
  const result = h("div", { id: "deploy-result" });
  const state = h("p", { class: "loading", id: "deploy-state" }, "Starting…");
  fill(panel, h("h2", {}, `Deploying ${name} — deployment ${id}`), state, steps, h("h3", {}, "Output"), output, result);
  panel.hidden = false;
  reveal(panel); // "Redeploy now" sits at the bottom of Settings: bring the deploy into view
  output.append(h("span", { class: "muted" }, "Waiting for output…\n"));
  let waiting = true;
  let cursor = after;
  let finished = false;

  let ticking = null; // the timer counting the seconds a "waiting for ..." step has taken

  return new Promise((resolve) => {
    const addStep = (text) => {
      clearInterval(ticking);
      for (const li of steps.children) li.className = "done";
      const li = h("li", { class: "current" }, text);
      steps.append(li);
      if (/^Waiting for /.test(text)) {
        // While the new release is waited for, show for how long: "…: 3 s".
        const since = Date.now();
        const base = text.replace(/\.$/, "");
        ticking = setInterval(() => {
          const seconds = Math.round((Date.now() - since) / 1000);
          li.textContent = `${base}: ${seconds} s`;
          state.textContent = li.textContent;
        }, 1000);
      }
      return li;
    };
    const addOutput = (line) => {
      if (waiting) {
        output.replaceChildren();
        waiting = false;
      }
      const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 8;
      output.append(h("span", { class: line.stream }, `${line.line}\n`));
      if (atEnd) output.scrollTop = output.scrollHeight;
    };

    const check = async () => {
      if (finished) return;
      let list;
      try {
        list = await get(`${svc(name)}/deployments?limit=20`);
      } catch {
        return;
      }
      const record = list.find((d) => d.id === id);
      if (!record || (record.status !== "succeeded" && record.status !== "failed")) return;
      finished = true;
      clearInterval(ticking);
      feed.stop();
      stopEvents();
      state.className = "";
      // The record can say it ended before its last line has come through the feed.
      const last = steps.lastElementChild?.textContent ?? "";
      if (!/^(Succeeded|Failed)/.test(last)) addStep(record.status === "succeeded" ? "Succeeded." : "Failed.");
      if (record.status === "succeeded") {
        steps.lastElementChild && (steps.lastElementChild.className = "succeeded");
        state.textContent = `Deployment ${id} succeeded.`;
        notice(result, "ok", `${name} is deployed${record.revision ? ` at ${record.revision.slice(0, 12)}` : ""}.`);
      } else {
        steps.lastElementChild && (steps.lastElementChild.className = "failed");
        state.textContent = `Deployment ${id} failed.`;
        notice(result, "error", `The deploy failed: ${sentence(record.error ?? "see the output above")}`);
      }
      resolve(record);
    };

    const feed = new Feed(`${svc(name)}/logs/stream`, {
      query: () => `cursor=${cursor}&batch=1`,
      onOpen: () => check(),
      onMessage: (message) => {
        const lines = message.type === "logs" ? message.lines : message.type === "log" ? [message] : [];
        for (const line of lines) {
          cursor = Math.max(cursor, line.cursor);
          if (line.deployment !== id) continue;
          if (line.stream === "system") {
            const text = line.line.replace(new RegExp(`^(deploy|rollback) ${id}:? `), "");
            const last = steps.lastElementChild;
            if (/^pull progress: /.test(text) && /^Pull progress: /.test(last?.textContent ?? "")) {
              // A pull's layers and bytes so far (engine/images.py): one step, updated.
              last.textContent = sentence(text);
              state.textContent = sentence(text);
              continue;
            }
            addStep(sentence(text));
            state.textContent = sentence(text);
            check();
          } else {
            addOutput(line);
          }
        }
      },
    }).start();
    const stopEvents = onEvent((event) => {
      if (event.type === "reconnected" || (event.type === "deployment" && event.deployment === id)) check();
    });
  });
}
