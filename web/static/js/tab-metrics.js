// Metrics: CPU and memory over 15 min, 1 h, 24 h or 7 d, live at the right edge (uPlot).
import { get, svc } from "./api.js";
import { $, $$, bytes, fill, notice, percent, show } from "./dom.js";
import { Feed } from "./live.js";

const SPANS = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800 };

export async function mount(service) {
  const uPlot = window.uPlot;
  const charts = $("#metrics-charts");
  const errorBox = $("#metrics-error");
  let range = "1h";
  let data = { ts: [], cpu: [], cpuMax: [], memory: [], memoryMax: [] };
  let hasMax = false;
  let plots = [];
  let loadId = 0;

  const now = () => Date.now() / 1000;
  const xRange = () => [now() - SPANS[range], now()];

  function chart(target, label, color, values, maxValues, format, floor) {
    const series = [
      {},
      { label, stroke: color, fill: `${color}22`, width: 1.5, value: (u, v) => format(v), points: { show: false } },
    ];
    const columns = [data.ts, values];
    if (hasMax) {
      series.push({ label: "max", stroke: `${color}88`, dash: [4, 4], width: 1, value: (u, v) => format(v), points: { show: false } });
      columns.push(maxValues);
    }
    const options = {
      width: Math.max(240, target.clientWidth),
      height: 200,
      scales: {
        x: { time: true, range: () => xRange() },
        y: { range: (u, min, max) => [0, Math.max(floor, (max ?? 0) * 1.15)] },
      },
      axes: [{ stroke: "#5d6678" }, { stroke: "#5d6678", size: 72, values: (u, ticks) => ticks.map(format) }],
      series,
      legend: { live: true },
    };
    fill(target);
    return new uPlot(options, columns, target);
  }

  function draw() {
    const any = data.ts.length > 0;
    show(charts, any);
    show($("#metrics-empty"), !any);
    plots.forEach((plot) => plot.destroy());
    plots = [];
    if (!any) return;
    plots = [
      chart($("#cpu-chart"), "CPU", "#2f5bea", data.cpu, data.cpuMax, percent, 5),
      chart($("#memory-chart"), "Memory", "#7c3aed", data.memory, data.memoryMax, bytes, 1024 * 1024),
    ];
    fill($("#cpu-now"), `now ${percent(data.cpu.at(-1))}`);
    fill($("#memory-now"), `now ${bytes(data.memory.at(-1))}`);
  }

  function redraw() {
    if (plots.length === 0) return draw();
    const cpuColumns = [data.ts, data.cpu];
    const memoryColumns = [data.ts, data.memory];
    if (hasMax) {
      cpuColumns.push(data.cpuMax);
      memoryColumns.push(data.memoryMax);
    }
    plots[0].setData(cpuColumns);
    plots[1].setData(memoryColumns);
    fill($("#cpu-now"), `now ${percent(data.cpu.at(-1))}`);
    fill($("#memory-now"), `now ${bytes(data.memory.at(-1))}`);
  }

  // A page of points: every sample within the last hour ("raw"), or one-minute means
  // with their maxima ("minute") for longer ranges.
  function take(page) {
    data = { ts: [], cpu: [], cpuMax: [], memory: [], memoryMax: [] };
    hasMax = page.resolution === "minute";
    for (const point of page.points ?? []) add(point);
  }

  function add(sample) {
    data.ts.push(sample.ts);
    data.cpu.push(sample.cpu_percent);
    data.memory.push(sample.memory_rss_bytes);
    data.cpuMax.push(sample.cpu_percent_max ?? sample.cpu_percent);
    data.memoryMax.push(sample.memory_rss_bytes_max ?? sample.memory_rss_bytes);
  }

  async function load() {
    const id = ++loadId;
    show($("#metrics-loading"), true);
    try {
      const answer = await get(`${svc(service.name)}/metrics?since=${range}`);
      if (id !== loadId) return false;
      take(answer);
      notice(errorBox, "", "");
      draw();
      return true;
    } catch (error) {
      if (id !== loadId) return false;
      show(charts, false);
      show($("#metrics-empty"), true);
      if (error.unsupported) {
        fill($("#metrics-empty-text"), "This dployr daemon does not record metrics yet.");
      } else {
        notice(errorBox, "error", `Could not load metrics: ${error.message}`);
      }
      return !error.unsupported;
    } finally {
      if (id === loadId) show($("#metrics-loading"), false);
    }
  }

  for (const button of $$("#metrics-range button")) {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      for (const other of $$("#metrics-range button")) other.setAttribute("aria-pressed", String(other === button));
      load();
    });
  }

  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const [plot, target] of [[plots[0], $("#cpu-chart")], [plots[1], $("#memory-chart")]]) {
        if (plot) plot.setSize({ width: Math.max(240, target.clientWidth), height: 200 });
      }
    }, 100);
  }).observe($("#tab"));

  const supported = await load();
  if (!supported) return;
  new Feed(`${svc(service.name)}/metrics/stream`, {
    onMessage: (message) => {
      if (message.type !== "metrics") return;
      add(message);
      const oldest = now() - SPANS[range];
      while (data.ts.length && data.ts[0] < oldest) {
        for (const column of Object.values(data)) column.shift();
      }
      redraw();
    },
    onOpen: () => load(), // after a reconnect, fill what was missed
  }).start();
}
