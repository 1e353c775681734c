// Operators: upload a component (checked by the server against the operator world),
// list the stored ones, delete an unused one.

import { useRef, useState } from "preact/hooks";
import { api, ApiError, OperatorInfo } from "../api";
import { ErrorBox, Loading } from "../components/common";
import { bytes, time } from "../format";
import { announce, usePoll } from "../hooks";
import { href } from "../router";

function UploadForm(props: { onUploaded: (o: OperatorInfo) => void }) {
  const file = useRef<HTMLInputElement>(null);
  const [name, setName] = useState("");
  const [version, setVersion] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<OperatorInfo | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    const f = file.current?.files?.[0];
    if (!f) return setError("Choose a .wasm component to upload.");
    if (version && !name) return setError("A version needs a name.");
    setBusy(true);
    try {
      const o = await api.upload(f, name.trim() || undefined, version.trim() || undefined);
      setDone(o);
      announce(`Uploaded ${o.name ?? o.sha256}${o.version ? `@${o.version}` : ""}`);
      props.onUploaded(o);
    } catch (err) {
      setError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="upload card" onSubmit={submit} aria-labelledby="upload-title" noValidate>
      <h2 id="upload-title">Upload an operator</h2>
      <p>A WebAssembly component of the world <code>sluice:operator/operator-world</code>, built with a guest SDK (<code>sluice build</code>).</p>
      <div class="field">
        <label for="op-file">Component (.wasm)</label>
        <input id="op-file" ref={file} type="file" accept=".wasm,application/wasm" aria-describedby={error ? "upload-error" : undefined} aria-invalid={error ? "true" : undefined} />
      </div>
      <div class="row">
        <div class="field">
          <label for="op-name">Name</label>
          <input id="op-name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="flights" />
        </div>
        <div class="field">
          <label for="op-version">Version</label>
          <input id="op-version" value={version} onInput={(e) => setVersion(e.currentTarget.value)} placeholder="1.0" />
        </div>
      </div>
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Uploading…" : "Upload"}
      </button>
      <ErrorBox error={error} id="upload-error" />
      {done && (
        <p class="ok" role="status">
          Stored as <code>{done.sha256.slice(0, 12)}…</code>
          {done.name ? (
            <>
              {" "}
              — name it in a spec as <code>{done.name}@{done.version ?? ""}</code>.
            </>
          ) : null}{" "}
          <a href={href.submit()}>Submit a job</a>
        </p>
      )}
    </form>
  );
}

export function OperatorsPage() {
  const { data: ops, error, reload } = usePoll(api.operators, 5000);
  const [delError, setDelError] = useState<ApiError | null>(null);
  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Operators</h1>
      <UploadForm onUploaded={reload} />
      <h2>Stored operators</h2>
      <ErrorBox error={error ?? delError} />
      {!ops && !error && <Loading what="operators" />}
      {ops && ops.length === 0 && <p>None yet.</p>}
      {ops && ops.length > 0 && (
        <div class="table-wrap">
          <table class="operators">
            <caption class="sr-only">Stored operators</caption>
            <thead>
              <tr>
                <th scope="col">Name@version</th>
                <th scope="col">SHA-256</th>
                <th scope="col" class="num">Size</th>
                <th scope="col">Uploaded (UTC)</th>
                <th scope="col">Used by</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {ops.map((o) => (
                <tr key={o.sha256} data-operator={o.name ?? o.sha256}>
                  <th scope="row">{o.name ? `${o.name}@${o.version ?? ""}` : <em>unnamed</em>}</th>
                  <td>
                    <code title={o.sha256}>{o.sha256.slice(0, 16)}…</code>
                  </td>
                  <td class="num">{bytes(o.size_bytes)}</td>
                  <td>{time(o.uploaded_at)}</td>
                  <td>
                    {o.jobs.length
                      ? o.jobs.map((j, i) => (
                          <>
                            {i > 0 && ", "}
                            <a href={href.job(j)}>{j}</a>
                          </>
                        ))
                      : "—"}
                  </td>
                  <td>
                    <button
                      type="button"
                      class="small danger"
                      disabled={o.jobs.length > 0}
                      title={o.jobs.length ? "Used by a job: delete the job first" : undefined}
                      aria-label={`Delete ${o.name ?? o.sha256}`}
                      onClick={async () => {
                        setDelError(null);
                        try {
                          await api.deleteOperator(o.sha256);
                          announce(`Deleted ${o.name ?? o.sha256}`);
                        } catch (e) {
                          setDelError(e as ApiError);
                        }
                        reload();
                      }}
                    >
                      Delete
                    </button>
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
