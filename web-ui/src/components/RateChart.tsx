// A small line chart of a vertex's records in and out per second over the samples of
// the last minutes, drawn as SVG.

import type { JobMetrics } from "../api";
import { rate } from "../format";

const W = 560;
const H = 160;
const PAD = { l: 64, r: 12, t: 12, b: 24 };

/** The chart of vertex `vertex` (subtask `subtask`, or all) over `history`. */
export function RateChart(props: { history: JobMetrics[]; vertex: string; subtask?: number }) {
  const series = props.history.flatMap((m) => {
    const v = m.vertices.find((x) => x.id === props.vertex);
    const f = v && (props.subtask == null ? v : v.subtasks[props.subtask]);
    return f ? [{ t: m.time, inp: f.records_in_per_second, out: f.records_out_per_second }] : [];
  });
  const last = series[series.length - 1];
  const label = last
    ? `Records per second of ${props.vertex} over the last ${Math.round((last.t - series[0].t) / 1000)} s: now in ${rate(last.inp)}, out ${rate(last.out)}`
    : `No figures of ${props.vertex} yet`;
  if (series.length < 2)
    return (
      <p class="chart-empty" role="img" aria-label={label}>
        The chart fills in as figures arrive (one sample a second).
      </p>
    );
  const t0 = series[0].t;
  const t1 = last.t;
  const max = Math.max(1, ...series.map((s) => Math.max(s.inp, s.out)));
  const x = (t: number) => PAD.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const line = (k: "inp" | "out") =>
    series.map((s, i) => `${i ? "L" : "M"}${x(s.t).toFixed(1)},${y(s[k]).toFixed(1)}`).join(" ");
  return (
    <figure class="rate-chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label}>
        <line x1={PAD.l} x2={W - PAD.r} y1={y(0)} y2={y(0)} class="axis" />
        <line x1={PAD.l} x2={W - PAD.r} y1={y(max)} y2={y(max)} class="grid" />
        <text x={PAD.l - 6} y={y(max) + 4} text-anchor="end" class="tick">
          {rate(max)}
        </text>
        <text x={PAD.l - 6} y={y(0) + 4} text-anchor="end" class="tick">
          0
        </text>
        <text x={PAD.l} y={H - 6} class="tick">
          −{Math.round((t1 - t0) / 1000)} s
        </text>
        <text x={W - PAD.r} y={H - 6} text-anchor="end" class="tick">
          now
        </text>
        <path d={line("inp")} class="series in" />
        <path d={line("out")} class="series out" />
      </svg>
      <figcaption>
        <span class="key in">records in</span> <span class="key out">records out</span> per second
      </figcaption>
    </figure>
  );
}
