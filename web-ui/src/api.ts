// The REST API of `sluice serve` (`/v1`, described by `/v1/openapi.json`): the shapes
// the dashboard reads, and one `request` that adds the bearer token and turns the
// server's error shape `{"error": {"code", "message"}}` into an `ApiError`.

export type JobStatus = "running" | "finished" | "failed" | "cancelled" | "stopped";

export interface VertexView {
  id: string;
  kind: "source" | "operator" | "window" | "sink" | string;
  parallelism: number;
  operator?: string | null;
  chain: string;
}

export interface EdgeView {
  source: string;
  target: string;
  side_output?: string | null;
  partitioning: string;
}

export interface GraphView {
  max_parallelism: number;
  vertices: VertexView[];
  edges: EdgeView[];
}

export interface CheckpointInfo {
  id: number;
  kind: string;
  status: string;
  duration_ms: number;
  uploaded_bytes: number;
  state_bytes: number;
  completed_at: number;
}

export interface SavepointInfo {
  folder: string;
  taken_at: number;
  stopped: boolean;
}

/** One failure of a job, as `JobInfo.exceptions` holds it. */
export interface ExceptionInfo {
  /** ms since the epoch */
  time: number;
  message: string;
  vertex?: string | null;
  subtask?: number | null;
  /** The key groups of the failing subtask, `[first, last]`, for a keyed vertex. */
  key_groups?: [number, number] | null;
  /** What followed: the job restarted or failed for good, or (under the operator's
   * failure policy) the input was skipped or the record dead-lettered. */
  outcome: "restarted" | "failed" | "skipped" | "dead_lettered" | string;
}

export interface JobInfo {
  id: string;
  name: string;
  status: JobStatus;
  spec: unknown;
  operators: string[];
  graph: GraphView;
  submitted_at: number;
  started_at?: number | null;
  ended_at?: number | null;
  runs: number;
  restarts: number;
  restored_from?: string | null;
  last_error?: string | null;
  exceptions: ExceptionInfo[];
  savepoints: SavepointInfo[];
  checkpoints: CheckpointInfo[];
}

export interface JobSummary {
  id: string;
  name: string;
  status: JobStatus;
  submitted_at: number;
  started_at?: number | null;
  ended_at?: number | null;
  restarts: number;
  last_error?: string | null;
}

/** Figures of a subtask, or summed over a vertex's subtasks. */
export interface Figures {
  records_in: number;
  records_out: number;
  side_records_out: number;
  bytes_in: number;
  bytes_out: number;
  records_in_per_second: number;
  records_out_per_second: number;
  bytes_in_per_second: number;
  bytes_out_per_second: number;
  busy_ms: number;
  backpressured_ms: number;
  /** 0..1000 per subtask; a vertex: its highest subtask. */
  busy_ms_per_second: number;
  /** 0..1000 per subtask; a vertex: its highest subtask. */
  backpressured_ms_per_second: number;
  watermark?: number | null;
}

/** Failed calls of a vertex's user operator since the job started. */
export interface FailureFigures {
  traps: number;
  limit_hits: number;
  errors: number;
  skipped_records: number;
  dead_lettered_records: number;
}

export interface VertexMetrics extends Figures {
  id: string;
  kind: string;
  parallelism: number;
  late_records: number;
  window_firings: number;
  failures: FailureFigures;
  subtasks: Figures[];
}

export interface JobMetrics {
  job: string;
  /** ms since the epoch */
  time: number;
  vertices: VertexMetrics[];
}

export interface OperatorInfo {
  sha256: string;
  name?: string | null;
  version?: string | null;
  size_bytes: number;
  world: string;
  exports: string[];
  imports: string[];
  uploaded_at: number;
  jobs: string[];
}

/** How a hot-swap went. */
export interface SwapResult {
  status: "committed" | "trial" | "armed" | "requested" | string;
  operator: string;
  checkpoint?: number | null;
  pause_ms?: number | null;
  job: JobInfo;
}

/** An answer of the server that is not a success. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "sluice-token";

/** The bearer token the user gave, kept for this browser tab. */
export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event("sluice-token"));
}

/** Headers for a request: the token, if any. */
export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** Listeners told when the server answers 401 (the page then asks for a token). */
const unauthorized = new Set<() => void>();
export function onUnauthorized(f: () => void): () => void {
  unauthorized.add(f);
  return () => unauthorized.delete(f);
}

/** A request to the API; the parsed JSON answer, or an `ApiError`. */
export async function request<T>(
  method: string,
  path: string,
  body?: { json: unknown } | { raw: Blob | ArrayBuffer; type: string },
): Promise<T> {
  const headers: Record<string, string> = {};
  let payload: BodyInit | undefined;
  if (body && "json" in body) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body.json);
  } else if (body) {
    headers["Content-Type"] = body.type;
    payload = body.raw;
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers: authHeaders(headers), body: payload });
  } catch (e) {
    throw new ApiError(0, "unreachable", `the server cannot be reached: ${e}`);
  }
  const text = await res.text();
  let json: any = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
  }
  if (!res.ok) {
    if (res.status === 401) unauthorized.forEach((f) => f());
    const err = json?.error;
    throw new ApiError(
      res.status,
      err?.code ?? "http_error",
      err?.message ?? `${method} ${path}: HTTP ${res.status}`,
    );
  }
  return json as T;
}

export const api = {
  jobs: () => request<JobSummary[]>("GET", "/v1/jobs"),
  job: (id: string) => request<JobInfo>("GET", `/v1/jobs/${encodeURIComponent(id)}`),
  metrics: (id: string) =>
    request<JobMetrics>("GET", `/v1/jobs/${encodeURIComponent(id)}/metrics`),
  submit: (spec: unknown) => request<JobInfo>("POST", "/v1/jobs", { json: spec }),
  stop: (id: string, savepoint: boolean) =>
    request<{ savepoint?: SavepointInfo | null; job: JobInfo }>(
      "POST",
      `/v1/jobs/${encodeURIComponent(id)}/stop`,
      { json: { savepoint } },
    ),
  cancel: (id: string) => request<JobInfo>("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`),
  savepoint: (id: string) =>
    request<{ savepoint: SavepointInfo; job: JobInfo }>(
      "POST",
      `/v1/jobs/${encodeURIComponent(id)}/savepoints`,
    ),
  restart: (id: string, savepoint?: string) =>
    request<JobInfo>("POST", `/v1/jobs/${encodeURIComponent(id)}/restart`, {
      json: savepoint ? { savepoint } : {},
    }),
  swap: (id: string, vertex: string, operator: string) =>
    request<SwapResult>(
      "PUT",
      `/v1/jobs/${encodeURIComponent(id)}/operators/${encodeURIComponent(vertex)}`,
      { json: { operator } },
    ),
  /** The tail of what the job's operators printed and logged (text). */
  log: (id: string) => request<string>("GET", `/v1/jobs/${encodeURIComponent(id)}/log`),
  operators: () => request<OperatorInfo[]>("GET", "/v1/operators"),
  upload: (file: Blob, name?: string, version?: string) => {
    const q = new URLSearchParams();
    if (name) q.set("name", name);
    if (version) q.set("version", version);
    const qs = q.toString();
    return request<OperatorInfo>("POST", `/v1/operators${qs ? `?${qs}` : ""}`, {
      raw: file,
      type: "application/wasm",
    });
  },
  deleteOperator: (ref: string) =>
    request<null>("DELETE", `/v1/operators/${encodeURIComponent(ref)}`),
};
