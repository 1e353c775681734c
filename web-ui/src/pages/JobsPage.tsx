// The jobs overview: every job with its status, times and restarts.

import { api } from "../api";
import { ErrorBox, Loading, StatusBadge } from "../components/common";
import { duration, time } from "../format";
import { usePoll } from "../hooks";
import { href } from "../router";

export function JobsPage() {
  const { data: jobs, error } = usePoll(api.jobs, 2000);
  return (
    <section aria-labelledby="jobs-title">
      <div class="page-head">
        <h1 id="jobs-title">Jobs</h1>
        <a class="button" href={href.submit()}>
          Submit a job
        </a>
      </div>
      <ErrorBox error={error} />
      {!jobs && !error && <Loading what="jobs" />}
      {jobs && jobs.length === 0 && (
        <p>
          No jobs yet. <a href={href.operators()}>Upload an operator</a>, then{" "}
          <a href={href.submit()}>submit a job</a> that uses it.
        </p>
      )}
      {jobs && jobs.length > 0 && (
        <div class="table-wrap">
          <table class="jobs">
            <caption class="sr-only">Jobs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Started (UTC)</th>
                <th scope="col">Duration</th>
                <th scope="col" class="num">Restarts</th>
                <th scope="col">Last error</th>
              </tr>
            </thead>
            <tbody>
              {[...jobs].reverse().map((j) => (
                <tr key={j.id} data-job={j.id}>
                  <th scope="row">
                    <a href={href.job(j.id)}>{j.name}</a>
                    <div class="sub">{j.id}</div>
                  </th>
                  <td>
                    <StatusBadge status={j.status} />
                  </td>
                  <td>{time(j.started_at)}</td>
                  <td>{j.started_at ? duration((j.ended_at ?? Date.now()) - j.started_at) : "—"}</td>
                  <td class="num">{j.restarts}</td>
                  <td class="clip" title={j.last_error ?? ""}>
                    {j.last_error ?? ""}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
