// One vertex of a job: its figures per subtask and a chart of its rates over the last
// minutes.

import { useState } from "preact/hooks";
import { api, ApiError, JobInfo } from "../api";
import { pressure } from "../components/JobGraph";
import { RateChart } from "../components/RateChart";
import { ErrorBox, Loading } from "../components/common";
import { bytes, count, duration, lag, percent, rate, time } from "../format";
import { announce, usePoll } from "../hooks";
import { HISTORY_MS, useLive } from "../live";
import { href } from "../router";

/** Replace the operator's code while the job runs (hot-swap) with a stored operator. */
function SwapForm(props: { job: JobInfo; vertex: string; current?: string | null }) {
  const { data: ops } = usePoll(api.operators, 10_000);
  const [choice, setChoice] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const others = (ops ?? []).filter((o) => o.sha256 !== props.current);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!choice) return setError("Choose the new version.");
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const r = await api.swap(props.job.id, props.vertex, choice);
      const msg =
        r.status === "committed"
          ? `Swapped at checkpoint ${r.checkpoint}; the stream paused ${r.pause_ms?.toFixed(1)} ms.`
          : `Swap ${r.status} (checkpoint ${r.checkpoint ?? "—"}).`;
      setDone(msg);
      announce(msg);
    } catch (err) {
      setError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card swap" onSubmit={submit} aria-labelledby="swap-title" noValidate>
      <h2 id="swap-title">Replace the code</h2>
      <p class="help">
        At the next checkpoint barrier every subtask moves its state to the new version, without stopping the job; if the new
        version fails, the job goes back to this one.
      </p>
      <div class="row">
        <div class="field">
          <label for="swap-to">New version</label>
          <select id="swap-to" value={choice} onChange={(e) => setChoice(e.currentTarget.value)} aria-describedby={error ? "swap-error" : undefined}>
            <option value="">Choose a stored operator…</option>
            {others.map((o) => (
              <option key={o.sha256} value={o.sha256}>
                {o.name ? `${o.name}@${o.version ?? ""}` : o.sha256.slice(0, 12)}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Swapping…" : "Replace code"}
        </button>
      </div>
      <ErrorBox error={error} id="swap-error" />
      {done && (
        <p class="ok" role="status">
          {done}
        </p>
      )}
    </form>
  );
}

export function VertexPage(props: { id: string; vertex: string }) {
  const { data: job, error } = usePoll(() => api.job(props.id), 5000, [props.id]);
  const live = useLive(props.id);
  if (!job) return error ? <ErrorBox error={error} /> : <Loading what={`job ${props.id}`} />;
  const v = job.graph.vertices.find((x) => x.id === props.vertex);
  if (!v) return <ErrorBox error={`Job ${job.name} has no vertex '${props.vertex}'.`} />;
  const m = live.latest?.vertices.find((x) => x.id === v.id);
  const inputs = job.graph.edges.filter((e) => e.target === v.id);
  const outputs = job.graph.edges.filter((e) => e.source === v.id);
  return (
    <section aria-labelledby="vertex-title">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href.jobs()}>Jobs</a> › <a href={href.job(job.id)}>{job.name}</a> › <span aria-current="page">{v.id}</span>
      </nav>
      <h1 id="vertex-title">
        {v.id} <span class="sub">{v.kind}, parallelism {v.parallelism}</span>
      </h1>
      <dl class="facts">
        <div>
          <dt>Inputs</dt>
          <dd>{inputs.length ? inputs.map((e) => `${e.source}${e.side_output ? ` (${e.side_output})` : ""} · ${e.partitioning}`).join(", ") : "—"}</dd>
        </div>
        <div>
          <dt>Outputs</dt>
          <dd>{outputs.length ? outputs.map((e) => `${e.target}${e.side_output ? ` (${e.side_output})` : ""}`).join(", ") : "—"}</dd>
        </div>
        {v.operator && (
          <div>
            <dt>Component</dt>
            <dd>
              <code title={v.operator}>{v.operator.slice(0, 12)}…</code>
            </dd>
          </div>
        )}
        {m && v.kind === "operator" && (
          <div>
            <dt>Failed calls</dt>
            <dd>
              {count(m.failures.traps)} traps, {count(m.failures.limit_hits)} limit hits, {count(m.failures.errors)} errors;{" "}
              {count(m.failures.skipped_records)} skipped, {count(m.failures.dead_lettered_records)} dead-lettered
            </dd>
          </div>
        )}
        {m && v.kind === "window" && (
          <>
            <div>
              <dt>Window firings</dt>
              <dd>{count(m.window_firings)}</dd>
            </div>
            <div>
              <dt>Late records</dt>
              <dd>{count(m.late_records)}</dd>
            </div>
          </>
        )}
      </dl>
      {v.kind === "operator" && job.status === "running" && <SwapForm job={job} vertex={v.id} current={v.operator} />}
      <h2>Records per second, last {Math.round(HISTORY_MS / 60000)} minutes</h2>
      <RateChart history={live.history} vertex={v.id} />
      <div class="table-wrap">
        <table class="subtasks">
          <caption>Subtasks</caption>
          <thead>
            <tr>
              <th scope="col" class="num">Subtask</th>
              <th scope="col" class="num">Records in</th>
              <th scope="col" class="num">Records out</th>
              <th scope="col" class="num">In/s</th>
              <th scope="col" class="num">Out/s</th>
              <th scope="col" class="num">Bytes in</th>
              <th scope="col" class="num">Bytes out</th>
              <th scope="col" class="num">Busy</th>
              <th scope="col" class="num">Backpressured</th>
              <th scope="col">Watermark (UTC)</th>
              <th scope="col" class="num">Watermark lag</th>
            </tr>
          </thead>
          <tbody>
            {!m && (
              <tr>
                <td colSpan={11}>No figures yet.</td>
              </tr>
            )}
            {m?.subtasks.map((s, i) => (
              <tr key={i}>
                <th scope="row" class="num">
                  {i}
                </th>
                <td class="num">{count(s.records_in)}</td>
                <td class="num">{count(s.records_out + s.side_records_out)}</td>
                <td class="num">{rate(s.records_in_per_second)}</td>
                <td class="num">{rate(s.records_out_per_second)}</td>
                <td class="num">{bytes(s.bytes_in)}</td>
                <td class="num">{bytes(s.bytes_out)}</td>
                <td class="num">{percent(s.busy_ms_per_second)}</td>
                <td class={`num bp-text-${pressure(s.backpressured_ms_per_second)}`}>{percent(s.backpressured_ms_per_second)}</td>
                <td>{time(s.watermark)}</td>
                <td class="num">{live.latest && lag(live.latest.time, s.watermark) != null ? duration(lag(live.latest.time, s.watermark)!) : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
