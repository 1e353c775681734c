// Browser test of the dashboard, in Debian's headless Chromium driven by playwright-core
// (no browser download). Run by `cargo test -p sluice-cli --test dashboard`, which starts
// `sluice serve` with a token and hands over, in the environment:
//
//   SLUICE_URL        the server, http://127.0.0.1:<port>
//   SLUICE_TOKEN      its bearer token
//   SLUICE_WASM       the flights operator component, to upload through the page
//   SLUICE_SPEC       a file with the flights job spec (JSON) naming `flights@1.0`
//   SLUICE_FAILED_JOB the id of a job that failed on a poison record (for its exceptions)
//   SLUICE_SWAP_JOB   the id of a running job whose operator `versioned` runs `swap@a`
//   SLUICE_ARTIFACTS  where the screenshots go
//   CHROMIUM          the browser (default /usr/bin/chromium)
//
// It uploads the operator through the page, checks the submit form's inline validation,
// submits the flights job, sees its graph with 3+ vertices and rates that move, opens a
// vertex's detail, stops the job with a savepoint, reads a failed job's exceptions, swaps
// an operator's code from its page, and checks the narrow layout and keyboard basics.
// Prints `dashboard: ok` and exits 0, or prints what failed and exits 1.

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const url = env("SLUICE_URL");
const token = env("SLUICE_TOKEN");
const wasm = env("SLUICE_WASM");
const spec = readFileSync(env("SLUICE_SPEC"), "utf8");
const failedJob = env("SLUICE_FAILED_JOB");
const swapJob = env("SLUICE_SWAP_JOB");
const artifacts = env("SLUICE_ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`  ok: ${what}`);
}

async function shot(page, name) {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`  screenshot: ${path}`);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let page;
const consoleErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on("pageerror", (e) => consoleErrors.push(String(e.stack ?? e)));
  page.setDefaultTimeout(30_000);

  // The server wants a token: the page asks for it.
  await page.goto(url);
  await page.getByLabel("Token", { exact: true }).fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByRole("heading", { name: "Jobs" }).waitFor();
  check(true, "the token prompt lets the user in");

  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press("Tab");
  check(
    (await page.evaluate(() => document.activeElement?.textContent)) === "Skip to content",
    "the first Tab focuses 'Skip to content'",
  );

  // Upload the operator through the page.
  await page.getByRole("link", { name: "Operators" }).click();
  await page.getByLabel("Component (.wasm)").setInputFiles(wasm);
  await page.getByLabel("Name", { exact: true }).fill("flights");
  await page.getByLabel("Version", { exact: true }).fill("1.0");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByText("Stored as").waitFor();
  await page.locator('tr[data-operator="flights"]').waitFor();
  check(true, "the flights operator uploads and is listed");
  // A file that is not a component is refused, with the server's message inline.
  await page.getByLabel("Component (.wasm)").setInputFiles({
    name: "broken.wasm",
    mimeType: "application/wasm",
    buffer: Buffer.from("not wasm at all"),
  });
  await page.getByLabel("Name", { exact: true }).fill("broken");
  await page.getByRole("button", { name: "Upload" }).click();
  const uploadError = await page.locator("#upload-error").textContent();
  check(/not_wasm|not a WebAssembly/i.test(uploadError ?? ""), `a broken upload is refused inline: ${uploadError}`);
  await shot(page, "operators");

  // The submit form checks as the user types.
  await page.getByRole("link", { name: "Submit job" }).click();
  const textarea = page.getByLabel("Job spec (YAML or JSON)");
  await textarea.fill("sources: [\n");
  await textarea.blur();
  const syntax = await page.locator("#spec-problems").textContent();
  check(/line \d+/.test(syntax ?? ""), `a syntax error is shown inline with its line: ${syntax}`);
  check((await textarea.getAttribute("aria-invalid")) === "true", "the field is marked invalid");
  await textarea.fill(spec.replace('"flights@1.0"', '"flights@9.9"'));
  const missing = await page.locator("#spec-problems").textContent();
  check(
    (missing ?? "").includes("operators[0].operator: no operator 'flights@9.9' is stored"),
    `a missing operator is named inline: ${missing}`,
  );
  await shot(page, "submit-validation");
  await textarea.fill(spec);
  check((await page.locator("#spec-problems").count()) === 0, "a good spec shows no problems");
  await page.getByRole("button", { name: "Submit", exact: true }).click();
  await page.waitForURL(/#\/jobs\/[0-9a-f]+$/);
  const jobId = page.url().split("/").pop();
  check(true, `the job is submitted (${jobId})`);

  // The graph: 3+ vertices, laid out, with rates that move.
  const vertices = page.locator("svg.job-graph a.vertex");
  await vertices.first().waitFor();
  const n = await vertices.count();
  check(n >= 3, `the graph has ${n} vertices`);
  const positions = await vertices.evaluateAll((els) =>
    els.map((e) => e.parentElement.getAttribute("transform")),
  );
  check(new Set(positions).size === n, "every vertex has its own place");
  const source = page.locator('a.vertex[data-vertex="flights"]');
  const figures = async () => ({
    records: Number(await page.locator('a.vertex[data-vertex="flight-delays"]').getAttribute("data-records-in")),
  });
  await page.waitForFunction(
    () => Number(document.querySelector('a.vertex[data-vertex="flights"]')?.getAttribute("data-rate-out")) > 0,
  );
  const first = await figures();
  await page.waitForTimeout(2500);
  const second = await figures();
  check(second.records > first.records, `records move: ${first.records} then ${second.records}`);
  const rateOut = Number(await source.getAttribute("data-rate-out"));
  check(rateOut > 0, `the source's rate shows (${rateOut}/s)`);
  const label = await page.locator('a.vertex[data-vertex="hourly-delays"]').getAttribute("aria-label");
  check(/parallelism 2/.test(label) && /backpressure/.test(label) && /watermark lag/.test(label), `a vertex describes itself: ${label}`);
  await shot(page, "job-graph");

  // A vertex's detail, reached with the keyboard: per-subtask figures and a rate chart.
  await page.locator('a.vertex[data-vertex="hourly-delays"]').focus();
  await page.keyboard.press("Enter");
  await page.waitForURL(/vertices\/hourly-delays$/);
  await page.locator("table.subtasks tbody tr").nth(1).waitFor();
  check((await page.locator("table.subtasks tbody tr").count()) === 2, "two subtasks are listed");
  await page.locator(".rate-chart path.series.in").waitFor();
  await shot(page, "vertex-detail");

  // Stop with a savepoint.
  await page.goto(`${url}/#/jobs/${jobId}`);
  await page.getByRole("button", { name: "Stop with savepoint" }).click();
  await page.locator(".badge.status-stopped").waitFor();
  check(true, "the job stops with a savepoint");
  await page.getByRole("link", { name: /Checkpoints/ }).click();
  await page.locator("ul.savepoints li").first().waitFor();
  const savepoints = await page.locator("ul.savepoints li").allTextContents();
  check(
    savepoints.length === 1 && savepoints[0].includes("savepoints/flights-") && savepoints[0].includes("stopped with it"),
    `the savepoint is listed: ${savepoints}`,
  );
  const checkpointRows = await page.locator("table.checkpoints tbody tr").count();
  check(checkpointRows >= 1, `${checkpointRows} checkpoints and savepoints are listed`);
  await shot(page, "checkpoints");

  // A failed job's exceptions name the operator, subtask and key groups.
  await page.goto(`${url}/#/jobs/${failedJob}/exceptions`);
  const exc = page.locator("li.exception").first();
  await exc.waitFor();
  const head = await exc.locator(".exc-head").textContent();
  check(/operator faulty/.test(head) && /subtask \d/.test(head) && /key groups \d+–\d+/.test(head), `the exception says where: ${head}`);
  check(/poison record/.test(await exc.locator(".exc-message").textContent()), "the exception has the guest's message");
  await page.getByRole("link", { name: "Log" }).click();
  await page.locator("pre.guest-log").waitFor();
  const guestLog = await page.locator("pre.guest-log").textContent();
  check(/operator 'faulty' \(subtask \d\/2\) stdout: test-faults: init done/.test(guestLog), "the job's log shows what its operator printed");
  await shot(page, "exceptions");

  // Hot-swap from an operator's page: the new version runs without a restart.
  await page.goto(`${url}/#/jobs/${swapJob}/vertices/versioned`);
  await page.getByLabel("New version").selectOption({ label: "swap@b" });
  await page.getByRole("button", { name: "Replace code" }).click();
  const swapped = page.locator("form.swap p.ok");
  await swapped.waitFor({ timeout: 60_000 });
  const swapText = await swapped.textContent();
  check(/Swapped at checkpoint \d+; the stream paused [\d.]+ ms/.test(swapText), `the swap is reported: ${swapText}`);
  await shot(page, "hot-swap");

  // A narrow window: the graph stacks vertically and nothing overflows the page.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}/#/jobs/${jobId}`);
  await page.locator("svg.job-graph").waitFor();
  const box = await page.locator("svg.job-graph").boundingBox();
  check(box.height > box.width, `the graph is vertical when narrow (${Math.round(box.width)}×${Math.round(box.height)})`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal overflow at 390 px (${overflow})`);
  await shot(page, "narrow");

  // Every form control has a label.
  for (const path of ["#/operators", "#/submit"]) {
    await page.goto(`${url}/${path}`);
    await page.locator("form").first().waitFor();
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, textarea, select")]
        .filter((el) => !(el.labels?.length || el.getAttribute("aria-label")))
        .map((el) => el.id || el.outerHTML),
    );
    check(unlabelled.length === 0, `every control of ${path} has a label ${unlabelled}`);
  }
  check(consoleErrors.length === 0, `no script errors ${consoleErrors}`);
  console.log(`dashboard: ok (job ${jobId})`);
} catch (e) {
  console.error(`dashboard: FAILED: ${e.stack ?? e}`);
  if (consoleErrors.length) console.error(`script errors in the page:\n${consoleErrors.join("\n")}`);
  if (page) await shot(page, "failure").catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
