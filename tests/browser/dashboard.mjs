// End-to-end test of the dashboard in Debian's headless Chromium, driven by playwright-core.
//
//   node tests/browser/dashboard.mjs <base-url> <screenshot-dir> [known-user-id]
//
// Started by tests/dashboard.rs against a server it runs on port 0. The oracle is the API itself:
// the script asks the JSON API the same questions the page asks and checks that the page shows
// those answers (and, for bad input, the API's own error message). Screenshots of every panel go
// to <screenshot-dir>; on a failure, one of the page as it was. Exit code 0 only if every check passed.
//
// Environment: CHROMIUM (default /usr/bin/chromium); FORBIDDEN_TOKEN, a secret (the admin token)
// that no request, response or page may contain.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, outDir, knownUser = "1"] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node dashboard.mjs <base-url> <screenshot-dir> [known-user-id]");
  process.exit(64);
}
const root = base.endsWith("/") ? base : `${base}/`;
const origin = new URL(root).origin;
const forbidden = process.env.FORBIDDEN_TOKEN ?? "";
mkdirSync(outDir, { recursive: true });

const deadline = setTimeout(() => {
  console.error("FAIL: the browser test took longer than 150 s");
  process.exit(2);
}, 150_000);

// ---------------------------------------------------------------------------------------------
// Checks and the API oracle

let checks = 0;
function check(condition, what) {
  checks += 1;
  if (!condition) throw new Error(`check failed: ${what}`);
}

function close(a, b, tol, what) {
  check(Number.isFinite(a) && Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

async function oracle(method, path, body) {
  const response = await fetch(new URL(path, root), {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

async function apiError(method, path, body) {
  const { status, json } = await oracle(method, path, body);
  check(status >= 400 && json.error && typeof json.error.message === "string", `${method} ${path} is an API error (got ${status})`);
  return json.error;
}

// ---------------------------------------------------------------------------------------------
// Browser

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // This machine's network is closed: no background connections, no component updates.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(15_000);

const consoleErrors = [];
const pageErrors = [];
const requests = [];
const responseChecks = [];
page.on("console", (msg) => {
  // Chrome logs every 4xx answer to fetch as "Failed to load resource"; the bad-input steps cause
  // those on purpose. Anything else is a failure.
  if (msg.type() === "error" && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text())) {
    consoleErrors.push(msg.text());
  }
});
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("request", (r) => requests.push({ url: r.url(), headers: r.headers() }));
page.on("response", (r) => {
  if (forbidden && r.url().startsWith(origin)) {
    responseChecks.push(
      r.text().then(
        (t) => ({ url: r.url(), leaks: t.includes(forbidden) }),
        () => ({ url: r.url(), leaks: false }),
      ),
    );
  }
});

const timings = [];
const shots = [];
async function step(name, run) {
  const t0 = Date.now();
  try {
    await run();
  } catch (e) {
    const file = join(outDir, `failure-${name}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.error(`FAIL in step "${name}": ${e.message}\n  screenshot of the page: ${file}`);
    throw e;
  }
  timings.push(`${name} ${Date.now() - t0} ms`);
}

async function shot(name) {
  const file = join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

const text = async (selector) => (await page.locator(selector).innerText()).trim();
const errorBox = async (id) => {
  await page.locator(`#${id}`).waitFor({ state: "visible" });
  return text(`#${id}`);
};
async function tab(name) {
  await page.click(`#tab-${name}`);
  await page.locator(`#panel-${name}[data-loaded="true"]`).waitFor();
}

/** The rows of a table body as arrays of cell texts. */
async function rows(selector) {
  return page.locator(`${selector} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.innerText.trim())));
}

/** Waits until the recall table shows an answer newer than `before` (or an error appears). */
async function submitRecall() {
  await page.evaluate(() => {
    document.getElementById("panel-recall").dataset.loaded = "false";
  });
  await page.click("#recall-submit");
  await page.locator('#panel-recall[data-loaded="true"]').waitFor();
}

try {
  // -------------------------------------------------------------------------------------------
  await step("model", async () => {
    const model = (await oracle("GET", "v1/model")).json;
    const history = (await oracle("GET", "v1/model/history")).json;
    await page.goto(root);
    await page.locator('#panel-model[data-loaded="true"]').waitFor();
    check(await page.locator("#model-error").isHidden(), `no error on the model panel: ${await text("#model-error")}`);
    check((await text("#model-version .value")) === model.version, "the panel shows the serving version");
    check((await text("#header-version")) === model.version, "the header shows the serving version");
    check((await text("#readiness")) === "ready", "the header says ready");
    // Training curves: one point per epoch of the stored history.
    const epochs = history.epochs.length;
    check(epochs > 1, "the history has several epochs");
    const lossN = Number(await page.locator('#chart-loss [data-series="loss"]').getAttribute("data-n"));
    check(lossN === epochs, `loss chart has ${epochs} points (got ${lossN})`);
    check((await page.locator("#chart-loss polyline").count()) === 1, "the loss curve is drawn");
    const evaluated = history.epochs.filter((e) => e.precision !== null).length;
    const precN = Number(await page.locator(`#chart-precision [data-series="precision@${history.k}"]`).getAttribute("data-n"));
    check(precN === evaluated && evaluated > 0, `precision chart has ${evaluated} points (got ${precN})`);
    check((await text("#chart-precision-caption")) === `precision@${history.k} per epoch`, "precision chart names k");
    // Early stopping: the validation curve that chose the epoch count, and the chosen epoch marked.
    check(history.early_stopping && history.validation.length > 0, "the model was early-stopped");
    const valN = Number(await page.locator(`#chart-precision [data-series="validation precision@${history.k}"]`).getAttribute("data-n"));
    check(valN === history.validation.length, `validation curve has ${history.validation.length} points (got ${valN})`);
    const mark = page.locator('#chart-precision [data-mark="chosen"]');
    check((await mark.count()) === 1, "the chosen epoch is marked");
    check(Number(await mark.getAttribute("data-x")) === history.epochs_kept, "the mark is at the chosen epoch");
    check((await text('#model-training tr[data-key="fitted on"] td:last-child')) === "all interactions, after evaluation",
      "the panel says what the model was fitted on");
    // Evaluation figures, index and its measured recall.
    const precisionRow = await text(`#model-metrics tr[data-key="precision@${history.k}"] td:last-child`);
    close(Number(precisionRow), model.metrics[`precision@${history.k}`], 1e-3, "precision@k figure");
    check((await text('#model-index tr[data-key="kind"] td:last-child')) === model.index.kind, "index kind");
    const measured = await text('#model-index tr[data-key="measured recall@10"] td:last-child');
    if (model.index_quality) close(Number(measured), model.index_quality.recall_at_10, 1e-3, "measured recall@10");
    else check(measured.startsWith("1 (exact"), "exact search says recall 1");
    // The catalog box lists the items written live, as the API does.
    const live = (await oracle("GET", "v1/items?live=true&limit=20")).json;
    check(live.items.length > 0, "the server has an item written live");
    await page.waitForSelector("#live-items tbody tr td");
    const firstLive = await text("#live-items tbody tr:first-child td:first-child");
    check(firstLive === live.items[0].item_id, `new items list shows ${live.items[0].item_id} (got ${firstLive})`);
    check((await text("#live-summary")).startsWith(`${model.live_items.added} added`), "new items summary counts");
    await shot("model");
  });

  // -------------------------------------------------------------------------------------------
  let recalled = [];
  await step("recall", async () => {
    await tab("recall");
    const user = (await oracle("GET", `v1/users/${encodeURIComponent(knownUser)}?limit=200`)).json;
    check(user.known_items_total > 0, `user ${knownUser} has known items`);
    const known = new Set(user.known_items.map((i) => i.item_id));
    await page.fill("#recall-user", knownUser);
    await page.fill("#recall-k", "8");
    await submitRecall();
    const api = (await oracle("POST", "v1/recall", { user_id: knownUser, k: 8, exclude_seen: true })).json;
    let shown = await rows("#recall-results");
    check(shown.length === 8, `8 recalled rows (got ${shown.length})`);
    shown.forEach((r, i) => {
      check(r[1] === api.items[i].item_id, `row ${i + 1} is item ${api.items[i].item_id} (got ${r[1]})`);
      check(r[2] === (api.items[i].title ?? "") && r[2] !== "", `row ${i + 1} has the item's title`);
      close(Number(r[3]), api.items[i].score, 1e-3, `row ${i + 1} score`);
      check(!known.has(r[1]), "exclude-seen leaves known items out");
    });
    recalled = api.items.map((i) => i.item_id);
    const knownRows = await rows("#recall-known");
    check(knownRows.length === user.known_items.length, `known items listed (${knownRows.length})`);
    check(knownRows.every((r) => known.has(r[0])), "the known items are the user's");
    check((await text("#recall-latency")).match(/^\d+\.\d ms$/) !== null, "latency shown");
    check((await text("#recall-status")).includes(api.model_version), "the answering model is named");

    // Exclude-seen off: the page re-asks, and marks the known items the model ranks high.
    await page.evaluate(() => {
      document.getElementById("panel-recall").dataset.loaded = "false";
    });
    await page.uncheck("#recall-exclude-seen");
    await page.locator('#panel-recall[data-loaded="true"]').waitFor();
    const all = (await oracle("POST", "v1/recall", { user_id: knownUser, k: 8, exclude_seen: false })).json;
    shown = await rows("#recall-results");
    check(shown.map((r) => r[1]).join() === all.items.map((i) => i.item_id).join(), "exclude-seen off shows the API's answer");
    const marked = await page.locator("#recall-results tbody tr.seen").count();
    const expected = all.items.filter((i) => known.has(i.item_id)).length;
    check(marked === expected, `${expected} known items marked (got ${marked})`);
    await shot("recall");
    await page.check("#recall-exclude-seen");
    await page.locator('#panel-recall[data-loaded="true"]').waitFor();

    // A filter on item features: only items with the first listed feature, as the API answers.
    const mustFeature = await page.locator("#recall-filter-must option").nth(1).getAttribute("value");
    check(mustFeature !== null && mustFeature.includes(":"), "item features are offered for the filter");
    await page.selectOption("#recall-filter-must", mustFeature);
    await submitRecall();
    const [key, value] = [mustFeature.slice(0, mustFeature.indexOf(":")), mustFeature.slice(mustFeature.indexOf(":") + 1)];
    const filtered = (await oracle("POST", "v1/recall", { user_id: knownUser, k: 8, exclude_seen: true, filter: { must: [{ key, match: { value } }] } })).json;
    shown = await rows("#recall-results");
    check(shown.length > 0 && shown.map((r) => r[1]).join() === filtered.items.map((i) => i.item_id).join(), "filtered answer shown");
    check((await text("#recall-status")).includes("filter"), "the filter is said");
    await shot("recall-filtered");
    await page.selectOption("#recall-filter-must", "");

    // A new user from features.
    await page.check("#recall-by-features");
    const selects = page.locator("#recall-feature-selects select");
    const n = await selects.count();
    check(n > 0, "feature pickers are offered");
    const chosen = [];
    for (let i = 0; i < n; i += 1) {
      const value = await selects.nth(i).locator("option").nth(1).getAttribute("value");
      await selects.nth(i).selectOption(value);
      chosen.push(value);
    }
    await page.fill("#recall-k", "5");
    await submitRecall();
    const cold = (await oracle("POST", "v1/recall", { features: chosen, k: 5, exclude_seen: true })).json;
    shown = await rows("#recall-results");
    check(shown.map((r) => r[1]).join() === cold.items.map((i) => i.item_id).join(), "cold-start answer shown");
    check((await text("#recall-status")).includes("cold start"), "cold start is said");
    await shot("recall-new-user");
  });

  await step("recall-errors", async () => {
    await page.check("#recall-by-id");
    await page.fill("#recall-user", "no-such-user");
    await page.fill("#recall-k", "5");
    await submitRecall();
    let expected = await apiError("POST", "v1/recall", { user_id: "no-such-user", k: 5, exclude_seen: true });
    let shown = await errorBox("recall-error");
    check(shown.includes(expected.message) && shown.includes(expected.code), `unknown user: "${shown}" shows "${expected.message}"`);
    check((await page.locator("#recall-results tbody tr").count()) === 0, "no stale results beside an error");

    await page.fill("#recall-user", knownUser);
    await page.fill("#recall-k", "0");
    await submitRecall();
    expected = await apiError("POST", "v1/recall", { user_id: knownUser, k: 0, exclude_seen: true });
    shown = await errorBox("recall-error");
    check(shown.includes(expected.message) && shown.includes("field k"), `k = 0: "${shown}" shows "${expected.message}"`);
    await shot("recall-error");
  });

  // -------------------------------------------------------------------------------------------
  await step("similar", async () => {
    await tab("similar");
    check((await page.locator("#similar-matches button").count()) > 0, "items are offered to pick from");
    check((await page.locator("#similar-results tbody tr").count()) > 0, "the first item's neighbours are shown");
    const item = recalled[0];
    const api = (await oracle("GET", `v1/items/${item}/similar?k=6`)).json;
    const about = (await oracle("GET", `v1/items?q=${item}&limit=1`)).json.items[0];
    await page.fill("#similar-k", "6");
    await page.fill("#similar-query", item);
    await page.click("#similar-submit");
    await page.locator(`#similar-results[data-item="${item}"]`).waitFor();
    await page.waitForFunction(() => document.querySelectorAll("#similar-results tbody tr").length === 6);
    const shown = await rows("#similar-results");
    shown.forEach((r, i) => {
      check(r[1] === api.items[i].item_id, `neighbour ${i + 1} is ${api.items[i].item_id} (got ${r[1]})`);
      close(Number(r[3]), api.items[i].score, 1e-3, `neighbour ${i + 1} cosine`);
    });
    check(!shown.some((r) => r[1] === item), "an item is not its own neighbour");
    check((await text("#similar-title")).includes(about.title), "the item's title is shown");
    // Picking a match by title.
    await page.fill("#similar-query", "topic 2");
    await page.waitForFunction(() => [...document.querySelectorAll("#similar-matches button")].every((b) => b.textContent.includes("topic 2")));
    await shot("similar");
  });

  await step("similar-errors", async () => {
    await page.fill("#similar-query", "no-such-item");
    await page.click("#similar-submit");
    const expected = await apiError("GET", "v1/items/no-such-item/similar?k=6");
    const shown = await errorBox("similar-error");
    check(shown.includes(expected.message) && shown.includes(expected.code), `unknown item: "${shown}" shows "${expected.message}"`);
  });

  // -------------------------------------------------------------------------------------------
  await step("layers", async () => {
    await tab("layers");
    await page.locator("#rnn-summary[data-asymptotic]").waitFor();
    await page.locator("#bn-eval-out tr").first().waitFor();
    const matrix = async () =>
      page.locator("#rnn-matrix input").evaluateAll((inputs) => {
        const n = Math.sqrt(inputs.length);
        const w = Array.from({ length: n }, () => []);
        for (const i of inputs) w[Number(i.dataset.i)][Number(i.dataset.j)] = Number(i.value);
        return w;
      });
    const w = await matrix();
    // Scale across 1 and see the verdict flip, as the API computes it for the same matrix.
    for (const [s, verdict] of [
      [1.25, "exploding"],
      [0.75, "vanishing"],
    ]) {
      await page.fill("#rnn-scale-value", String(s));
      await page.locator(`#rnn-summary[data-asymptotic="${verdict}"]`).waitFor();
      const api = (await oracle("POST", "v1/layers/rnn/stability", { w: w.map((r) => r.map((v) => v * s)), steps: 60 })).json;
      check(api.asymptotic_verdict === verdict, `the API says ${verdict} at s = ${s}`);
      const rho = await text('#rnn-summary tr[data-key="spectral radius ρ(sW)"] td:last-child');
      close(Number(rho), api.spectral_radius, 1e-5, `ρ at s = ${s}`);
      const n = Number(await page.locator("#chart-rnn [data-series]").getAttribute("data-n"));
      check(n === 60, `60 norms drawn (got ${n})`);
      // Log-scale curve: going up on screen (smaller y) when exploding, down when vanishing.
      const ys = await page
        .locator("#chart-rnn [data-series] polyline")
        .evaluate((p) => p.getAttribute("points").split(" ").map((xy) => Number(xy.split(",")[1])));
      check(verdict === "exploding" ? ys.at(-1) < ys[0] : ys.at(-1) > ys[0], `the curve ${verdict === "exploding" ? "rises" : "falls"}`);
    }
    await page.click("#rnn-sweep");
    await page.locator('#rnn-summary[data-verdict="sweep"]').waitFor();
    check((await page.locator("#chart-rnn [data-series]").count()) === 5, "five curves in the sweep");
    const verdicts = await page.locator("#rnn-summary td:last-child").allInnerTexts();
    check(verdicts.join() === "vanishing,vanishing,stable,exploding,exploding", `sweep verdicts: ${verdicts.join()}`);

    // BatchNorm: train mode normalises each column with the batch's statistics.
    const x = (await page.inputValue("#bn-x")).trim().split("\n").map((l) => l.split(",").map(Number));
    const train = await rows("#bn-train-out");
    const y = train.slice(0, x.length).map((r) => r.map(Number));
    for (let c = 0; c < x[0].length; c += 1) {
      const mean = y.reduce((a, r) => a + r[c], 0) / y.length;
      const variance = y.reduce((a, r) => a + (r[c] - mean) ** 2, 0) / y.length;
      close(mean, 0, 1e-3, `train output column ${c} has mean 0`);
      close(variance, 1, 1e-2, `train output column ${c} has variance 1`);
    }
    // Eval uses the running statistics the train step left (shown in the inputs).
    const mean = (await page.inputValue("#bn-mean")).split(",").map(Number);
    const variance = (await page.inputValue("#bn-var")).split(",").map(Number);
    const api = (await oracle("POST", "v1/layers/batchnorm", { x, mode: "eval", running_mean: mean, running_var: variance })).json;
    const evalRows = (await rows("#bn-eval-out")).slice(0, x.length);
    evalRows.forEach((r, i) => r.forEach((v, c) => close(Number(v), api.y[i][c], 1e-3, `eval y[${i}][${c}]`)));
    await shot("layers");
  });

  await step("layers-errors", async () => {
    await page.fill("#bn-x", "1, 2, 3\n4, 5");
    await page.click("#bn-train");
    const mean = (await page.inputValue("#bn-mean")).split(",").map(Number);
    const variance = (await page.inputValue("#bn-var")).split(",").map(Number);
    const expected = await apiError("POST", "v1/layers/batchnorm", {
      x: [[1, 2, 3], [4, 5]],
      mode: "train",
      running_mean: mean,
      running_var: variance,
      momentum: 0.1,
      eps: 0.00001,
    });
    const shown = await errorBox("bn-error");
    check(shown.includes(expected.message), `ragged batch: "${shown}" shows "${expected.message}"`);
    await page.fill("#rnn-matrix input >> nth=1", "");
    const w = await page.locator("#rnn-matrix input").evaluateAll((inputs) => {
      const n = Math.sqrt(inputs.length);
      const m = Array.from({ length: n }, () => []);
      for (const i of inputs) m[Number(i.dataset.i)][Number(i.dataset.j)] = i.value === "" ? null : Number(i.value) * 0.75;
      return m;
    });
    const rnnExpected = await apiError("POST", "v1/layers/rnn/stability", { w, steps: 60 });
    await page.waitForFunction(
      (message) => document.getElementById("rnn-error").innerText.includes(message),
      rnnExpected.message,
    );
    check((await page.locator("#chart-rnn [data-series]").count()) === 0, "no stale curve beside the error");
    check((await page.locator("#bn-train-out tr").count()) === 0, "no stale train output beside the error");
    await shot("layers-error");
  });

  // -------------------------------------------------------------------------------------------
  await step("hygiene", async () => {
    const foreign = requests.filter((r) => !r.url.startsWith(origin) && !r.url.startsWith("data:"));
    check(foreign.length === 0, `only this origin is contacted: ${foreign.map((r) => r.url).join(", ")}`);
    const authorized = requests.filter((r) => "authorization" in r.headers);
    check(authorized.length === 0, `no request carries a token: ${authorized.map((r) => r.url).join(", ")}`);
    check(requests.length > 20, `the page made its requests (${requests.length})`);
    const leaks = (await Promise.all(responseChecks)).filter((r) => r.leaks);
    check(leaks.length === 0, `no answer contains the admin token: ${leaks.map((r) => r.url).join(", ")}`);
    if (forbidden) check(!(await page.content()).includes(forbidden), "the page does not contain the admin token");
    check(pageErrors.length === 0, `no uncaught errors in the page: ${pageErrors.join(" | ")}`);
    check(consoleErrors.length === 0, `no console errors: ${consoleErrors.join(" | ")}`);
  });
} catch {
  await browser.close().catch(() => {});
  clearTimeout(deadline);
  process.exit(1);
}

await browser.close();
clearTimeout(deadline);
console.log(`ok: ${checks} checks; ${timings.join(", ")}`);
console.log(`screenshots: ${shots.join(" ")}`);
