// Pieces shared by the pages: status badges, error boxes, loading lines.

import type { ApiError, JobStatus } from "../api";

export function StatusBadge(props: { status: JobStatus }) {
  return <span class={`badge status-${props.status}`}>{props.status}</span>;
}

/** An error from the server, as an alert. */
export function ErrorBox(props: { error: ApiError | string | null; id?: string }) {
  if (!props.error) return null;
  const e = props.error;
  return (
    <div class="error" role="alert" id={props.id}>
      {typeof e === "string" ? e : `${e.message}${e.code && e.status ? ` (${e.code})` : ""}`}
    </div>
  );
}

export function Loading(props: { what: string }) {
  return <p class="loading">Loading {props.what}…</p>;
}
