// Small hooks shared by the pages.

import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

/** Calls `load` now and every `everyMs` while mounted (and when `deps` change); the
 * newest answer, or the error of the newest failure. `reload` asks again at once. */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const tick = useRef(0);
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    let alive = true;
    const mine = ++tick.current;
    const run = async () => {
      try {
        const d = await load();
        if (alive && mine === tick.current) {
          setData(d);
          setError(null);
        }
      } catch (e) {
        if (alive) setError(e instanceof ApiError ? e : new ApiError(0, "error", String(e)));
      }
    };
    run();
    const t = setInterval(run, everyMs);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [...deps, nonce]);
  return { data, error, reload: () => setNonce((n) => n + 1) };
}

/** Whether the window is narrower than `px`. */
export function useNarrow(px = 760): boolean {
  const q = `(max-width: ${px}px)`;
  const [narrow, setNarrow] = useState(() => matchMedia(q).matches);
  useEffect(() => {
    const m = matchMedia(q);
    const f = () => setNarrow(m.matches);
    m.addEventListener("change", f);
    return () => m.removeEventListener("change", f);
  }, [q]);
  return narrow;
}

/** A message for the screen reader's polite live region (and the status line). */
export function announce(message: string) {
  window.dispatchEvent(new CustomEvent("sluice-announce", { detail: message }));
}
