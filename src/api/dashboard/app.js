// The dashboard's four panels. Everything shown comes from the public JSON API (see api.js); every
// error the API answers is shown where the request was made.

import { api, clearError, showError } from "./api.js";
import { lineChart } from "./charts.js";

// What a model's parameters were fitted on (GET /v1/model → training.fit).
const FIT_NAMES = {
  train_split: "the train split",
  all_after_evaluation: "all interactions, after evaluation",
  all_unevaluated: "all interactions, not evaluated",
};

const $ = (id) => document.getElementById(id);
const COLORS = ["#2456a6", "#c0392b", "#1e7a3c", "#8e44ad", "#d35400", "#16a085"];

/** A number for display: fixed digits for moderate values, exponent otherwise; API strings as is. */
function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(digits - 1);
  return v.toFixed(digits);
}

/** A JSON number, or one of the API's strings for non-finite values, as a JS number. */
function num(v) {
  if (typeof v === "number") return v;
  if (v === "inf") return Infinity;
  if (v === "-inf") return -Infinity;
  return NaN;
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  if (className) td.className = className;
  row.append(td);
  return td;
}

/** A table row of plain-text cells. */
function row(values) {
  const tr = document.createElement("tr");
  for (const v of values) cell(tr, v);
  return tr;
}

/** Fills a two-column key/value table. */
function kvTable(table, pairs) {
  table.replaceChildren();
  for (const [k, v] of pairs) {
    const tr = document.createElement("tr");
    cell(tr, k);
    cell(tr, v instanceof Node ? v : fmt(v));
    tr.dataset.key = k;
    table.append(tr);
  }
}

function card(label, value, id) {
  const div = document.createElement("div");
  div.className = "card";
  if (id) div.id = id;
  const l = document.createElement("div");
  l.className = "label";
  l.textContent = label;
  const v = document.createElement("div");
  v.className = "value";
  v.textContent = value;
  div.append(l, v);
  return div;
}

/** A number with at most `digits` significant digits, for values read back into inputs. */
function short(v, digits = 8) {
  return typeof v === "number" ? String(+v.toPrecision(digits)) : String(v);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Marks a panel as having finished a round of requests (tests and people can tell it settled). */
function settled(panel) {
  $(`panel-${panel}`).dataset.loaded = "true";
}

// ---------------------------------------------------------------------------------------------
// Header and tabs

async function readiness() {
  const badge = $("readiness");
  try {
    const response = await fetch("readyz", { headers: { Accept: "application/json" } });
    const body = await response.json();
    badge.dataset.state = body.status;
    badge.textContent = body.status === "ready" ? "ready" : "not ready";
  } catch (e) {
    badge.dataset.state = "down";
    badge.textContent = `unreachable: ${e.message}`;
  }
}

const started = {};
const panels = {
  model: initModel,
  recall: initRecall,
  similar: initSimilar,
  layers: initLayers,
};

function selectTab(name) {
  if (!(name in panels)) name = "model";
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== name;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (!started[name]) {
    started[name] = true;
    panels[name]();
  }
}

// ---------------------------------------------------------------------------------------------
// Model

async function initModel() {
  const error = $("model-error");
  clearError(error);
  try {
    const { data: m } = await api("GET", "v1/model");
    $("header-version").textContent = m.version;
    $("model-cards").replaceChildren(
      card("version", m.version, "model-version"),
      card("trained", m.created_at),
      card("serving since", m.serving_since),
      card("ready in", `${fmt(m.load_seconds, 3)} s`),
      card("users · items · features", `${m.counts.users} · ${m.counts.items} · ${m.counts.features}`),
    );
    const metrics = m.metrics ?? {};
    kvTable(
      $("model-metrics"),
      Object.keys(metrics).length ? Object.entries(metrics) : [["figures", "none: the model was trained without a test split"]],
    );
    const index = m.index ?? {};
    const quality = m.index_quality;
    kvTable($("model-index"), [
      ["kind", index.kind],
      ["items × dim", `${index.items} × ${index.dim}`],
      ...Object.entries(index.params ?? {}).map(([k, v]) => [`param ${k}`, typeof v === "object" ? JSON.stringify(v) : v]),
      ["memory", `${fmt((index.memory_bytes ?? 0) / 1048576, 2)} MiB`],
      ["build", `${fmt(index.build_seconds, 3)} s`],
      ...(quality
        ? [
            ["measured recall@10", quality.recall_at_10],
            ["measured recall@100", quality.recall_at_100],
            ...(quality.norm_scan
              ? [["norm walk (exact share k=10 / k=100)", `${quality.norm_scan.enabled ? "on" : "off"}: ${fmt(quality.norm_scan.exact_share_at_10, 3)} / ${quality.norm_scan.exact_share_at_100 == null ? "-" : fmt(quality.norm_scan.exact_share_at_100, 3)}`]]
              : []),
            ["self-recall", quality.self_recall],
            ["check queries", quality.queries],
          ]
        : [["measured recall@10", "1 (exact search, no approximation)"]]),
    ]);
    const live = m.live_items ?? {};
    const now = m.index_quality_now;
    $("live-summary").textContent =
      `${live.added ?? 0} added · ${live.updated ?? 0} changed · ${live.deleted ?? 0} deleted · ${live.not_recallable ?? 0} without a known feature` +
      (now ? ` · index recall@10 now ${fmt(now.recall_at_10, 3)} (@100 ${fmt(now.recall_at_100, 3)})` : "");
    const { data: page } = await api("GET", "v1/items?live=true&limit=20");
    $("live-items").tBodies[0].replaceChildren(
      ...(page.items.length
        ? page.items.map((i) => row([i.item_id, i.title ?? "", i.features.join(", "), i.active ? "yes" : "no"]))
        : [row(["none yet", "", "", ""])]),
    );
    const p = m.params ?? {};
    const t = m.training ?? {};
    kvTable($("model-training"), [
      ["data", t.data],
      ["split", t.split],
      ["features", t.features],
      ["positives", `rating ≥ ${t.min_rating}`],
      ["epochs", `${t.epochs}${t.early_stopping ? " (early stopping)" : ""}`],
      ["fitted on", FIT_NAMES[t.fit] ?? t.fit],
      ["figures from", t.figures_from],
      ["train time", `${fmt(t.train_seconds, 2)} s`],
      ["loss · dim", `${p.loss} · ${p.dim}`],
      ["learning rate · l2", `${short(p.learning_rate, 6)} · ${short(p.l2, 6)}`],
      ["threads · seed", `${p.threads} · ${p.seed}`],
    ]);
  } catch (e) {
    showError(error, e);
  }
  try {
    const { data: h } = await api("GET", "v1/model/history");
    const k = h.k;
    lineChart($("chart-loss"), {
      title: "training loss per epoch",
      series: [{ name: "loss", color: COLORS[1], points: h.epochs.map((e) => [e.epoch, e.loss]) }],
      xLabel: "epoch",
      yLabel: "mean loss per positive",
      integerX: true,
    });
    $("chart-precision-caption").textContent = k ? `precision@${k} per epoch` : "precision@k per epoch";
    const series = [{ name: `precision@${k}`, color: COLORS[0], points: h.epochs.map((e) => [e.epoch, e.precision ?? NaN]) }];
    if (h.validation.length > 0) {
      series.push({ name: `validation precision@${k}`, color: COLORS[2], points: h.validation.map((e) => [e.epoch, e.precision ?? NaN]) });
    }
    lineChart($("chart-precision"), {
      title: k ? `precision@${k} per epoch` : "precision@k per epoch",
      series,
      marks: h.early_stopping ? [{ x: h.epochs_kept, name: "chosen", label: `chosen: ${h.epochs_kept}` }] : [],
      xLabel: "epoch",
      yLabel: k ? `precision@${k}` : "precision",
      integerX: true,
      empty: "no epoch was evaluated (the model was trained without a held-out split)",
    });
    $("history-note").textContent =
      `${h.epochs.length} epochs in the evaluated run; figures per epoch on the held-out part of split ${h.split}` +
      `${h.validation.length > 0 ? ", and on validation data carved from its train part (the run that chose the epoch count)" : ""}; ` +
      `the model holds epoch ${h.epochs_kept}${h.early_stopping ? " (chosen by early stopping on validation data)" : ""}. ` +
      `Figures from ${h.figures_from}.`;
  } catch (e) {
    showError(error, e);
  }
  settled("model");
}

// ---------------------------------------------------------------------------------------------
// Recall playground

async function initRecall() {
  const error = $("recall-error");
  const byId = $("recall-by-id");
  const byFeatures = $("recall-by-features");
  const sync = () => {
    $("recall-features").disabled = !byFeatures.checked;
    $("recall-user").disabled = !byId.checked;
  };
  byId.addEventListener("change", sync);
  byFeatures.addEventListener("change", sync);
  $("recall-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    runRecall();
  });
  $("recall-exclude-seen").addEventListener("change", () => {
    if ($("recall-results").dataset.ran) runRecall();
  });
  sync();
  try {
    const { data } = await api("GET", "v1/model/features");
    const holder = $("recall-feature-selects");
    holder.replaceChildren();
    for (const group of data.user_features) {
      const label = document.createElement("label");
      label.textContent = `${group.name} `;
      const select = document.createElement("select");
      select.dataset.group = group.name;
      select.append(new Option("–", ""));
      for (const v of group.values) {
        select.append(new Option(`${v.feature.slice(group.name.length + 1)} (${v.count} users)`, v.feature));
      }
      label.append(select);
      holder.append(label);
    }
    // Item features for the filter: one option group per feature name.
    for (const id of ["recall-filter-must", "recall-filter-not"]) {
      const select = $(id);
      for (const group of data.item_features) {
        const optgroup = document.createElement("optgroup");
        optgroup.label = group.name;
        for (const v of group.values) {
          optgroup.append(new Option(`${v.feature} (${v.count} items)`, v.feature));
        }
        select.append(optgroup);
      }
    }
    $("recall-filter").disabled = data.item_features.length === 0;
    if (data.user_features.length === 0) {
      holder.textContent = "this model was trained on ids only: it knows no side features to describe a new user with";
      byFeatures.disabled = true;
    }
  } catch (e) {
    showError(error, e);
  }
  settled("recall");
}

function itemCell(item) {
  const a = document.createElement("a");
  a.href = "#similar";
  a.textContent = item.item_id;
  a.title = "show its similar items";
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    showSimilar(item.item_id);
  });
  return a;
}

let recallSeq = 0;

async function runRecall() {
  const seq = ++recallSeq;
  const error = $("recall-error");
  const kValue = $("recall-k").value.trim();
  const body = {
    // An empty or non-numeric k goes to the API as null, which says what is wrong with it.
    k: kValue === "" ? null : Number(kValue),
    exclude_seen: $("recall-exclude-seen").checked,
  };
  // The filter in the API's shape: {"must": [{"key": "genre", "match": {"value": "g1"}}], ...}.
  const condition = (feature) => {
    const at = feature.indexOf(":");
    return { key: feature.slice(0, at), match: { value: feature.slice(at + 1) } };
  };
  const must = $("recall-filter-must").value;
  const not = $("recall-filter-not").value;
  if (must !== "" || not !== "") {
    body.filter = {};
    if (must !== "") body.filter.must = [condition(must)];
    if (not !== "") body.filter.must_not = [condition(not)];
  }
  const byId = $("recall-by-id").checked;
  const userId = $("recall-user").value.trim();
  if (byId) {
    if (userId !== "") body.user_id = userId;
  } else {
    body.features = [...document.querySelectorAll("#recall-feature-selects select")]
      .map((s) => s.value)
      .filter((v) => v !== "");
  }
  $("recall-submit").disabled = true;
  const known = byId && userId !== "" ? api("GET", `v1/users/${encodeURIComponent(userId)}?limit=200`) : null;
  const [recalled, user] = await Promise.allSettled([api("POST", "v1/recall", body), known ?? Promise.resolve(null)]);
  $("recall-submit").disabled = false;
  if (seq !== recallSeq) return;

  const results = $("recall-results");
  const tbody = results.querySelector("tbody");
  const knownBody = $("recall-known").querySelector("tbody");
  const seen = new Set();
  knownBody.replaceChildren();
  $("recall-known-count").textContent = "";
  $("recall-user-features").textContent = "";
  if (user.status === "fulfilled" && user.value) {
    const u = user.value.data;
    for (const item of u.known_items) {
      seen.add(item.item_id);
      const tr = document.createElement("tr");
      cell(tr, itemCell(item));
      cell(tr, item.title ?? "");
      knownBody.append(tr);
    }
    $("recall-known-count").textContent =
      u.known_items.length < u.known_items_total ? `(${u.known_items.length} of ${u.known_items_total})` : `(${u.known_items_total})`;
    $("recall-user-features").textContent = `features: ${u.features.join(", ")}`;
  } else if (!byId) {
    $("recall-user-features").textContent = `a new user described by: ${body.features.join(", ") || "no features"}`;
  }

  tbody.replaceChildren();
  results.dataset.ran = "true";
  if (recalled.status === "rejected") {
    showError(error, recalled.reason);
    $("recall-status").textContent = "";
    settled("recall");
    return;
  }
  if (user.status === "rejected") showError(error, user.reason);
  else clearError(error);
  const { data, ms } = recalled.value;
  data.items.forEach((item, i) => {
    const tr = document.createElement("tr");
    cell(tr, String(i + 1));
    cell(tr, itemCell(item));
    cell(tr, item.title ?? "");
    cell(tr, fmt(item.score), "num");
    const tag = document.createElement("span");
    if (seen.has(item.item_id)) {
      tr.className = "seen";
      tag.className = "tag";
      tag.textContent = "known";
    }
    cell(tr, tag);
    tbody.append(tr);
  });
  const unknown = data.unknown_features.length ? ` · ignored unknown features: ${data.unknown_features.join(", ")}` : "";
  const filtered = body.filter ? ` · filter ${JSON.stringify(body.filter)}` : "";
  $("recall-status").replaceChildren(
    `${data.items.length} items from model ${data.model_version} · ${data.cold_start ? "cold start (features only)" : "known user"}` +
      `${unknown}${filtered} · round trip `,
    Object.assign(document.createElement("strong"), { id: "recall-latency", textContent: `${ms.toFixed(1)} ms` }),
  );
  settled("recall");
}

// ---------------------------------------------------------------------------------------------
// Similar items

async function initSimilar() {
  const query = $("similar-query");
  const refreshMatches = debounce(() => loadMatches(query.value), 200);
  query.addEventListener("input", refreshMatches);
  $("similar-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    pickAndShow(query.value.trim());
  });
  $("similar-k").addEventListener("change", () => {
    if ($("similar-results").dataset.item) neighbours($("similar-results").dataset.item);
  });
  const first = await loadMatches(query.value);
  if (!$("similar-results").dataset.item && first) await neighbours(first.item_id);
  settled("similar");
}

async function loadMatches(q) {
  const holder = $("similar-matches");
  try {
    const { data } = await api("GET", `v1/items?limit=12&q=${encodeURIComponent(q.trim())}`);
    holder.replaceChildren();
    for (const item of data.items) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = item.title ? `${item.item_id} · ${item.title}` : item.item_id;
      b.dataset.item = item.item_id;
      b.addEventListener("click", () => neighbours(item.item_id));
      holder.append(b);
    }
    if (data.total > data.items.length) holder.append(` … ${data.total - data.items.length} more`);
    if (data.total === 0) holder.append("none");
    return data.items[0] ?? null;
  } catch (e) {
    showError($("similar-error"), e);
    return null;
  }
}

/**
 * The neighbours of the best match for `text` (the API lists an exact id first); with no match the
 * text goes to the API as an item id, and its error is shown.
 */
async function pickAndShow(text) {
  let id = text;
  try {
    const { data } = await api("GET", `v1/items?limit=1&q=${encodeURIComponent(text)}`);
    if (data.items.length) id = data.items[0].item_id;
  } catch (e) {
    showError($("similar-error"), e);
    return;
  }
  await neighbours(id);
}

/** Switches to the similar-items panel and shows the neighbours of `id`. */
function showSimilar(id) {
  $("similar-query").value = id;
  $("similar-results").dataset.item = id;
  selectTab("similar");
  neighbours(id);
}

let similarSeq = 0;

async function neighbours(id) {
  const seq = ++similarSeq;
  const error = $("similar-error");
  const results = $("similar-results");
  const kValue = $("similar-k").value.trim();
  const path = `v1/items/${encodeURIComponent(id)}/similar?k=${encodeURIComponent(kValue)}`;
  const [similar, about] = await Promise.allSettled([
    api("GET", path),
    api("GET", `v1/items?limit=1&q=${encodeURIComponent(id)}`),
  ]);
  if (seq !== similarSeq) return;
  for (const b of document.querySelectorAll("#similar-matches button")) {
    b.setAttribute("aria-pressed", String(b.dataset.item === id));
  }
  const tbody = results.querySelector("tbody");
  tbody.replaceChildren();
  if (similar.status === "rejected") {
    showError(error, similar.reason);
    $("similar-title").textContent = "Neighbours";
    $("similar-features").textContent = "";
    delete results.dataset.item;
    settled("similar");
    return;
  }
  clearError(error);
  const { data, ms } = similar.value;
  results.dataset.item = data.item_id;
  const self = about.status === "fulfilled" ? about.value.data.items.find((i) => i.item_id === data.item_id) : null;
  $("similar-title").textContent = `Neighbours of ${data.item_id}${self?.title ? ` · ${self.title}` : ""}`;
  $("similar-features").textContent =
    `${self ? `features: ${self.features.join(", ")} · ` : ""}cosine of factor vectors · model ${data.model_version} · round trip ${ms.toFixed(1)} ms`;
  data.items.forEach((item, i) => {
    const tr = document.createElement("tr");
    cell(tr, String(i + 1));
    const a = document.createElement("a");
    a.href = "#similar";
    a.textContent = item.item_id;
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      $("similar-query").value = item.item_id;
      neighbours(item.item_id);
    });
    cell(tr, a);
    cell(tr, item.title ?? "");
    cell(tr, fmt(item.score), "num");
    tbody.append(tr);
  });
  settled("similar");
}

// ---------------------------------------------------------------------------------------------
// Layer lab: RNN stability

/**
 * Block-diagonal rotations whose cosine and sine are exact decimals (Pythagorean triples), so
 * ρ(W) = 1 to rounding and ρ(sW) = s; an odd size ends with 0.8 on the diagonal.
 */
function rotationPreset(n) {
  const pairs = [
    [0.6, 0.8],
    [0.28, 0.96],
    [0.936, 0.352],
  ];
  const w = Array.from({ length: n }, () => new Array(n).fill(0));
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const [c, s] = pairs[(i / 2) % pairs.length];
    w[i][i] = c;
    w[i][i + 1] = -s;
    w[i + 1][i] = s;
    w[i + 1][i + 1] = c;
  }
  if (i < n) w[i][i] = 0.8;
  return w;
}

function randomPreset(n) {
  return Array.from({ length: n }, () => Array.from({ length: n }, () => +(Math.random() * 2 - 1).toFixed(2)));
}

function drawMatrix(w) {
  const holder = $("rnn-matrix");
  holder.replaceChildren();
  holder.style.gridTemplateColumns = `repeat(${w.length}, auto)`;
  w.forEach((row, i) =>
    row.forEach((v, j) => {
      const input = document.createElement("input");
      input.type = "number";
      input.step = "0.01";
      input.value = String(v);
      input.dataset.i = i;
      input.dataset.j = j;
      input.setAttribute("aria-label", `W[${i}][${j}]`);
      input.addEventListener("input", scheduleStability);
      holder.append(input);
    }),
  );
}

/** The matrix as typed: a blank or malformed cell goes to the API as null, which rejects it by name. */
function readMatrix() {
  const n = Number($("rnn-size").value);
  const w = Array.from({ length: n }, () => new Array(n).fill(null));
  for (const input of $("rnn-matrix").querySelectorAll("input")) {
    const v = input.value.trim();
    w[Number(input.dataset.i)][Number(input.dataset.j)] = v === "" ? null : Number(v);
  }
  return w;
}

const scaled = (w, s) => w.map((row) => row.map((v) => (v === null ? null : v * s)));

function steps() {
  const v = $("rnn-steps").value.trim();
  return v === "" ? null : Number(v);
}

const THRESHOLDS = [
  { y: 6, label: "1e6: exploded" },
  { y: 0, label: "‖x‖ = 1" },
  { y: -6, label: "1e-6: vanished" },
];

function curve(name, color, response) {
  return { name, color, points: response.log10_norms.map((v, i) => [i + 1, num(v)]) };
}

function verdict(v) {
  const span = document.createElement("span");
  span.className = `verdict-${v}`;
  span.textContent = v;
  return span;
}

let stabilitySeq = 0;

async function runStability() {
  const seq = ++stabilitySeq;
  const error = $("rnn-error");
  const s = Number($("rnn-scale-value").value);
  try {
    const { data } = await api("POST", "v1/layers/rnn/stability", { w: scaled(readMatrix(), s), steps: steps() });
    if (seq !== stabilitySeq) return;
    clearError(error);
    lineChart($("chart-rnn"), {
      title: "‖(sW)ⁿx‖ against n, log scale",
      series: [curve(`s = ${fmt(s, 2)}, ρ = ${fmt(num(data.spectral_radius), 3)}`, COLORS[0], data)],
      xLabel: "n",
      yLabel: "‖(sW)ⁿx‖ (log scale)",
      log: true,
      integerX: true,
      refs: THRESHOLDS,
    });
    kvTable($("rnn-summary"), [
      ["spectral radius ρ(sW)", fmt(num(data.spectral_radius), 6)],
      ["computed by", data.spectral_method],
      ["growth rate (‖(sW)ᴺx‖/‖x‖)^(1/N)", fmt(num(data.growth_rate), 6)],
      [`within N = ${data.norms.length} steps`, verdict(data.verdict)],
      ["left [1e-6, 1e6] at n", data.step ?? "never"],
      ["as n → ∞ (from ρ)", verdict(data.asymptotic_verdict)],
    ]);
    $("rnn-summary").dataset.verdict = data.verdict;
    $("rnn-summary").dataset.asymptotic = data.asymptotic_verdict;
  } catch (e) {
    if (seq === stabilitySeq) clearStability(error, e);
  }
  settled("layers");
}

const scheduleStability = debounce(runStability, 150);

/** After an error no curve or verdict is left on screen that belongs to an earlier input. */
function clearStability(error, e) {
  showError(error, e);
  lineChart($("chart-rnn"), { series: [], empty: "no result for this input: see the error above" });
  $("rnn-summary").replaceChildren();
  delete $("rnn-summary").dataset.verdict;
  delete $("rnn-summary").dataset.asymptotic;
}

/** Five curves: W scaled so that ρ = 0.8, 0.9, 1.0, 1.1, 1.2, one request each. */
async function runSweep() {
  const seq = ++stabilitySeq;
  const error = $("rnn-error");
  const w = readMatrix();
  try {
    const base = (await api("POST", "v1/layers/rnn/stability", { w, steps: 1 })).data;
    const rho = num(base.spectral_radius);
    if (!(rho > 0)) {
      throw Object.assign(new Error(`ρ(W) = ${fmt(rho)}: a nilpotent matrix cannot be scaled to a spectral radius`), { code: "sweep" });
    }
    const targets = [0.8, 0.9, 1.0, 1.1, 1.2];
    const answers = await Promise.all(
      targets.map((t) => api("POST", "v1/layers/rnn/stability", { w: scaled(w, t / rho), steps: steps() })),
    );
    if (seq !== stabilitySeq) return;
    clearError(error);
    lineChart($("chart-rnn"), {
      title: "‖(sW)ⁿx‖ for ρ(sW) from 0.8 to 1.2",
      series: answers.map(({ data }, i) => curve(`ρ = ${fmt(num(data.spectral_radius), 3)}`, COLORS[i], data)),
      xLabel: "n",
      yLabel: "‖(sW)ⁿx‖ (log scale)",
      log: true,
      integerX: true,
      refs: THRESHOLDS,
    });
    kvTable(
      $("rnn-summary"),
      answers.map(({ data }, i) => [`s = ${fmt(targets[i] / rho, 4)}: ρ = ${fmt(num(data.spectral_radius), 4)}`, verdict(data.asymptotic_verdict)]),
    );
    $("rnn-summary").dataset.verdict = "sweep";
  } catch (e) {
    if (seq === stabilitySeq) clearStability(error, e);
  }
  settled("layers");
}

// ---------------------------------------------------------------------------------------------
// Layer lab: BatchNorm

/** "1, 2\n3, 4" → [[1, 2], [3, 4]]; a cell that is not a number goes to the API as null. */
function parseRows(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map(parseRow);
}

function parseRow(text) {
  return text
    .split(/[,\s]+/)
    .filter((c) => c !== "")
    .map((c) => (Number.isFinite(Number(c)) ? Number(c) : null));
}

function matrixTable(table, rows, footer) {
  table.replaceChildren();
  const tbody = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const v of row) cell(tr, fmt(v), "num");
    tbody.append(tr);
  }
  for (const [label, values] of footer) {
    const tr = document.createElement("tr");
    tr.className = "muted";
    for (const v of values) cell(tr, fmt(v), "num");
    cell(tr, label);
    tbody.append(tr);
  }
  table.append(tbody);
}

let trainSteps = 0;

async function batchnorm(mode) {
  const error = $("bn-error");
  const body = {
    x: parseRows($("bn-x").value),
    mode,
    running_mean: parseRow($("bn-mean").value),
    running_var: parseRow($("bn-var").value),
    momentum: Number($("bn-momentum").value),
    eps: Number($("bn-eps").value),
  };
  try {
    const { data } = await api("POST", "v1/layers/batchnorm", body);
    clearError(error);
    if (mode === "train") {
      trainSteps += 1;
      matrixTable($("bn-train-out"), data.y, [
        ["batch mean", data.mean],
        ["batch var", data.var],
      ]);
      $("bn-train-note").textContent = `with the batch's statistics (step ${trainSteps})`;
      $("bn-mean").value = data.running_mean.map((v) => short(v)).join(", ");
      $("bn-var").value = data.running_var.map((v) => short(v)).join(", ");
    } else {
      matrixTable($("bn-eval-out"), data.y, [
        ["running mean", data.mean],
        ["running var", data.var],
      ]);
      $("bn-eval-note").textContent = `with the running statistics after ${trainSteps} train step${trainSteps === 1 ? "" : "s"}`;
    }
  } catch (e) {
    showError(error, e);
    $(`bn-${mode}-out`).replaceChildren();
    $(`bn-${mode}-note`).textContent = "no result for this input";
  }
  settled("layers");
}

async function initLayers() {
  const size = $("rnn-size");
  const scale = $("rnn-scale");
  const scaleValue = $("rnn-scale-value");
  drawMatrix(rotationPreset(Number(size.value)));
  size.addEventListener("change", () => {
    drawMatrix(rotationPreset(Number(size.value)));
    runStability();
  });
  $("rnn-preset-rotation").addEventListener("click", () => {
    drawMatrix(rotationPreset(Number(size.value)));
    runStability();
  });
  $("rnn-preset-random").addEventListener("click", () => {
    drawMatrix(randomPreset(Number(size.value)));
    runStability();
  });
  scale.addEventListener("input", () => {
    scaleValue.value = scale.value;
    scheduleStability();
  });
  scaleValue.addEventListener("input", () => {
    scale.value = scaleValue.value;
    scheduleStability();
  });
  $("rnn-steps").addEventListener("input", scheduleStability);
  $("rnn-sweep").addEventListener("click", runSweep);
  $("bn-train").addEventListener("click", () => batchnorm("train"));
  $("bn-eval").addEventListener("click", () => batchnorm("eval"));
  await runStability();
  await batchnorm("train");
  await batchnorm("eval");
}

// ---------------------------------------------------------------------------------------------

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.tab));
}
window.addEventListener("hashchange", () => selectTab(location.hash.slice(1)));
readiness();
// The header shows the serving version whatever panel opens first.
api("GET", "v1/model")
  .then(({ data }) => {
    $("header-version").textContent = data.version;
  })
  .catch((e) => {
    // Shown in full by the model panel; the header says that it failed, and why on hover.
    $("header-version").textContent = `unavailable (${e.code})`;
    $("header-version").title = e.message;
  });
selectTab(location.hash.slice(1));
