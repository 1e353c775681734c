// One job: its graph with live figures, its checkpoints, its exceptions and its spec,
// and the actions on it (stop with a savepoint, savepoint, cancel, restart).

import { useState } from "preact/hooks";
import { api, ApiError, JobInfo, JobMetrics } from "../api";
import { JobGraph, pressure } from "../components/JobGraph";
import { ErrorBox, Loading, StatusBadge } from "../components/common";
import { bytes, count, duration, percent, rate, time } from "../format";
import { announce, useNarrow, usePoll } from "../hooks";
import { useLive } from "../live";
import { href } from "../router";

type Tab = "graph" | "checkpoints" | "exceptions" | "log" | "spec";

/** What the job's operators printed and logged, polled while the tab is open. */
function GuestLog(props: { id: string }) {
  const { data, error } = usePoll(() => api.log(props.id), 3000, [props.id]);
  if (error) return <ErrorBox error={error} />;
  if (data == null) return <Loading what="the log" />;
  if (!data) return <p>The job's operators have printed nothing.</p>;
  return (
    <pre class="spec guest-log" tabIndex={0} aria-label="What the job's operators printed and logged, newest last">
      {data}
    </pre>
  );
}

function Actions(props: { job: JobInfo; reload: () => void }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const j = props.job;
  const act = (what: string, f: () => Promise<string>) => async () => {
    setBusy(what);
    setError(null);
    try {
      announce(await f());
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(null);
      props.reload();
    }
  };
  const running = j.status === "running";
  return (
    <div class="actions" aria-label="Job actions" role="group">
      {running ? (
        <>
          <button
            type="button"
            class="primary"
            disabled={!!busy}
            onClick={act("stop", async () => {
              const r = await api.stop(j.id, true);
              return `Job ${j.name} stopped with savepoint ${r.savepoint?.folder ?? ""}`;
            })}
          >
            {busy === "stop" ? "Stopping…" : "Stop with savepoint"}
          </button>
          <button
            type="button"
            disabled={!!busy}
            onClick={act("savepoint", async () => {
              const r = await api.savepoint(j.id);
              return `Savepoint taken: ${r.savepoint.folder}`;
            })}
          >
            {busy === "savepoint" ? "Taking savepoint…" : "Take savepoint"}
          </button>
          <button
            type="button"
            class="danger"
            disabled={!!busy}
            onClick={() => {
              if (confirm(`Cancel job ${j.name}? Its checkpoints are kept; a restart resumes.`))
                act("cancel", async () => {
                  await api.cancel(j.id);
                  return `Job ${j.name} cancelled`;
                })();
            }}
          >
            Cancel
          </button>
        </>
      ) : (
        <button
          type="button"
          class="primary"
          disabled={!!busy}
          onClick={act("restart", async () => {
            const sp = j.savepoints[j.savepoints.length - 1]?.folder;
            await api.restart(j.id, sp);
            return `Job ${j.name} restarted${sp ? ` from ${sp}` : ""}`;
          })}
        >
          {busy === "restart" ? "Restarting…" : j.savepoints.length ? "Restart from the latest savepoint" : "Restart"}
        </button>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

function VertexTable(props: { job: JobInfo; metrics: JobMetrics | null }) {
  const byId = new Map(props.metrics?.vertices.map((v) => [v.id, v]) ?? []);
  return (
    <div class="table-wrap">
      <table class="vertices">
        <caption>Vertices</caption>
        <thead>
          <tr>
            <th scope="col">Vertex</th>
            <th scope="col">Kind</th>
            <th scope="col" class="num">Parallelism</th>
            <th scope="col" class="num">Records in</th>
            <th scope="col" class="num">Records out</th>
            <th scope="col" class="num">In/s</th>
            <th scope="col" class="num">Out/s</th>
            <th scope="col" class="num">Backpressured</th>
            <th scope="col" class="num">Busy</th>
            <th scope="col">Watermark (UTC)</th>
          </tr>
        </thead>
        <tbody>
          {props.job.graph.vertices.map((v) => {
            const m = byId.get(v.id);
            return (
              <tr key={v.id}>
                <th scope="row">
                  <a href={href.vertex(props.job.id, v.id)}>{v.id}</a>
                </th>
                <td>{v.kind}</td>
                <td class="num">{v.parallelism}</td>
                <td class="num">{m ? count(m.records_in) : "—"}</td>
                <td class="num">{m ? count(m.records_out + m.side_records_out) : "—"}</td>
                <td class="num">{m ? rate(m.records_in_per_second) : "—"}</td>
                <td class="num">{m ? rate(m.records_out_per_second) : "—"}</td>
                <td class={`num bp-text-${pressure(m?.backpressured_ms_per_second ?? 0)}`}>
                  {m ? percent(m.backpressured_ms_per_second) : "—"}
                </td>
                <td class="num">{m ? percent(m.busy_ms_per_second) : "—"}</td>
                <td>{time(m?.watermark)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function Checkpoints(props: { job: JobInfo }) {
  const cps = [...props.job.checkpoints].reverse();
  return (
    <>
      <div class="table-wrap">
        <table class="checkpoints">
          <caption>Checkpoints and savepoints, newest first</caption>
          <thead>
            <tr>
              <th scope="col" class="num">Id</th>
              <th scope="col">Kind</th>
              <th scope="col">Status</th>
              <th scope="col">Completed (UTC)</th>
              <th scope="col" class="num">Duration</th>
              <th scope="col" class="num">State size</th>
              <th scope="col" class="num">Uploaded</th>
            </tr>
          </thead>
          <tbody>
            {cps.length === 0 && (
              <tr>
                <td colSpan={7}>No checkpoint has completed yet (the spec's <code>checkpoints.interval</code> sets how often).</td>
              </tr>
            )}
            {cps.map((c) => (
              <tr key={`${c.kind}-${c.id}-${c.completed_at}`}>
                <td class="num">{c.id}</td>
                <td>{c.kind}</td>
                <td>{c.status}</td>
                <td>{time(c.completed_at)}</td>
                <td class="num">{duration(c.duration_ms)}</td>
                <td class="num">{bytes(c.state_bytes)}</td>
                <td class="num">{bytes(c.uploaded_bytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>Savepoints</h2>
      {props.job.savepoints.length === 0 ? (
        <p>None taken.</p>
      ) : (
        <ul class="savepoints">
          {props.job.savepoints.map((s) => (
            <li key={s.folder}>
              <code>{s.folder}</code> — {time(s.taken_at)}
              {s.stopped ? " (the job stopped with it)" : ""}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

const OUTCOME: Record<string, string> = {
  restarted: "the job restarted",
  failed: "the job failed",
  skipped: "its input was skipped",
  dead_lettered: "the record went to dead-letter",
};

function Exceptions(props: { job: JobInfo }) {
  const list = [...props.job.exceptions].reverse();
  if (list.length === 0) return <p>No exceptions: the job has not failed.</p>;
  return (
    <ol class="exceptions" reversed>
      {list.map((e, i) => (
        <li key={i} class="exception">
          <div class="exc-head">
            <time dateTime={new Date(e.time).toISOString()}>{time(e.time)}</time>
            {e.vertex && (
              <span>
                operator <a href={href.vertex(props.job.id, e.vertex)}>{e.vertex}</a>
              </span>
            )}
            {e.subtask != null && <span>subtask {e.subtask}</span>}
            {e.key_groups && (
              <span>
                {e.key_groups[0] === e.key_groups[1]
                  ? `key group ${e.key_groups[0]}`
                  : `key groups ${e.key_groups[0]}–${e.key_groups[1]}`}
              </span>
            )}
            <span class={`outcome outcome-${e.outcome}`}>{OUTCOME[e.outcome] ?? e.outcome}</span>
          </div>
          <pre class="exc-message">{e.message}</pre>
        </li>
      ))}
    </ol>
  );
}

export function JobPage(props: { id: string; tab: Tab }) {
  const { data: job, error, reload } = usePoll(() => api.job(props.id), 2000, [props.id]);
  const live = useLive(props.id);
  const narrow = useNarrow();
  if (!job) return error ? <ErrorBox error={error} /> : <Loading what={`job ${props.id}`} />;
  const metrics = live.latest;
  const tabs: [Tab, string][] = [
    ["graph", "Graph"],
    ["checkpoints", `Checkpoints (${job.checkpoints.length})`],
    ["exceptions", `Exceptions (${job.exceptions.length})`],
    ["log", "Log"],
    ["spec", "Spec"],
  ];
  return (
    <section aria-labelledby="job-title">
      <div class="page-head">
        <h1 id="job-title">
          {job.name} <StatusBadge status={job.status} />
        </h1>
        <Actions job={job} reload={reload} />
      </div>
      <dl class="facts">
        <div>
          <dt>Id</dt>
          <dd>
            <code>{job.id}</code>
          </dd>
        </div>
        <div>
          <dt>Started (UTC)</dt>
          <dd>{time(job.started_at)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{job.started_at ? duration((job.ended_at ?? Date.now()) - job.started_at) : "—"}</dd>
        </div>
        <div>
          <dt>Restarts</dt>
          <dd>{job.restarts}</dd>
        </div>
        <div>
          <dt>Restored from</dt>
          <dd>{job.restored_from ? <code>{job.restored_from}</code> : "—"}</dd>
        </div>
        <div>
          <dt>Live figures</dt>
          <dd>{job.status !== "running" ? "final" : live.connected ? "streaming" : "connecting…"}</dd>
        </div>
      </dl>
      {job.last_error && <ErrorBox error={`Last error: ${job.last_error}`} />}
      <nav class="tabs" aria-label="Job views">
        {tabs.map(([t, label]) => (
          <a key={t} href={href.job(job.id, t === "graph" ? undefined : t)} aria-current={props.tab === t ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {props.tab === "graph" && (
        <>
          <div class="graph-wrap">
            <JobGraph jobId={job.id} graph={job.graph} metrics={metrics} vertical={narrow} />
          </div>
          <VertexTable job={job} metrics={metrics} />
        </>
      )}
      {props.tab === "checkpoints" && <Checkpoints job={job} />}
      {props.tab === "exceptions" && <Exceptions job={job} />}
      {props.tab === "log" && <GuestLog id={job.id} />}
      {props.tab === "spec" && (
        <pre class="spec" tabIndex={0} aria-label="The job spec, as submitted (operators pinned to hashes)">
          {JSON.stringify(job.spec, null, 2)}
        </pre>
      )}
    </section>
  );
}
