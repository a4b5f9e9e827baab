// tracekit's local trace viewer. Plain ES module, no dependencies, no build step.
// Every value that comes from a document is put into the page as text (textContent, createTextNode,
// attribute values set through the DOM); no HTML is ever parsed from data.

const TRACE_ID = /^1-[0-9a-f]{8}-[0-9a-f]{24}$/;
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

// -- DOM helpers -------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function traceLink(id, label) {
  // Only well-formed trace ids become links; anything else (say "javascript:...") stays text.
  return TRACE_ID.test(String(id)) ? el("a", { href: `#/trace/${id}` }, label ?? id) : el("span", {}, label ?? id);
}

const json = (value) => JSON.stringify(value, null, 2);
const ms = (value) => (value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} ms`);
const pct = (value) => `${(100 * value).toFixed(1)}%`;

function clock(seconds) {
  const date = new Date(seconds * 1000);
  return `${date.toLocaleTimeString([], { hour12: false })}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

function statusOf(item) {
  return item.fault ? "fault" : item.error ? "error" : item.throttle ? "throttle" : "ok";
}

async function api(path) {
  const response = await fetch(`/api/${path}`, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function say(text) {
  $("status").textContent = text;
}

// -- routing -------------------------------------------------------------------------------------

let timer = null;
let generation = 0; // a view that finishes loading after the user moved on must not start polling

function route() {
  clearInterval(timer);
  timer = null;
  generation += 1;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const view = parts[0] || "traces";
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  for (const link of document.querySelectorAll("header nav a")) link.removeAttribute("aria-current");
  const nav = $(`nav-${view === "trace" ? "traces" : view}`);
  if (nav) nav.setAttribute("aria-current", "page");
  if (view === "trace") showTrace(decodeURIComponent(parts[1] || ""));
  else if (view === "map") showMap();
  else if (view === "metrics") showMetrics();
  else if (view === "sampling") showSampling();
  else showTraces(params);
}

function every(fn, mine) {
  if (mine !== generation || timer) return;
  timer = setInterval(() => {
    if (mine === generation) fn().catch((err) => say(`update failed: ${err.message}`));
  }, POLL_MS);
}

function onChange(fn) {
  // Redraw only when documents arrived: a service map over 10,000 traces takes about a second.
  let seen;
  return async () => {
    const status = await api("status");
    const last = `${status.last_received} ${status.emf_last}`;
    if (seen !== undefined && last !== seen) await fn();
    seen = last;
  };
}

// -- trace list ----------------------------------------------------------------------------------

const list = { params: new URLSearchParams(), cursors: [], next: null, seen: null };

async function showTraces(params) {
  const mine = generation;
  $("view-traces").hidden = false;
  const form = $("filters");
  for (const name of ["service", "status", "min_ms", "annotation", "q"]) {
    form.elements[name].value = params.get(name) || "";
  }
  list.params = params;
  list.cursors = [];
  await loadServices(params.get("service") || "");
  await loadTraces();
  every(async () => {
    const status = await api("status");
    if (list.cursors.length === 0 && status.last_received !== list.seen) await loadTraces();
  }, mine);
}

async function loadServices(selected) {
  const select = $("f-service");
  const { services } = await api("services");
  select.replaceChildren(el("option", { value: "" }, "any"));
  for (const name of new Set([...services, ...(selected ? [selected] : [])])) {
    select.append(el("option", { value: name }, name));
  }
  select.value = selected;
}

async function loadTraces() {
  const query = new URLSearchParams(list.params);
  const cursor = list.cursors[list.cursors.length - 1];
  if (cursor) query.set("after", cursor);
  const status = await api("status");
  let page;
  try {
    page = await api(`traces?${query}`);
    $("filter-error").textContent = "";
  } catch (err) {
    $("filter-error").textContent = err.message;
    return;
  }
  list.seen = status.last_received;
  list.next = page.next;
  const rows = page.traces.map((t) =>
    el("tr", { class: `st-${statusOf(t)}`, data: { traceId: t.trace_id } },
      el("td", {}, traceLink(t.trace_id, clock(t.start))),
      el("td", {}, t.root),
      el("td", {}, t.request ?? ""),
      el("td", { class: "num" }, t.duration_ms === null ? "in progress" : ms(t.duration_ms)),
      el("td", { class: "status" }, statusText(t)),
      el("td", { class: "num" }, t.spans)));
  $("trace-rows").replaceChildren(...rows);
  $("trace-empty").hidden = rows.length > 0;
  $("page-next").disabled = !page.next;
  $("page-first").disabled = list.cursors.length === 0;
  say(`${status.traces} traces stored`);
}

function statusText(t) {
  const marks = ["error", "fault", "throttle"].filter((flag) => t[flag]);
  const code = t.status ? `${t.status} ` : "";
  return code + (marks.length ? marks.join(", ") : "ok");
}

function applyFilters(event) {
  event.preventDefault();
  const query = new URLSearchParams();
  for (const [key, value] of new FormData($("filters"))) if (String(value).trim()) query.set(key, value);
  location.hash = `#/traces?${query}`;
}

// -- one trace: waterfall and details ------------------------------------------------------------

async function showTrace(id) {
  $("view-trace").hidden = false;
  $("trace-title").textContent = id;
  $("waterfall").replaceChildren();
  $("details").replaceChildren();
  $("trace-emf").replaceChildren();
  $("trace-error").textContent = "";
  $("trace-export").setAttribute("href", TRACE_ID.test(id) ? `/api/traces/${id}/export` : "#/traces");
  $("trace-export").setAttribute("download", `${id}.json`);
  let trace;
  try {
    trace = await api(`traces/${encodeURIComponent(id)}`);
  } catch (err) {
    $("trace-error").textContent = err.message;
    return;
  }
  drawWaterfall(trace);
  drawTraceEmf(trace.emf);
  const first = document.querySelector("#waterfall .bar");
  if (first) showDetails(trace.spans[0], first);
}

function drawWaterfall(trace) {
  const total = Math.max(trace.end - trace.start, 1e-6);
  const rows = trace.spans.map((span, index) => {
    span.start ??= trace.start; // a nested entity without a (numeric) start_time
    const end = span.end ?? trace.end;
    const bar = el("button", {
      type: "button",
      class: `bar ns-${span.namespace} st-${statusOf(span)}${span.end === null ? " in-progress" : ""}`,
      "aria-label": `${span.name} (${span.service}), ${span.end === null ? "in progress" : ms((end - span.start) * 1000)}`,
      data: { index, id: span.id ?? "", depth: span.depth },
      onclick: (event) => showDetails(span, event.currentTarget),
    }, span.end === null ? "in progress" : ms((end - span.start) * 1000));
    bar.style.left = `${(100 * (span.start - trace.start)) / total}%`;
    bar.style.width = `${Math.max((100 * (end - span.start)) / total, 0.15)}%`;
    const label = el("div", { class: "label" },
      el("span", { class: "name" }, span.name),
      el("span", { class: "service" }, span.kind === "segment" ? span.origin || "service" : span.service));
    label.style.paddingLeft = `${span.depth * 1.1 + 0.3}em`;
    return el("div", { class: "row", role: "treeitem", "aria-level": span.depth + 1 }, label,
      el("div", { class: "track" }, bar));
  });
  const axis = el("div", { class: "row axis" }, el("div", { class: "label" }, "0 ms"),
    el("div", { class: "track" }, el("span", { class: "tick-end" }, ms(total * 1000))));
  $("waterfall").replaceChildren(axis, ...rows);
}

function onWaterfallKey(event) {
  if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) return;
  const bars = [...document.querySelectorAll("#waterfall .bar")];
  const at = bars.indexOf(document.activeElement);
  if (at < 0) return;
  event.preventDefault();
  const next = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: bars.length - 1 }[event.key];
  const target = bars[Math.max(0, Math.min(bars.length - 1, next))];
  target.focus();
  target.click();
}

function showDetails(span, bar) {
  for (const other of document.querySelectorAll("#waterfall .bar[aria-pressed]")) other.removeAttribute("aria-pressed");
  bar.setAttribute("aria-pressed", "true");
  const end = span.end === null ? "in progress" : ms((span.end - span.start) * 1000);
  const parts = [
    el("h3", {}, span.name),
    keyValues({
      kind: span.kind, service: span.service, namespace: span.namespace, origin: span.origin,
      id: span.id, parent: span.parent_id, started: clock(span.start), duration: end, status: statusOf(span),
    }),
  ];
  if (span.annotations && typeof span.annotations === "object") {
    parts.push(el("h4", {}, "Annotations"), keyValues(span.annotations));
  }
  for (const key of ["http", "aws", "sql", "metadata"]) {
    if (span[key]) parts.push(el("h4", {}, key), el("pre", { class: `detail-${key}` }, json(span[key])));
  }
  if (span.cause) parts.push(el("h4", {}, "Cause"), cause(span.cause));
  if (Array.isArray(span.links)) {
    parts.push(el("h4", {}, "Linked traces"),
      el("ul", { class: "links" }, ...span.links.map((link) =>
        el("li", {}, traceLink(link?.trace_id), link?.id ? ` span ${link.id}` : ""))));
  }
  parts.push(el("details", { class: "raw" }, el("summary", {}, "Raw X-Ray document"),
    el("pre", {}, json(span.document))));
  $("details").replaceChildren(...parts);
}

function keyValues(object) {
  const rows = Object.entries(object).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k),
      el("td", {}, typeof v === "object" ? JSON.stringify(v) : v)));
  return el("table", { class: "kv" }, el("tbody", {}, ...rows));
}

function cause(value) {
  if (typeof value !== "object") return el("p", {}, `same exception as ${value}`);
  const list = (items) => (Array.isArray(items) ? items : []); // documents from the wild
  const items = list(value.exceptions).map((exc) =>
    el("li", {},
      el("strong", {}, `${exc.type ?? "Exception"}: `), exc.message ?? "", exc.remote ? " (remote)" : "",
      el("ol", { class: "stack" }, ...list(exc.stack).map((frame) =>
        el("li", {}, `${frame.path ?? "?"}:${frame.line ?? "?"} in ${frame.label ?? "?"}`)))));
  return el("div", { class: "cause" },
    value.working_directory ? el("p", {}, `working directory ${value.working_directory}`) : null,
    el("ul", {}, ...items));
}

function drawTraceEmf(lines) {
  if (!lines.length) {
    $("trace-emf").replaceChildren(el("p", {}, "No EMF documents carry this trace's id."));
    return;
  }
  const rows = lines.flatMap((line) => line.values.map((v) =>
    el("tr", {}, el("td", {}, clock(v.timestamp)), el("td", {}, v.namespace), el("td", {}, v.name),
      el("td", { class: "num" }, v.value), el("td", {}, v.unit))));
  const raws = lines.map((line) => el("details", { class: "raw" }, el("summary", {}, "EMF document"),
    el("pre", {}, json(line.document))));
  $("trace-emf").replaceChildren(
    el("table", { id: "emf-table" },
      el("thead", {}, el("tr", {}, ...["Time", "Namespace", "Metric", "Value", "Unit"].map((h) =>
        el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows)),
    ...raws);
}

// -- service map ---------------------------------------------------------------------------------

async function showMap() {
  const mine = generation;
  $("view-map").hidden = false;
  await drawMap();
  every(onChange(drawMap), mine);
}

async function drawMap() {
  const data = await api(`map?minutes=${$("map-minutes").value}`);
  const depth = layers(data);
  const columns = new Map();
  for (const node of data.nodes) {
    const d = depth.get(node.name) ?? 0;
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(node);
  }
  const W = 190, H = 64, GAPX = 170, GAPY = 36;
  const at = new Map();
  let height = 0;
  for (const [d, nodes] of columns) {
    nodes.forEach((node, i) => at.set(node.name, { x: 20 + d * (W + GAPX), y: 20 + i * (H + GAPY) }));
    height = Math.max(height, 40 + nodes.length * (H + GAPY));
  }
  const map = $("map");
  const width = 40 + Math.max(1, columns.size) * (W + GAPX);
  map.setAttribute("viewBox", `0 0 ${width} ${Math.max(height, 120)}`);
  map.setAttribute("width", width);
  map.setAttribute("height", Math.max(height, 120));
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  const edges = data.edges.map((edge) => {
    const a = at.get(edge.source), b = at.get(edge.target);
    const g = svg("g", { class: `edge${edge.fault_rate ? " has-fault" : edge.error_rate ? " has-error" : ""}`, "data-source": edge.source, "data-target": edge.target });
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const self = edge.source === edge.target;
    g.append(svg("path", { d: self ? `M${a.x + W / 2},${a.y} c-30,-30 60,-30 30,0` : `M${x1},${y1} C${x1 + 50},${y1} ${x2 - 50},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    g.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" },
      `${edge.requests} req · ${pct(edge.error_rate + edge.fault_rate)} err`));
    g.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 + 10, "text-anchor": "middle", class: "small" },
      `p50 ${ms(edge.p50_ms)}`));
    return g;
  });
  const nodes = data.nodes.map((node) => {
    const { x, y } = at.get(node.name);
    const g = svg("g", { class: `node kind-${node.kind}${node.fault_rate ? " has-fault" : node.error_rate ? " has-error" : ""}`, tabindex: 0, role: "button", "data-name": node.name, "aria-label": `${node.name}: show its traces` });
    g.append(svg("rect", { x, y, width: W, height: H, rx: 8 }));
    g.append(svg("text", { x: x + 10, y: y + 22, class: "title" }, node.name.length > 26 ? `${node.name.slice(0, 25)}…` : node.name));
    g.append(svg("text", { x: x + 10, y: y + 40, class: "small" }, `${node.kind} · ${node.requests} req`));
    g.append(svg("text", { x: x + 10, y: y + 55, class: "small" }, `p50 ${ms(node.p50_ms)} · ${pct(node.error_rate + node.fault_rate)} err`));
    g.append(svg("title", {}, node.name));
    const open = () => { location.hash = `#/traces?${new URLSearchParams(filterFor(node))}`; };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); } });
    return g;
  });
  map.replaceChildren(defs, ...edges, ...nodes);
  $("edge-rows").replaceChildren(...data.edges.map((e) => el("tr", {},
    el("td", {}, e.source), el("td", {}, e.target), el("td", { class: "num" }, e.requests),
    el("td", { class: "num" }, pct(e.error_rate)), el("td", { class: "num" }, pct(e.fault_rate)),
    ...[e.p50_ms, e.p90_ms, e.p99_ms].map((v) => el("td", { class: "num" }, v === null ? "—" : v.toFixed(1))))));
  say(`${data.nodes.length} nodes, ${data.edges.length} edges`);
}

function filterFor(node) {
  if (node.kind === "client") return {};
  return node.kind === "aws" || node.kind === "remote" ? { q: node.name } : { service: node.name };
}

function layers(data) {
  // Column of each node: its longest distance from a node nothing calls (cycles cut).
  const incoming = new Map(data.nodes.map((n) => [n.name, 0]));
  for (const e of data.edges) if (e.source !== e.target) incoming.set(e.target, (incoming.get(e.target) || 0) + 1);
  const depth = new Map();
  const queue = data.nodes.filter((n) => !incoming.get(n.name)).map((n) => n.name);
  for (const name of queue) depth.set(name, 0);
  for (let i = 0; i < queue.length && i < 10000; i++) {
    const from = queue[i];
    for (const e of data.edges) {
      if (e.source !== from || e.target === from) continue;
      const d = depth.get(from) + 1;
      if (!depth.has(e.target) || (depth.get(e.target) < d && d < data.nodes.length)) {
        depth.set(e.target, d);
        queue.push(e.target);
      }
    }
  }
  return depth;
}

// -- metrics -------------------------------------------------------------------------------------

async function showMetrics() {
  const mine = generation;
  $("view-metrics").hidden = false;
  await drawMetrics();
  every(onChange(drawMetrics), mine);
}

async function drawMetrics() {
  const { series } = await api("metrics?minutes=60");
  if (!series.length) {
    $("metric-list").replaceChildren(el("p", {}, "No EMF metrics received yet."));
    return;
  }
  $("metric-list").replaceChildren(...series.map((s) => {
    const values = s.points.map((p) => p[1]);
    const last = values[values.length - 1];
    return el("figure", { class: "metric", data: { metric: `${s.namespace}/${s.name}` } },
      el("figcaption", {}, `${s.namespace} / ${s.name} (${s.unit}): last ${last}, `
        + `min ${Math.min(...values)}, max ${Math.max(...values)}, ${values.length} points`),
      sparkline(s.points));
  }));
}

function sparkline(points) {
  const W = 600, H = 80;
  const times = points.map((p) => p[0]), values = points.map((p) => p[1]);
  const t0 = Math.min(...times), t1 = Math.max(...times), v0 = Math.min(0, ...values), v1 = Math.max(...values);
  const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - 10) + 5 : W / 2);
  const y = (v) => (v1 > v0 ? H - 5 - ((v - v0) / (v1 - v0)) * (H - 10) : H / 2);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "time series" });
  chart.append(svg("polyline", { points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }));
  for (const p of points) chart.append(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5 }));
  return chart;
}

// -- sampling ------------------------------------------------------------------------------------

async function showSampling() {
  const mine = generation;
  $("view-sampling").hidden = false;
  await drawSampling();
  every(drawSampling, mine);
}

async function drawSampling() {
  const data = await api("sampling");
  if (!data.available) {
    $("sampling-note").textContent = "Sampling rules are served by a running `tracekit sidecar --local`; "
      + "this viewer reads a stored database only.";
    $("rule-rows").replaceChildren();
    return;
  }
  $("sampling-note").textContent = `Rules of the local control plane, with the statistics its clients `
    + `reported in the last ${data.window_seconds} s.`;
  $("rule-rows").replaceChildren(...data.rules.map((record) => {
    const r = record.SamplingRule;
    const match = `${r.ServiceName} ${r.HTTPMethod} ${r.URLPath} host=${r.Host} type=${r.ServiceType}`;
    const boost = record.BoostRate === null ? "—" : `${pct(record.BoostRate)} until ${clock(record.BoostUntil)}`;
    return el("tr", { data: { rule: r.RuleName } }, el("td", { class: "num" }, r.Priority), el("td", {}, r.RuleName),
      el("td", {}, match), el("td", { class: "num" }, r.ReservoirSize), el("td", { class: "num" }, pct(r.FixedRate)),
      el("td", { class: "num requests" }, record.RequestCount), el("td", { class: "num sampled" }, record.SampledCount),
      el("td", { class: "num borrowed" }, record.BorrowCount), el("td", { class: "boost" }, boost));
  }));
}

// -- start ---------------------------------------------------------------------------------------

$("filters").addEventListener("submit", applyFilters);
$("filters").addEventListener("reset", () => setTimeout(() => { location.hash = "#/traces"; }));
$("page-next").addEventListener("click", () => { if (list.next) { list.cursors.push(list.next); loadTraces(); } });
$("page-first").addEventListener("click", () => { list.cursors = []; loadTraces(); });
$("waterfall").addEventListener("keydown", onWaterfallKey);
$("map-minutes").addEventListener("change", () => drawMap());
window.addEventListener("hashchange", route);
route();
