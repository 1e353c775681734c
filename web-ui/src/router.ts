// Hash routes (`#/jobs/ID`), so that the server serves one page and a reload keeps
// the view.

import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "jobs" }
  | { page: "job"; id: string; tab: "graph" | "checkpoints" | "exceptions" | "log" | "spec" }
  | { page: "vertex"; id: string; vertex: string }
  | { page: "operators" }
  | { page: "submit" }
  | { page: "missing"; path: string };

/** The route of a location hash. */
export function parse(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/jobs";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts[0] === "jobs" && parts.length === 1)) return { page: "jobs" };
  if (parts[0] === "jobs" && parts.length === 2) return { page: "job", id: parts[1], tab: "graph" };
  if (parts[0] === "jobs" && parts.length === 3 && ["checkpoints", "exceptions", "log", "spec"].includes(parts[2]))
    return { page: "job", id: parts[1], tab: parts[2] as "checkpoints" | "exceptions" | "log" | "spec" };
  if (parts[0] === "jobs" && parts.length === 4 && parts[2] === "vertices")
    return { page: "vertex", id: parts[1], vertex: parts[3] };
  if (parts[0] === "operators" && parts.length === 1) return { page: "operators" };
  if (parts[0] === "submit" && parts.length === 1) return { page: "submit" };
  return { page: "missing", path };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const f = () => setRoute(parse(location.hash));
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  return route;
}

export const href = {
  jobs: () => "#/jobs",
  job: (id: string, tab?: string) => `#/jobs/${encodeURIComponent(id)}${tab ? `/${tab}` : ""}`,
  vertex: (id: string, v: string) => `#/jobs/${encodeURIComponent(id)}/vertices/${encodeURIComponent(v)}`,
  operators: () => "#/operators",
  submit: () => "#/submit",
};
