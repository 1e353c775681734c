// Submit a job: a spec in YAML or JSON (the same fields as `sluice run`'s files, with
// operators named `name@version` or by hash), checked as it is typed — syntax, shape,
// and that every operator it names is stored — and by the server on submission, whose
// messages name the field.

import { useMemo, useState } from "preact/hooks";
import { parseDocument } from "yaml";
import { api, ApiError, OperatorInfo } from "../api";
import { ErrorBox } from "../components/common";
import { announce, usePoll } from "../hooks";
import { href } from "../router";

interface Check {
  spec: unknown;
  problems: string[];
}

/** Parses `text` (YAML, of which JSON is a subset) and checks what can be checked here. */
export function check(text: string, operators: OperatorInfo[] | null): Check {
  if (!text.trim()) return { spec: null, problems: ["The spec is empty."] };
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) {
    return {
      spec: null,
      problems: doc.errors.map((e) => {
        const at = e.linePos?.[0];
        return `${at ? `line ${at.line}, column ${at.col}: ` : ""}${e.message.split("\n")[0]}`;
      }),
    };
  }
  const spec = doc.toJS();
  const problems: string[] = [];
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    return { spec, problems: ["The spec must be a mapping with sources, operators and sinks."] };
  }
  const s = spec as Record<string, unknown>;
  for (const k of ["sources", "sinks"]) {
    if (!Array.isArray(s[k]) || (s[k] as unknown[]).length === 0) problems.push(`${k}: needs at least one entry.`);
  }
  if (s.operators !== undefined && !Array.isArray(s.operators)) problems.push("operators: must be a list.");
  if (Array.isArray(s.operators)) {
    (s.operators as Record<string, unknown>[]).forEach((op, i) => {
      if (typeof op !== "object" || op === null) return problems.push(`operators[${i}]: must be a mapping.`);
      if (op.wasm !== undefined)
        problems.push(`operators[${i}].wasm: a server runs uploaded operators: name one with operator: <name>@<version> or its SHA-256.`);
      const ref = op.operator;
      if (ref === undefined && op.wasm === undefined) problems.push(`operators[${i}].operator: missing (<name>@<version> or a SHA-256).`);
      if (typeof ref === "string" && operators) {
        const known = operators.some(
          (o) => o.sha256 === ref || (o.name && `${o.name}@${o.version ?? ""}` === ref),
        );
        if (!known)
          problems.push(
            `operators[${i}].operator: no operator '${ref}' is stored${
              operators.length ? ` (stored: ${operators.map((o) => (o.name ? `${o.name}@${o.version ?? ""}` : o.sha256.slice(0, 12))).join(", ")})` : ""
            }.`,
          );
      }
    });
  }
  return { spec, problems };
}

const EXAMPLE = (op: string) => `# A job spec, in YAML or JSON (see host/core/JOB-SPEC.md).
name: my-job
sources:
  - id: events
    connector: csv
    path: /path/to/events.csv
    event_time: ts
operators:
  - id: transform
    operator: ${op}
    input: events
sinks:
  - id: out
    connector: file
    path: out/results.jsonl
    input: transform
`;

export function SubmitPage() {
  const { data: operators } = usePoll(api.operators, 5000);
  const [text, setText] = useState("");
  const [touched, setTouched] = useState(false);
  const [serverError, setServerError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const checked = useMemo(() => check(text, operators), [text, operators]);
  const showProblems = touched && checked.problems.length > 0;
  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setServerError(null);
    if (checked.problems.length) return;
    setBusy(true);
    try {
      const job = await api.submit(checked.spec);
      announce(`Job ${job.name} submitted`);
      location.hash = href.job(job.id);
    } catch (err) {
      setServerError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const first = operators?.[0];
  const describedBy = [showProblems ? "spec-problems" : "", serverError ? "spec-server-error" : "", "spec-help"]
    .filter(Boolean)
    .join(" ");
  return (
    <section aria-labelledby="submit-title">
      <h1 id="submit-title">Submit a job</h1>
      <form class="submit card" onSubmit={submit} noValidate>
        <div class="field">
          <label for="spec">Job spec (YAML or JSON)</label>
          <p id="spec-help" class="help">
            Sources, operators, windows and sinks joined by <code>input:</code>. Operators are named{" "}
            <code>operator: name@version</code> or by SHA-256 (<a href={href.operators()}>upload one</a>). Relative paths
            resolve in the job's folder on the server.
          </p>
          <textarea
            id="spec"
            rows={22}
            spellcheck={false}
            value={text}
            aria-invalid={showProblems || serverError ? "true" : undefined}
            aria-describedby={describedBy}
            onInput={(e) => {
              setText(e.currentTarget.value);
              setServerError(null);
            }}
            onBlur={() => setTouched(true)}
          />
        </div>
        {showProblems && (
          <ul id="spec-problems" class="problems" aria-live="polite">
            {checked.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        )}
        <div id="spec-server-error">
          <ErrorBox error={serverError} />
        </div>
        <div class="row">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Submitting…" : "Submit"}
          </button>
          <button
            type="button"
            onClick={() => {
              setText(EXAMPLE(first ? (first.name ? `${first.name}@${first.version ?? ""}` : first.sha256) : "name@version"));
              setTouched(false);
            }}
          >
            Insert an example
          </button>
        </div>
      </form>
    </section>
  );
}
