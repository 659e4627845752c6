// A tiny line chart on a canvas, for the services list. (The Metrics tab uses uPlot.)

export function sparkline(canvas, values, { floor = 0, color = "#2f5bea" } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 96;
  const height = canvas.clientHeight || 24;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  let points = values.filter((v) => v !== null && v !== undefined && isFinite(v));
  if (points.length === 1) points = [points[0], points[0]]; // the first sample: a level line
  if (points.length === 0) {
    ctx.strokeStyle = "#d5dae2";
    ctx.beginPath();
    ctx.moveTo(0, height - 1.5);
    ctx.lineTo(width, height - 1.5);
    ctx.stroke();
    return;
  }
  const max = Math.max(floor, ...points) || 1;
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const y = (v) => height - 2 - (v / max) * (height - 4);
  ctx.beginPath();
  points.forEach((v, i) => (i === 0 ? ctx.moveTo(0, y(v)) : ctx.lineTo(i * step, y(v))));
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = color;
  ctx.stroke();
  ctx.lineTo((points.length - 1) * step, height);
  ctx.lineTo(0, height);
  ctx.closePath();
  ctx.globalAlpha = 0.12;
  ctx.fillStyle = color;
  ctx.fill();
}
