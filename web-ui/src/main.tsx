// Sluice's dashboard: the shell (navigation, token prompt, status line) and the router.

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { onUnauthorized, setToken, token } from "./api";
import { JobPage } from "./pages/JobPage";
import { JobsPage } from "./pages/JobsPage";
import { OperatorsPage } from "./pages/OperatorsPage";
import { SubmitPage } from "./pages/SubmitPage";
import { VertexPage } from "./pages/VertexPage";
import { href, Route, useRoute } from "./router";
import "./styles.css";

function title(r: Route): string {
  switch (r.page) {
    case "jobs":
      return "Jobs";
    case "job":
      return `Job ${r.id}`;
    case "vertex":
      return `${r.vertex} — job ${r.id}`;
    case "operators":
      return "Operators";
    case "submit":
      return "Submit a job";
    case "missing":
      return "Not found";
  }
}

function TokenPrompt(props: { onDone: () => void }) {
  const [value, setValue] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <form
      class="token-prompt"
      aria-labelledby="token-title"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim() || null);
        props.onDone();
      }}
    >
      <h2 id="token-title">This server needs a token</h2>
      <p>Give the bearer token it was started with (<code>sluice serve --token</code>). It is kept for this tab only.</p>
      <label for="token">Token</label>
      <input id="token" ref={input} type="password" autoComplete="off" value={value} onInput={(e) => setValue(e.currentTarget.value)} />
      <button type="submit">Use token</button>
    </form>
  );
}

function Page(props: { route: Route }) {
  const r = props.route;
  switch (r.page) {
    case "jobs":
      return <JobsPage />;
    case "job":
      return <JobPage id={r.id} tab={r.tab} />;
    case "vertex":
      return <VertexPage id={r.id} vertex={r.vertex} />;
    case "operators":
      return <OperatorsPage />;
    case "submit":
      return <SubmitPage />;
    case "missing":
      return (
        <section>
          <h1>Not found</h1>
          <p>
            Nothing is at <code>{r.path}</code>. <a href={href.jobs()}>See the jobs.</a>
          </p>
        </section>
      );
  }
}

function App() {
  const route = useRoute();
  const [needToken, setNeedToken] = useState(false);
  const [message, setMessage] = useState("");
  const main = useRef<HTMLElement>(null);
  useEffect(() => onUnauthorized(() => setNeedToken(true)), []);
  useEffect(() => {
    const f = (e: Event) => setMessage((e as CustomEvent<string>).detail);
    window.addEventListener("sluice-announce", f);
    return () => window.removeEventListener("sluice-announce", f);
  }, []);
  useEffect(() => {
    document.title = `${title(route)} · Sluice`;
  }, [route]);
  const section = route.page === "vertex" || route.page === "job" ? "jobs" : route.page;
  const nav = (to: string, name: string, label: string) => (
    <li>
      <a href={to} aria-current={section === name ? "page" : undefined}>
        {label}
      </a>
    </li>
  );
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); main.current?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href.jobs()}>
          Sluice
        </a>
        <nav aria-label="Main">
          <ul>
            {nav(href.jobs(), "jobs", "Jobs")}
            {nav(href.operators(), "operators", "Operators")}
            {nav(href.submit(), "submit", "Submit job")}
          </ul>
        </nav>
        {token() && (
          <button class="link" type="button" onClick={() => { setToken(null); setNeedToken(true); }}>
            Forget token
          </button>
        )}
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {needToken ? (
          <TokenPrompt onDone={() => { setNeedToken(false); location.reload(); }} />
        ) : (
          <Page route={route} />
        )}
      </main>
      <div class="status-line" role="status" aria-live="polite">
        {message}
      </div>
    </>
  );
}

render(<App />, document.getElementById("app")!);
