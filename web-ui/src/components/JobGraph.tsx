// A job's execution graph, laid out by dagre (the Sugiyama-style layered layout of
// graphviz's `dot`, https://github.com/dagrejs/dagre), drawn as SVG. Each vertex shows its
// kind, parallelism, live rates in and out, backpressure, busy time and watermark lag,
// and links to its detail page.

import dagre from "@dagrejs/dagre";
import { useMemo } from "preact/hooks";
import type { GraphView, JobMetrics, VertexMetrics } from "../api";
import { duration, lag, percent, rate } from "../format";

const W = 232;
const H = 108;

interface Laid {
  width: number;
  height: number;
  nodes: Map<string, { x: number; y: number }>;
  edges: { key: string; points: { x: number; y: number }[]; label: string; side: boolean }[];
}

/** Lays out `graph` left to right (top to bottom when `vertical`). */
export function layout(graph: GraphView, vertical: boolean): Laid {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: vertical ? "TB" : "LR", nodesep: 28, ranksep: 72, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const v of graph.vertices) g.setNode(v.id, { width: W, height: H });
  graph.edges.forEach((e, i) =>
    g.setEdge(e.source, e.target, { width: 80, height: 18, labelpos: "c" }, `e${i}`),
  );
  dagre.layout(g);
  const nodes = new Map<string, { x: number; y: number }>();
  for (const v of graph.vertices) {
    const n = g.node(v.id);
    nodes.set(v.id, { x: n.x ?? 0, y: n.y ?? 0 });
  }
  const edges = graph.edges.map((e, i) => {
    const label = g.edge(e.source, e.target, `e${i}`);
    return {
      key: `e${i}`,
      points: label.points ?? [],
      label: e.side_output ? `${e.side_output} · ${e.partitioning}` : e.partitioning,
      side: !!e.side_output,
    };
  });
  const size = g.graph();
  return { width: size.width ?? 0, height: size.height ?? 0, nodes, edges };
}

/** Flink's backpressure levels: OK under 10 %, LOW up to 50 %, HIGH above. */
export function pressure(msPerSecond: number): "ok" | "low" | "high" {
  if (msPerSecond > 500) return "high";
  if (msPerSecond > 100) return "low";
  return "ok";
}

function edgePath(points: { x: number; y: number }[]): string {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

function Vertex(props: {
  jobId: string;
  v: GraphView["vertices"][number];
  at: { x: number; y: number };
  m?: VertexMetrics;
  now: number;
}) {
  const { v, at, m } = props;
  const bp = m?.backpressured_ms_per_second ?? 0;
  const lagMs = lag(props.now, m?.watermark);
  const level = pressure(bp);
  const summary = [
    `${v.kind} ${v.id}, parallelism ${v.parallelism}`,
    m ? `in ${rate(m.records_in_per_second)}, out ${rate(m.records_out_per_second)}` : "no figures yet",
    m ? `backpressure ${percent(bp)} (${level}), busy ${percent(m.busy_ms_per_second)}` : "",
    lagMs != null ? `watermark lag ${duration(lagMs)}` : m?.watermark != null ? "input ended" : "",
  ]
    .filter(Boolean)
    .join("; ");
  return (
    <g transform={`translate(${at.x - W / 2},${at.y - H / 2})`}>
    <a
      href={`#/jobs/${encodeURIComponent(props.jobId)}/vertices/${encodeURIComponent(v.id)}`}
      class={`vertex kind-${v.kind} bp-${level}`}
      aria-label={summary}
      data-vertex={v.id}
      data-records-in={m?.records_in ?? 0}
      data-rate-in={m?.records_in_per_second ?? 0}
      data-rate-out={m?.records_out_per_second ?? 0}
    >
      <title>{summary}</title>
      <rect class="box" width={W} height={H} rx={8} />
      <rect class="bp-bar" x={0} y={H - 6} width={(W * Math.min(1000, bp)) / 1000} height={6} rx={3} />
      <text x={12} y={22} class="v-id">
        {v.id.length > 24 ? `${v.id.slice(0, 23)}…` : v.id}
      </text>
      <text x={W - 12} y={22} class="v-kind" text-anchor="end">
        {v.kind} ×{v.parallelism}
      </text>
      <text x={12} y={46} class="v-fig">
        in <tspan class="num">{m ? rate(m.records_in_per_second) : "—"}</tspan>
      </text>
      <text x={W / 2 + 4} y={46} class="v-fig">
        out <tspan class="num">{m ? rate(m.records_out_per_second) : "—"}</tspan>
      </text>
      <text x={12} y={68} class="v-fig">
        busy <tspan class="num">{m ? percent(m.busy_ms_per_second) : "—"}</tspan>
      </text>
      <text x={W / 2 + 4} y={68} class="v-fig">
        bp <tspan class={`num bp-text-${level}`}>{m ? percent(bp) : "—"}</tspan>
      </text>
      <text x={12} y={90} class="v-fig">
        wm lag <tspan class="num">{lagMs != null ? duration(lagMs) : m?.watermark != null ? "ended" : "—"}</tspan>
      </text>
    </a>
    </g>
  );
}

/** The graph with the newest figures; `vertical` stacks it for narrow windows. */
export function JobGraph(props: {
  jobId: string;
  graph: GraphView;
  metrics: JobMetrics | null;
  vertical: boolean;
}) {
  const laid = useMemo(() => layout(props.graph, props.vertical), [props.graph, props.vertical]);
  const byId = new Map(props.metrics?.vertices.map((v) => [v.id, v]) ?? []);
  const now = props.metrics?.time ?? Date.now();
  return (
    <svg
      class="job-graph"
      viewBox={`0 0 ${laid.width} ${laid.height}`}
      style={{ maxWidth: `${laid.width}px` }}
      role="group"
      aria-label={`Job graph: ${props.graph.vertices.length} vertices, ${props.graph.edges.length} edges`}
    >
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="arrow-head" />
        </marker>
      </defs>
      {laid.edges.map((e) => {
        const mid = e.points[Math.floor(e.points.length / 2)];
        return (
          <g key={e.key} class={`edge${e.side ? " side" : ""}`} aria-hidden="true">
            <path d={edgePath(e.points)} marker-end="url(#arrow)" />
            {mid && (
              <text x={mid.x} y={mid.y - 5} text-anchor="middle" class="edge-label">
                {e.label}
              </text>
            )}
          </g>
        );
      })}
      {props.graph.vertices.map((v) => (
        <Vertex key={v.id} jobId={props.jobId} v={v} at={laid.nodes.get(v.id)!} m={byId.get(v.id)} now={now} />
      ))}
    </svg>
  );
}
