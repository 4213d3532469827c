// The usage chart: uPlot with axes, a legend and a tooltip that follows the cursor. The canvas is
// wrapped in role="img" with a name saying what it shows; the numbers are also in a table for
// screen readers.

import { html, useEffect, useRef } from "./vendor/preact-htm.mjs";
import uPlot from "./vendor/uPlot.esm.js";

const SERIES = [
  { key: "messages", label: "Messages", stroke: "#4f46e5", fill: "rgba(79,70,229,0.10)" },
  { key: "deliveries", label: "Deliveries", stroke: "#0d9488", fill: "rgba(13,148,136,0.08)" },
  { key: "peak_connections", label: "Peak connections", stroke: "#d97706", scale: "conn" },
];

/** `days` of usage rows, oldest first, the missing days as zeros. */
export function lastDays(rows, days = 30) {
  const byDate = new Map(rows.map((r) => [r.date, r]));
  const out = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const date = d.toISOString().slice(0, 10);
    out.push(byDate.get(date) || { date, messages: 0, deliveries: 0, bytes_out: 0, peak_connections: 0 });
  }
  return out;
}

function tooltip() {
  let tip;
  return {
    hooks: {
      init(u) {
        tip = document.createElement("div");
        tip.className = "chart-tip";
        tip.hidden = true;
        u.over.append(tip);
      },
      setCursor(u) {
        const i = u.cursor.idx;
        if (i == null) {
          tip.hidden = true;
          return;
        }
        const date = new Date(u.data[0][i] * 1000).toISOString().slice(0, 10);
        tip.replaceChildren();
        const head = document.createElement("strong");
        head.textContent = date;
        tip.append(head);
        SERIES.forEach((s, k) => {
          const row = document.createElement("span");
          row.className = `tip-${s.key}`;
          row.textContent = `${s.label}: ${new Intl.NumberFormat().format(u.data[k + 1][i])}`;
          tip.append(row);
        });
        tip.hidden = false;
        const left = u.valToPos(u.data[0][i], "x");
        const flip = left > u.over.clientWidth / 2;
        tip.style.left = flip ? "" : `${left + 12}px`;
        tip.style.right = flip ? `${u.over.clientWidth - left + 12}px` : "";
        tip.style.top = "8px";
      },
    },
  };
}

export function UsageChart({ rows }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    const data = [
      rows.map((r) => Date.parse(r.date + "T00:00:00Z") / 1000),
      ...SERIES.map((s) => rows.map((r) => r[s.key])),
    ];
    const opts = {
      width: Math.max(280, el.clientWidth),
      height: 260,
      plugins: [tooltip()],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max * 1.1)] }, conn: { range: (u, min, max) => [0, Math.max(4, max * 1.2)] } },
      axes: [
        { stroke: "#475569", grid: { stroke: "#e2e8f0" } },
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, size: 56, values: (u, v) => v.map((x) => new Intl.NumberFormat(undefined, { notation: "compact" }).format(x)) },
        { scale: "conn", side: 1, stroke: "#b45309", grid: { show: false }, size: 44 },
      ],
      series: [
        { value: (u, v) => (v == null ? "" : new Date(v * 1000).toISOString().slice(0, 10)) },
        ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: 2, scale: s.scale || "y", points: { show: true, size: 4 } })),
      ],
    };
    const plot = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 260 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [JSON.stringify(rows)]);
  const total = rows.reduce((n, r) => n + r.messages, 0);
  return html`<figure class="chart">
    <div role="img" aria-label="Messages, deliveries and peak connections per day, last 30 days"
      class="chart-canvas" ref=${box} data-points=${rows.length} data-total-messages=${total}></div>
    <div class="sr-only"><table>
      <caption>Usage per day, last 30 days</caption>
      <thead><tr><th>Day</th>${SERIES.map((s) => html`<th>${s.label}</th>`)}</tr></thead>
      <tbody>${rows.filter((r) => r.messages || r.deliveries || r.peak_connections).map(
        (r) => html`<tr><td>${r.date}</td>${SERIES.map((s) => html`<td>${r[s.key]}</td>`)}</tr>`,
      )}</tbody>
    </table></div>
  </figure>`;
}
