// Logs: live over the log feed, older history page by page when scrolled to the top.
//
// Every line loaded is kept in `lines` (sorted by cursor, at most MAX_LINES); `visible` is
// the lines the stream filter lets through. Only the rows on screen (plus a few) exist in
// the DOM, absolutely placed at index * ROW_HEIGHT, so 100,000 lines cost what 60 do.
import { get, svc } from "./api.js";
import { $, $$, clock, h, notice } from "./dom.js";
import { Feed } from "./live.js";

const ROW_HEIGHT = 20;
const OVERSCAN = 20;
const PAGE = 500;
const MAX_LINES = 200_000;
const HEADER_ROWS = 1; // the "older lines" row at the top

export async function mount(service) {
  const view = $("#log-view");
  const spacer = $("#log-spacer");
  const status = $("#log-status");
  const errorBox = $("#log-error");
  const pauseButton = $("#log-pause");

  let lines = [];
  let visible = [];
  let streams = new Set($$('#log-streams input:checked').map((box) => box.value));
  let showRelease = $("#log-release").checked; // each line's deployment, as #3
  let pending = []; // lines that arrived while paused
  let paused = false;
  let follow = true; // keep the newest line in view
  let lastCursor = 0;
  let firstCursor = 1; // the oldest line history still holds
  let reachedStart = false;
  let loadingOlder = false;
  let feedState = "connecting";
  let loaded = false; // the first page was read: the feed resumes from lastCursor
  let scheduled = false;
  const rows = new Map(); // index in `visible` -> element

  const matches = (line) => streams.has(line.stream);

  function refilter() {
    visible = lines.filter(matches);
  }

  function updateStatus() {
    const count = `${visible.length.toLocaleString("en")} ${visible.length === 1 ? "line" : "lines"}`;
    let state;
    if (paused) state = `paused${pending.length ? `, ${pending.length.toLocaleString("en")} new` : ""}`;
    else if (feedState === "live") state = "live";
    else state = "reconnecting…";
    status.textContent = `${count} · ${state}`;
    view.dataset.lines = String(visible.length);
    view.dataset.state = paused ? "paused" : feedState;
    view.dataset.history = loadingOlder ? "loading" : reachedStart ? "start" : "more";
  }

  function headerText() {
    if (loadingOlder) return "Loading older lines…";
    if (reachedStart) return lines.length ? "Beginning of the log history" : "No log lines yet";
    return "Scroll up for older lines";
  }

  function row(index) {
    if (index < 0) {
      return h("div", { class: "log-row older", dataset: { older: "" } }, headerText());
    }
    const line = visible[index];
    return h(
      "div",
      { class: `log-row ${line.stream}`, dataset: { cursor: line.cursor }, title: line.line },
      h("span", { class: "ts" }, clock(line.ts)),
      showRelease ? h("span", { class: "rl", title: `Deployment ${line.deployment}` }, line.deployment == null ? "–" : `#${line.deployment}`) : null,
      h("span", { class: "st" }, line.stream),
      h("span", { class: "text" }, line.line),
    );
  }

  function sizeSpacer() {
    spacer.style.height = `${(visible.length + HEADER_ROWS) * ROW_HEIGHT}px`;
  }

  function render() {
    scheduled = false;
    const total = visible.length + HEADER_ROWS;
    sizeSpacer();
    if (follow && !paused) view.scrollTop = view.scrollHeight;
    const first = Math.max(0, Math.floor(view.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, Math.ceil((view.scrollTop + view.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const wanted = new Set();
    for (let slot = first; slot < last; slot += 1) wanted.add(slot - HEADER_ROWS);
    for (const [index, el] of rows) {
      if (!wanted.has(index) || index < 0) {
        el.remove();
        rows.delete(index);
      }
    }
    for (const index of wanted) {
      if (rows.has(index)) continue;
      const el = row(index);
      el.style.top = `${(index + HEADER_ROWS) * ROW_HEIGHT}px`;
      spacer.append(el);
      rows.set(index, el);
    }
    updateStatus();
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  /** Forget the rendered rows: the indexes of `visible` have shifted. */
  function rerender() {
    for (const el of rows.values()) el.remove();
    rows.clear();
    schedule();
  }

  function cap() {
    const excess = lines.length - MAX_LINES;
    if (excess <= 0) return 0;
    const dropped = lines.splice(0, excess);
    reachedStart = false;
    return dropped.filter(matches).length;
  }

  function append(batch) {
    if (batch.length === 0) return;
    lines.push(...batch);
    const shown = batch.filter(matches);
    const droppedShown = cap();
    if (droppedShown) {
      refilter();
      if (!follow) view.scrollTop = Math.max(0, view.scrollTop - droppedShown * ROW_HEIGHT);
      rerender();
    } else {
      visible.push(...shown);
      schedule();
    }
  }

  /** Put lines read from history (after a gap) where they belong. */
  function insert(batch) {
    const known = new Set(lines.map((line) => line.cursor));
    lines = lines.concat(batch.filter((line) => !known.has(line.cursor))).sort((a, b) => a.cursor - b.cursor);
    cap();
    refilter();
    rerender();
  }

  async function loadOlder() {
    if (loadingOlder || reachedStart) return;
    const oldest = lines.length ? lines[0].cursor : lastCursor + 1;
    const after = Math.max(firstCursor - 1, oldest - 1 - PAGE, 0);
    const limit = oldest - 1 - after;
    if (limit <= 0) {
      reachedStart = true;
      rerender();
      return;
    }
    loadingOlder = true;
    rerender();
    try {
      const page = await get(`${svc(service.name)}/logs?after=${after}&limit=${limit}`);
      firstCursor = page.first_cursor ?? firstCursor;
      const current = lines.length ? lines[0].cursor : oldest;
      const older = page.lines.filter((line) => line.cursor < Math.min(oldest, current));
      if (older.length === 0 || older[0].cursor <= firstCursor || after === 0) reachedStart = true;
      lines = older.concat(lines);
      const added = older.filter(matches).length;
      refilter();
      // Keep the lines that were on screen where they were: grow the list first, then move.
      sizeSpacer();
      follow = false;
      view.scrollTop += added * ROW_HEIGHT;
      notice(errorBox, "", "");
    } catch (error) {
      notice(errorBox, "error", `Could not load older lines: ${error.message}`);
    } finally {
      loadingOlder = false;
      rerender();
    }
  }

  // -- the first page, then the live feed ---------------------------------------------------
  try {
    const page = await get(`${svc(service.name)}/logs?tail=${PAGE}`);
    lines = page.lines;
    firstCursor = page.first_cursor ?? 1;
    lastCursor = lines.length ? lines.at(-1).cursor : page.last_cursor ?? 0;
    reachedStart = lines.length === 0 || lines[0].cursor <= firstCursor;
    loaded = true;
    refilter();
  } catch (error) {
    notice(errorBox, "error", `Could not load the log: ${error.message}`);
  }
  schedule();

  const incoming = [];
  let flushScheduled = false;
  const flush = () => {
    flushScheduled = false;
    const batch = incoming.splice(0);
    if (paused) pending.push(...batch);
    else append(batch);
    updateStatus();
  };

  const take = (message) => {
    if (message.cursor <= lastCursor) return; // already have it
    lastCursor = message.cursor;
    incoming.push(message);
    if (!flushScheduled) {
      flushScheduled = true;
      requestAnimationFrame(flush);
    }
  };

  new Feed(`${svc(service.name)}/logs/stream`, {
    // Batched: a fast service's lines come many to a message.
    query: () => (loaded || lastCursor ? `cursor=${lastCursor}` : `tail=${PAGE}`) + "&batch=1",
    onOpen: () => {
      feedState = "live";
      updateStatus();
    },
    onDown: () => {
      feedState = "connecting";
      updateStatus();
    },
    onMessage: async (message) => {
      if (message.type === "logs") {
        message.lines.forEach(take);
      } else if (message.type === "log") {
        take(message);
      } else if (message.type === "gap") {
        // Fell behind: read what was missed from history, page by page.
        let after = message.from - 1;
        try {
          while (after < message.to) {
            const limit = Math.min(10_000, message.to - after);
            const page = await get(`${svc(service.name)}/logs?after=${after}&limit=${limit}`);
            if (page.lines.length === 0) break;
            insert(page.lines.filter((line) => line.cursor <= message.to));
            after = page.lines.at(-1).cursor;
          }
        } catch (error) {
          notice(errorBox, "error", `Some lines were missed and could not be read: ${error.message}`);
        }
      }
    },
  }).start();

  // -- the controls -------------------------------------------------------------------------
  view.addEventListener("scroll", () => {
    follow = view.scrollTop + view.clientHeight >= view.scrollHeight - ROW_HEIGHT;
    if (view.scrollTop < ROW_HEIGHT * 5) loadOlder();
    schedule();
  });
  window.addEventListener("resize", schedule);

  for (const box of $$('#log-streams input')) {
    box.addEventListener("change", () => {
      streams = new Set($$('#log-streams input:checked').map((input) => input.value));
      refilter();
      rerender();
    });
  }

  $("#log-release").addEventListener("change", (event) => {
    showRelease = event.target.checked;
    rerender();
  });

  function setPaused(value) {
    paused = value;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      const batch = pending;
      pending = [];
      append(batch);
    }
    updateStatus();
  }
  pauseButton.addEventListener("click", () => setPaused(!paused));

  $("#log-latest").addEventListener("click", () => {
    follow = true;
    if (paused) setPaused(false);
    view.scrollTop = view.scrollHeight;
    schedule();
  });
}
