// The dashboard's page: draws a study snapshot (embedded, or polled from /api/study)
// as SVG. Study text only ever reaches the page through textContent.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
const COLORS = ["#2e6fdb", "#d92d20", "#12b76a", "#f79009", "#7a5af8", "#0ba5ec"];
let study = null;
let selected = null;
// The profile whose front the selection came from, if any.
let selectedNet = null;
let lastText = "";
const detailCache = new Map();

function el(tag, attrs, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

const pct = (a) => (a == null ? "–" : (100 * a).toFixed(2) + "%");
const ms = (s) => (s == null ? "–" : (1e3 * s).toFixed(2) + " ms");
const mb = (b) => (b / 1e6).toFixed(3) + " MB";
const secs = (s) => (s == null ? "–" : s < 60 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min");
const trial = (n) => study.trials.find((t) => t.number === n);

// Scales: linear, or logarithmic where the data spans more than a factor of 8.
function scale(lo, hi, a, b, log) {
  if (!(hi > lo)) { hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1); }
  if (log && lo > 0) {
    const l0 = Math.log(lo), l1 = Math.log(hi);
    const f = (v) => a + ((Math.log(v) - l0) / (l1 - l0)) * (b - a);
    f.ticks = () => logTicks(lo, hi);
    return f;
  }
  const f = (v) => a + ((v - lo) / (hi - lo)) * (b - a);
  f.ticks = () => linTicks(lo, hi);
  return f;
}
function linTicks(lo, hi) {
  const step0 = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(12));
  return out;
}
function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of [1, 2, 5]) { const v = m * Math.pow(10, e); if (v >= lo && v <= hi) out.push(v); }
  return out.length >= 2 ? out : linTicks(lo, hi);
}
const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : +v.toPrecision(3)).toString();

// A frame with axes; returns the svg and the two scales.
function chart(W, H, xr, yr, xlabel, ylabel, xlog) {
  const m = { l: 52, r: 12, t: 10, b: 36 };
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}` });
  const x = scale(xr[0], xr[1], m.l, W - m.r, xlog);
  const y = scale(yr[0], yr[1], H - m.b, m.t, false);
  const axis = el("svg:g", { class: "axis" });
  for (const v of x.ticks()) {
    axis.append(el("svg:line", { class: "gridline", x1: x(v), x2: x(v), y1: m.t, y2: H - m.b }));
    axis.append(el("svg:text", { x: x(v), y: H - m.b + 14, "text-anchor": "middle", text: fmt(v) }));
  }
  for (const v of y.ticks()) {
    axis.append(el("svg:line", { class: "gridline", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    axis.append(el("svg:text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", text: fmt(v) }));
  }
  axis.append(el("svg:line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  axis.append(el("svg:line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
  axis.append(el("svg:text", { x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle", text: xlabel }));
  axis.append(el("svg:text", { x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})`, text: ylabel }));
  svg.append(axis);
  return { svg, x, y, m, W, H };
}

function tip(evt, lines) {
  const t = document.getElementById("tip");
  t.replaceChildren(...lines.map((l, i) => el("div", {}, i === 0 ? el("b", { text: l }) : l)));
  t.hidden = false;
  t.style.left = Math.min(evt.clientX + 14, window.innerWidth - 370) + "px";
  t.style.top = evt.clientY + 14 + "px";
}
const untip = () => { document.getElementById("tip").hidden = true; };

function tipLines(t, p) {
  const net = study.networks[p];
  return [
    t.config,
    `validation ${pct(t.val_accuracy)} · test ${pct(t.test_accuracy)}`,
    `predicted ${ms(t.seconds[p])} on ${net}`,
    `online ${mb(t.online_bytes)} · ${t.rounds} rounds (bound ${t.depth_bound}) · offline ${mb(t.offline_bytes)}`,
    `trial ${t.number} · ${t.epochs} epochs · ${t.worker}`,
  ];
}

function drawFronts() {
  const box = document.getElementById("fronts");
  box.replaceChildren();
  const finals = study.trials.filter((t) => t.finalist && t.val_accuracy != null);
  study.networks.forEach((net, p) => {
    const card = el("div", { class: "card" }, el("h3", { text: `${net}${p === study.select ? " (the strategy's profile)" : ""}: ${study.fronts[p].length} on the front of ${finals.length}` }));
    const xs = finals.map((t) => 1e3 * t.seconds[p]);
    const ys = finals.map((t) => 100 * t.val_accuracy);
    const budget = study.constraints.latency_s[p], floor = study.constraints.min_accuracy;
    if (budget != null) xs.push(1e3 * budget);
    if (floor != null) ys.push(100 * floor);
    if (!xs.length) { card.append(el("p", { class: "hint", text: "No trained configuration yet." })); box.append(card); return; }
    const xlo = Math.min(...xs), xhi = Math.max(...xs), ylo = Math.min(...ys), yhi = Math.max(...ys);
    const pad = (hi, lo) => Math.max((hi - lo) * 0.06, 1e-3);
    const log = xlo > 0 && xhi / xlo > 8;
    const xr = log ? [xlo / 1.15, xhi * 1.15] : [xlo - pad(xhi, xlo), xhi + pad(xhi, xlo)];
    const c = chart(560, 340, xr, [ylo - pad(yhi, ylo), Math.min(100, yhi + pad(yhi, ylo))],
      "predicted online latency (ms" + (log ? ", log scale" : "") + ")", "validation accuracy (%)", log);
    c.svg.setAttribute("id", "front-" + p);
    const plotTop = c.m.t, plotBottom = c.H - c.m.b, plotLeft = c.m.l, plotRight = c.W - c.m.r;
    if (budget != null && c.x(1e3 * budget) < plotRight) {
      const x0 = Math.max(plotLeft, c.x(1e3 * budget));
      c.svg.append(el("svg:rect", { class: "shade", x: x0, y: plotTop, width: plotRight - x0, height: plotBottom - plotTop }, el("svg:title", { text: `over the ${net} latency budget (${ms(budget)})` })));
    }
    if (floor != null && c.y(100 * floor) > plotTop) {
      const y0 = Math.min(plotBottom, c.y(100 * floor));
      c.svg.append(el("svg:rect", { class: "shade", x: plotLeft, y: y0, width: plotRight - plotLeft, height: plotBottom - y0 }, el("svg:title", { text: `below the accuracy floor (${pct(floor)})` })));
    }
    const members = study.fronts[p].map(trial).filter(Boolean);
    if (members.length > 1) {
      let d = "";
      members.forEach((t, i) => {
        const X = c.x(1e3 * t.seconds[p]), Y = c.y(100 * t.val_accuracy);
        d += i === 0 ? `M${X},${Y}` : `H${X}V${Y}`;
      });
      c.svg.append(el("svg:path", { class: "stair", d }));
    }
    const onFront = new Set(study.fronts[p]);
    for (const t of finals.filter((t) => !onFront.has(t.number)).concat(members)) {
      const member = onFront.has(t.number);
      c.svg.append(el("svg:circle", {
        class: (member ? "member" : "other") + (t.number === selected ? " selected" : ""),
        cx: c.x(1e3 * t.seconds[p]), cy: c.y(100 * t.val_accuracy), r: member ? 6 : 3.5,
        "data-trial": t.number, "data-acc": t.val_accuracy, "data-seconds": t.seconds[p],
        on: { mousemove: (e) => tip(e, tipLines(t, p)), mouseleave: untip, click: () => select(t.number, p) },
      }));
    }
    card.append(c.svg);
    box.append(card);
  });
}

function select(n, p) {
  selected = n;
  selectedNet = p == null ? null : p;
  history.replaceState(null, "", "#trial=" + n);
  drawFronts();
  drawTrials();
  drawDetail();
  document.getElementById("detail-section").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function serveCommand(t, net) {
  const dir = study.dir.replace(/\/$/, "");
  const ckpt = `${dir}/adapters/${t.config}.safetensors`;
  return `cryptpeft serve --checkpoint ${ckpt} --listen 0.0.0.0:7001 --dealer DEALER:7000 --tls keys --network ${net}`;
}

// A trial's price breakdown and training curve: embedded in a static copy (front
// members), fetched once per trial from the server.
async function detailsOf(n) {
  if (study.details && study.details[n]) return study.details[n];
  if (EMBEDDED) return null;
  if (!detailCache.has(n)) {
    const r = await fetch("/api/trial/" + n, { cache: "no-store" });
    if (!r.ok) return null;
    const d = await r.json();
    if (d.curve == null && (trial(n) || {}).state !== "complete") return d; // not final yet
    detailCache.set(n, d);
  }
  return detailCache.get(n);
}

function curveChart(curve) {
  const accs = curve.flatMap((e) => [100 * e.val_accuracy, 100 * e.train_accuracy]);
  const c = chart(420, 200, [1, Math.max(2, curve.length)], [Math.min(...accs), Math.max(...accs)], "epoch", "accuracy (%)", false);
  const line = (f, color, name, k) => {
    c.svg.append(el("svg:path", { d: curve.map((e, i) => `${i ? "L" : "M"}${c.x(e.epoch)},${c.y(f(e))}`).join(""), fill: "none", stroke: color, "stroke-width": 2 }));
    c.svg.append(el("svg:text", { x: c.W - 16, y: c.H - c.m.b - 8 - 14 * k, "text-anchor": "end", fill: color, text: name }));
  };
  line((e) => 100 * e.train_accuracy, COLORS[2], "training", 1);
  line((e) => 100 * e.val_accuracy, COLORS[0], "validation", 0);
  const last = curve[curve.length - 1];
  return el("div", { class: "curve" }, c.svg, el("p", { class: "hint", text: `loss ${curve[0].loss.toFixed(3)} after epoch 1, ${last.loss.toFixed(3)} after epoch ${last.epoch}` }));
}

async function drawDetail() {
  const box = document.getElementById("detail");
  const t = selected == null ? null : trial(selected);
  if (!t) { box.replaceChildren(el("p", { class: "hint", text: "Click a point of a front (or a row of the trials table)." })); return; }
  const kv = el("dl", { class: "kv" });
  const add = (k, v) => kv.append(el("dt", { text: k }), el("dd", { text: v }));
  add("trial", `${t.number} (${t.state}, ${t.epochs} epochs)`);
  study.genes.forEach((g, i) => add(g.name, t.genes[i]));
  add("validation accuracy", pct(t.val_accuracy));
  add("test accuracy", t.test_accuracy == null ? "not measured (front members get it from report)" : pct(t.test_accuracy));
  study.networks.forEach((net, p) => add("predicted on " + net, ms(t.seconds[p])));
  add("online", `${mb(t.online_bytes)}, ${t.rounds} rounds (dependency-depth bound ${t.depth_bound})`);
  add("offline (dealer)", mb(t.offline_bytes));
  add("worker", t.worker);
  add("training", secs(t.train_s));
  if (t.message) add("message", t.message);
  const fronts = study.networks.filter((_, p) => study.fronts[p].includes(t.number));
  const right = el("div");
  right.append(el("h3", { text: "Checkpoint" }));
  right.append(el("p", { text: t.checkpoint ? `${study.dir.replace(/\/$/, "")}/${t.checkpoint}` :
    fronts.length ? "not exported yet: `cryptpeft-search report DIR` exports every front member to adapters/" :
      "not exported: only front members are (their checkpoints stay in the study)" }));
  const strategyNet = study.networks[study.select];
  const net = selectedNet != null ? study.networks[selectedNet] : fronts.includes(strategyNet) || !fronts.length ? strategyNet : fronts[0];
  right.append(el("h3", { text: `Deploy (${fronts.length ? "on the front of " + fronts.join(", ") : "not on a front"})` }));
  right.append(el("pre", { class: "serve", text: serveCommand(t, net) }));
  const costBox = el("div", {}, el("p", { class: "hint", text: "pricing…" }));
  right.append(el("h3", { text: "Where the time goes (the cost model's breakdown)" }), costBox);
  const curveBox = el("div", { id: "curve" });
  box.replaceChildren(el("div", { class: "detail-grid" }, el("div", {}, el("h3", { text: t.config }), kv, el("h3", { text: "Training curve" }), curveBox), right));
  const d = await detailsOf(t.number);
  if (selected !== t.number) return;
  if (!d) {
    const why = "not included in this static copy (front members only)";
    costBox.replaceChildren(el("p", { class: "hint", text: "breakdown " + why }));
    curveBox.replaceChildren(el("p", { class: "hint", text: "curve " + why }));
    return;
  }
  curveBox.replaceChildren(d.curve && d.curve.length ? curveChart(d.curve) :
    el("p", { class: "hint", text: t.state === "complete" ? "not recorded (trained by a release that kept no curves)" : "none yet: the trial is " + t.state }));
  const costs = d.costs;
  // The deployed profile's breakdown open, the others folded.
  costBox.replaceChildren(...costs.map((c) => c.network === net ? costTable(c) :
    el("details", {}, el("summary", { text: `on ${c.network}: ${ms(c.predicted_s)}, ${c.rounds} rounds` }), costTable(c))));
}

function costTable(c) {
  const wrap = el("div");
  wrap.append(el("p", { text: `${c.network}: predicted ${ms(c.predicted_s)} = compute ${ms(c.compute_s)} + transfer ${ms(c.transfer_s)} + latency ${ms(c.latency_s)} (additive view); ${c.rounds} rounds, ${mb(c.online_bytes)} online` }));
  const top = Math.max(...c.steps.map((s) => s.seconds), 1e-12);
  const tb = el("table", {}, el("tr", {}, ...["step", "shape", "bytes", "rounds", "ms", ""].map((h, i) => el("th", { class: i >= 2 && i <= 4 ? "num" : "", text: h }))));
  for (const s of c.steps) {
    tb.append(el("tr", {}, el("td", { text: s.name }), el("td", { text: s.shape }), el("td", { class: "num", text: s.bytes.toLocaleString() }),
      el("td", { class: "num", text: s.rounds }), el("td", { class: "num", text: (1e3 * s.seconds).toFixed(2) }),
      el("td", {}, el("span", { class: "bar", style: `width:${Math.round(120 * s.seconds / top)}px` }))));
  }
  wrap.append(tb);
  return wrap;
}

function drawProgress() {
  // Hypervolume per profile.
  const hv = study.hypervolume;
  const n = Math.max(1, ...hv.map((c) => c.length));
  const all = hv.flat();
  const box = document.getElementById("hypervolume");
  if (!all.length) { box.replaceChildren(el("p", { class: "hint", text: "No completed first-rung trial yet." })); }
  else {
    const c = chart(460, 240, [1, Math.max(2, n)], [Math.min(...all), Math.max(...all)], "evaluations", "hypervolume", false);
    hv.forEach((curve, p) => {
      const d = curve.map((v, i) => `${i ? "L" : "M"}${c.x(i + 1)},${c.y(v)}`).join("");
      c.svg.append(el("svg:path", { d, fill: "none", stroke: COLORS[p % COLORS.length], "stroke-width": 2 }));
      c.svg.append(el("svg:text", { x: c.W - 16, y: c.H - c.m.b - 8 - 14 * (hv.length - 1 - p), "text-anchor": "end", fill: COLORS[p % COLORS.length], text: study.networks[p] }));
    });
    box.replaceChildren(c.svg);
  }
  // Trials by state, and who is running what.
  const states = ["complete", "running", "pruned", "failed"];
  const counts = states.map((s) => study.trials.filter((t) => t.state === s).length);
  const chips = el("p", { class: "chips" }, ...states.map((s, i) => el("span", {}, el("span", { class: "state " + s, text: s }), ` ${counts[i]}`)));
  chips.append(el("br"), el("span", { id: "trial-count", text: `${study.trials.length} trials` + (study.budget ? ` of a budget of ${study.budget}` : "") }));
  document.getElementById("states").replaceChildren(chips);
  const running = study.trials.filter((t) => t.state === "running");
  const rt = el("table", {}, el("tr", {}, ...["trial", "adapter", "worker", "heartbeat"].map((h) => el("th", { text: h }))));
  for (const t of running) {
    const stale = t.heartbeat_s > study.stale_after_s;
    rt.append(el("tr", {}, el("td", { text: t.number }), el("td", { text: t.config }), el("td", { text: t.worker }),
      el("td", { class: stale ? "stale" : "", text: `${secs(t.heartbeat_s)} ago${stale ? " (stale: another worker takes it over)" : ""}` })));
  }
  document.getElementById("running").replaceChildren(running.length ? rt : el("p", { class: "hint", text: "No trial running." }));
  // Training seconds per trial.
  const timed = study.trials.filter((t) => t.train_s != null);
  const tbox = document.getElementById("times");
  if (!timed.length) { tbox.replaceChildren(el("p", { class: "hint", text: "No trial trained yet." })); return; }
  const nums = timed.map((t) => t.number), ts = timed.map((t) => t.train_s);
  const c = chart(460, 240, [Math.min(...nums) - 0.5, Math.max(...nums) + 0.5], [0, Math.max(...ts) * 1.05], "trial", "training seconds", false);
  const w = Math.max(1.5, Math.min(14, (c.W - c.m.l - c.m.r) / (nums.length + 1) * 0.8));
  for (const t of timed) {
    c.svg.append(el("svg:rect", { x: c.x(t.number) - w / 2, y: c.y(t.train_s), width: w, height: c.y(0) - c.y(t.train_s), fill: "#98a2b3",
      on: { mousemove: (e) => tip(e, [t.config, `trial ${t.number}: ${secs(t.train_s)} training, ${t.propose_s == null ? "–" : (1e3 * t.propose_s).toFixed(1) + " ms"} proposing`]), mouseleave: untip } }));
  }
  tbox.replaceChildren(c.svg);
}

function stats(vals) {
  if (!vals.length) return null;
  const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
  return { mean, lo: Math.min(...vals), hi: Math.max(...vals), n: vals.length };
}

function drawGenes() {
  const box = document.getElementById("genes");
  box.replaceChildren();
  const p = study.select;
  const done = study.trials.filter((t) => t.finalist && t.val_accuracy != null);
  const priced = study.trials;
  study.genes.forEach((g, i) => {
    if (g.choices.length < 2) return;
    const card = el("div", { class: "card" }, el("h3", { text: g.name }));
    for (const [label, rows, value, unit] of [["validation accuracy (%)", done, (t) => 100 * t.val_accuracy, "%"], [`predicted latency on ${study.networks[p]} (ms)`, priced, (t) => 1e3 * t.seconds[p], " ms"]]) {
      const per = g.choices.map((c) => stats(rows.filter((t) => t.genes[i] === c).map(value)));
      const vals = per.filter(Boolean).flatMap((s) => [s.lo, s.hi]);
      if (!vals.length) continue;
      const H = 44 + 22 * g.choices.length;
      const lo = Math.min(...vals), hi = Math.max(...vals);
      const W = 420, l = 90, r = 14;
      const log = lo > 0 && hi / lo > 8;
      const x = log ? scale(lo / 1.1, hi * 1.1, l, W - r, true) : scale(lo - (hi - lo) * 0.05 - 1e-9, hi + (hi - lo) * 0.05 + 1e-9, l, W - r, false);
      const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}` });
      svg.append(el("svg:text", { x: l, y: 11, text: label + (log ? ", log scale" : "") }));
      const axisY = 26 + 22 * g.choices.length;
      svg.append(el("svg:line", { x1: l, x2: W - r, y1: axisY - 8, y2: axisY - 8, stroke: "#d0d5dd" }));
      for (const v of [lo, hi]) svg.append(el("svg:text", { x: x(v), y: axisY + 4, "text-anchor": "middle", text: v.toFixed(v >= 100 ? 0 : 1) }));
      g.choices.forEach((c, k) => {
        const y = 28 + 22 * k;
        svg.append(el("svg:text", { x: l - 8, y: y + 4, "text-anchor": "end", text: c }));
        const s = per[k];
        if (!s) { svg.append(el("svg:text", { x: l, y: y + 4, text: "no trial" })); return; }
        svg.append(el("svg:line", { x1: x(s.lo), x2: x(s.hi), y1: y, y2: y, stroke: "#98a2b3", "stroke-width": 4, "stroke-linecap": "round" }));
        svg.append(el("svg:circle", { cx: x(s.mean), cy: y, r: 5, fill: COLORS[0],
          on: { mousemove: (e) => tip(e, [`${g.name} = ${c}`, `mean ${s.mean.toFixed(2)}${unit}, range ${s.lo.toFixed(2)} to ${s.hi.toFixed(2)}${unit}`, `${s.n} trials`]), mouseleave: untip } }));
      });
      card.append(svg);
    }
    box.append(card);
  });
}

function drawTrials() {
  const heads = ["trial", "state", "adapter", "epochs", "val acc", ...study.networks.map((n) => n + " ms"), "online MB", "rounds", "worker"];
  const tb = el("table", { id: "trials" }, el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const t of study.trials.slice().reverse()) {
    body.append(el("tr", { "data-trial": t.number, class: t.number === selected ? "selected" : "", on: { click: () => select(t.number) } },
      el("td", { text: t.number }), el("td", {}, el("span", { class: "state " + t.state, text: t.state })), el("td", { text: t.config }),
      el("td", { class: "num", text: t.epochs }), el("td", { class: "num", text: pct(t.val_accuracy) }),
      ...t.seconds.map((s) => el("td", { class: "num", text: (1e3 * s).toFixed(2) })),
      el("td", { class: "num", text: (t.online_bytes / 1e6).toFixed(3) }), el("td", { class: "num", text: t.rounds }), el("td", { text: t.worker })));
  }
  tb.append(body);
  document.getElementById("trials").replaceWith(tb);
}

function drawHeader(live, error) {
  document.getElementById("title").textContent = `Search ${study.name}: ${study.strategy}`;
  document.getElementById("subtitle").textContent =
    `${study.valid} valid configurations · backbone ${study.backbone} · dataset ${study.dataset} · study ${study.location} · cost model ${study.cost_model}, constants of ${study.machine}`;
  const s = document.getElementById("status");
  s.replaceChildren();
  if (EMBEDDED) s.append("static copy written by report --html");
  else if (error) s.append(el("span", { class: "err", text: "not updating: " + error }));
  else s.append(el("span", { class: "live", text: "● live" }), ` · updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`);
}

// A link may name the selected trial: `#trial=N`.
const linked = /trial=(\d+)/.exec(location.hash);
if (linked) selected = Number(linked[1]);

function draw() {
  drawFronts();
  drawProgress();
  drawGenes();
  drawTrials();
  if (selected != null) drawDetail();
}

async function poll() {
  try {
    const r = await fetch("/api/study", { cache: "no-store" });
    const text = await r.text();
    if (!r.ok) throw new Error(JSON.parse(text).error || r.statusText);
    if (text !== lastText) {
      lastText = text;
      study = JSON.parse(text);
      draw();
    }
    drawHeader(true, null);
  } catch (e) {
    if (study) drawHeader(false, String(e.message || e));
    else document.getElementById("status").textContent = "waiting for the study: " + (e.message || e);
  }
}

if (EMBEDDED) {
  study = EMBEDDED;
  drawHeader(false, null);
  draw();
} else {
  poll();
  setInterval(poll, POLL_MS);
}
