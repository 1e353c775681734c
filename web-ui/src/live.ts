// A job's live figures: `/v1/jobs/{id}/events` (server-sent events) read with `fetch`,
// so that the bearer token goes in a header (an `EventSource` cannot send one). Keeps a
// history of the samples of the last minutes for the rate charts.

import { useEffect, useState } from "preact/hooks";
import { authHeaders, JobMetrics, JobSummary } from "./api";

/** How much history the charts keep, ms. */
export const HISTORY_MS = 5 * 60 * 1000;

export interface Live {
  /** The newest figures, if any yet. */
  latest: JobMetrics | null;
  /** Samples of the last `HISTORY_MS`, oldest first. */
  history: JobMetrics[];
  /** Set when the stream ended because the job is no longer running. */
  ended: JobSummary | null;
  /** Whether the stream is connected. */
  connected: boolean;
  /** Why the stream failed, if it did. */
  error: string | null;
}

/** Splits a `text/event-stream` body into `{event, data}` messages (the WHATWG format). */
export function parseEvents(buffer: string): { events: { event: string; data: string }[]; rest: string } {
  const events: { event: string; data: string }[] = [];
  const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) events.push({ event, data: data.join("\n") });
  }
  return { events, rest };
}

/** Subscribes to a job's live figures while the component is mounted; reconnects after a
 * dropped connection (every 2 s) as long as the job runs. */
export function useLive(jobId: string): Live {
  const [live, setLive] = useState<Live>({
    latest: null,
    history: [],
    ended: null,
    connected: false,
    error: null,
  });
  useEffect(() => {
    const abort = new AbortController();
    let stopped = false;
    let history: JobMetrics[] = [];
    const push = (m: JobMetrics) => {
      history = [...history.filter((h) => h.time > m.time - HISTORY_MS && h.time < m.time), m];
      setLive((l) => ({ ...l, latest: m, history, error: null }));
    };
    const run = async () => {
      while (!stopped) {
        try {
          const res = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
            headers: authHeaders({ Accept: "text/event-stream" }),
            signal: abort.signal,
          });
          if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
          setLive((l) => ({ ...l, connected: true, error: null }));
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const parsed = parseEvents(buffer + value);
            buffer = parsed.rest;
            for (const e of parsed.events) {
              if (e.event === "metrics") push(JSON.parse(e.data));
              else if (e.event === "job") {
                stopped = true;
                setLive((l) => ({ ...l, ended: JSON.parse(e.data) }));
              }
            }
          }
          setLive((l) => ({ ...l, connected: false }));
        } catch (e) {
          if (abort.signal.aborted) return;
          setLive((l) => ({ ...l, connected: false, error: String(e) }));
        }
        if (!stopped) await new Promise((r) => setTimeout(r, 2000));
      }
    };
    run();
    return () => {
      stopped = true;
      abort.abort();
    };
  }, [jobId]);
  return live;
}
