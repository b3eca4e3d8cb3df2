// Lamina's console: polls /_lamina/live once a second and draws it with uPlot.
// Plain script, no build step: the page, this file and the vendored uPlot are all it needs.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const region = params.get("region") || "us-east-1";
  // The account shown: with --auth on, the signed-in one's (a different one is refused);
  // with auth off, ?account= or the default account.
  const account = params.get("account") || "";
  const SECONDS = 300;
  const state = { selected: params.get("function") || "", refreshes: 0, data: null, openTrace: null };
  const $ = (id) => document.getElementById(id);

  // Charts -------------------------------------------------------------------------------
  const colors = {
    concurrency: "#2563eb", provisionedBusy: "#16a34a", reserved: "#ea580c",
    provisioned: "#15803d", limit: "#dc2626", pool: "#7c3aed", invocations: "#2563eb", errors: "#dc2626",
    throttles: "#ea580c", cold: "#7c3aed", avg: "#0891b2", max: "#94a3b8",
  };

  function width(el) { return Math.max(320, el.clientWidth || el.parentElement.clientWidth - 10); }

  function makeChart(el, title, series, yLabel, extra = {}) {
    const opts = {
      title, width: width(el), height: 200,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: [{}, { label: yLabel, size: 50 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      ...extra,
    };
    const empty = [[], ...series.map(() => [])];
    return new uPlot(opts, empty, el);
  }

  // The concurrency chart's y-axis is scaled to the data, not to the limits (the
  // planner's rule, lamina/plan/chart.py): a limit near the data (within twice the axis
  // the data alone would get) is a labelled dashed line and the axis grows to hold it;
  // one further up is marked at the top edge with its label and an arrow.
  const LIMIT_REACH = 2;
  const axis = { top: 1, shown: [], above: [] };

  function nice(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      if (step * power >= value - 1e-9) return step * power;
    }
    return 10 * power;
  }

  function axisFor(dataMax, limits) {
    const base = Math.max(dataMax, 1) * 1.15;
    const shown = limits.filter((l) => l.value <= base * LIMIT_REACH);
    const above = limits.filter((l) => l.value > base * LIMIT_REACH);
    const top = nice(Math.max(base, ...shown.map((l) => l.value * 1.08)));
    return { top, shown, above };
  }

  function drawLimits(u) {
    const ctx = u.ctx;
    const ratio = window.devicePixelRatio || 1;
    const { left, top, width: w } = u.bbox;
    ctx.save();
    ctx.font = `${12 * ratio}px system-ui, sans-serif`;
    ctx.textAlign = "right";
    let lastLabel = -Infinity;  // labels of limits with the same value do not overlap
    const ordered = [...axis.shown].sort((a, b) => b.value - a.value);
    for (const limit of ordered) {
      const y = Math.round(u.valToPos(limit.value, "y", true));
      ctx.strokeStyle = limit.color;
      ctx.lineWidth = 1.5 * ratio;
      ctx.setLineDash([6 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + w, y);
      ctx.stroke();
      ctx.fillStyle = limit.color;
      const labelY = Math.max(y - 4 * ratio, lastLabel + 14 * ratio);
      lastLabel = labelY;
      ctx.fillText(`${limit.label} ${limit.value}`, left + w - 4 * ratio, labelY);
    }
    ctx.textAlign = "left";  // off-scale marks at the top left, clear of the labels above
    axis.above.forEach((limit, index) => {
      const y = top + (4 + index * 15) * ratio;
      const x = left + 6 * ratio;
      ctx.fillStyle = limit.color;
      ctx.setLineDash([]);
      ctx.beginPath();
      ctx.moveTo(x, y + 9 * ratio);
      ctx.lineTo(x + 5 * ratio, y);
      ctx.lineTo(x + 10 * ratio, y + 9 * ratio);
      ctx.fill();
      ctx.fillText(`${limit.label} ${limit.value} (off scale)`, x + 14 * ratio, y + 9 * ratio);
    });
    ctx.restore();
  }

  const line = (label, stroke, extra = {}) => ({ label, stroke, width: 2, points: { show: false }, ...extra });
  const charts = {
    concurrency: makeChart($("chart-concurrency"), "Concurrent executions", [
      line("Concurrent executions", colors.concurrency, { fill: "rgba(37,99,235,0.10)" }),
      line("Provisioned in use", colors.provisionedBusy),
    ], "executions", {
      scales: { x: { time: true }, y: { range: () => [0, axis.top] } },
      hooks: { draw: [drawLimits] },
    }),
    activity: makeChart($("chart-activity"), "Per second", [
      line("Invocations", colors.invocations),
      line("Errors", colors.errors),
      line("Throttles", colors.throttles),
      line("Cold starts", colors.cold),
    ], "count / s"),
    duration: makeChart($("chart-duration"), "Duration", [
      line("Average", colors.avg),
      line("Maximum", colors.max, { width: 1 }),
    ], "ms"),
  };

  addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) {
      chart.setSize({ width: width($("chart-" + name)), height: 200 });
    }
  });

  function constant(value, n) {
    const column = new Array(n);
    column.fill(value === null || value === undefined ? null : value);
    return column;
  }

  function drawCharts(data) {
    const s = data.series;
    const n = s.t.length;
    const limits = data.limits || {};
    const selected = data.selected;
    // The provisioned line only where there is provisioned concurrency (else it hides the other).
    const provisioned = (selected && limits.provisioned) || s.provisioned_busy.some((v) => v > 0);
    const lines = [];
    if (selected && limits.reserved !== null && limits.reserved !== undefined) {
      lines.push({ label: "Reserved", value: limits.reserved, color: colors.reserved });
    } else if (selected && limits.unreserved_pool !== null && limits.unreserved_pool !== undefined) {
      lines.push({ label: "Unreserved pool", value: limits.unreserved_pool, color: colors.pool });
    }
    if (selected && limits.provisioned) {
      lines.push({ label: "Provisioned", value: limits.provisioned, color: colors.provisioned });
    }
    if (limits.account !== null && limits.account !== undefined) {
      lines.push({ label: "Account limit", value: limits.account, color: colors.limit });
    }
    const found = axisFor(Math.max(0, ...s.concurrency, ...s.provisioned_busy), lines);
    Object.assign(axis, found);
    const el = $("chart-concurrency");
    el.dataset.yTop = String(axis.top);
    el.dataset.limitsShown = axis.shown.map((l) => l.label).join(",");
    el.dataset.limitsAbove = axis.above.map((l) => l.label).join(",");
    charts.concurrency.setData([
      s.t, s.concurrency, provisioned ? s.provisioned_busy : constant(null, n),
    ]);
    charts.activity.setData([s.t, s.invocations, s.errors, s.throttles, s.cold_starts]);
    charts.duration.setData([s.t, s.duration_avg, s.duration_max]);
  }

  // Cards and table ------------------------------------------------------------------------
  const fmt = (v) => (v === null || v === undefined ? "–" : String(v));
  const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0));

  function drawCards(data) {
    const t = data.totals;
    $("scope").textContent = `account ${data.account} · ${data.region}`;
    $("card-concurrency").textContent = fmt(t.concurrency);
    $("card-limit").textContent = `limit ${fmt(t.limit)} · peak 1 min ${fmt(t.last_minute.peak_concurrency)}`;
    $("card-unreserved").textContent = `${fmt(t.unreserved_in_use)} / ${fmt(t.unreserved_pool)}`;
    $("card-claimed").textContent = `claimed ${fmt(t.claimed)}`;
    $("card-invocations").textContent = fmt(t.last_minute.invocations);
    $("card-duration").textContent = `avg ${ms(t.last_minute.duration_avg)} ms`;
    $("card-errors").textContent = fmt(t.last_minute.errors);
    $("card-throttles").textContent = fmt(t.last_minute.throttles);
    $("card-cold").textContent = fmt(t.last_minute.cold_starts);
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function drawTable(data) {
    const body = $("functions").tBodies[0];
    const rows = [];
    const all = document.createElement("tr");
    all.dataset.name = "";
    cell(all, "All functions");
    for (let i = 0; i < 6; i++) cell(all, "");
    cell(all, fmt(data.totals.concurrency), "num");
    const lm = data.totals.last_minute;
    cell(all, fmt(lm.peak_concurrency), "num");
    cell(all, fmt(lm.invocations), "num");
    cell(all, fmt(lm.errors), lm.errors ? "num bad" : "num");
    cell(all, fmt(lm.throttles), lm.throttles ? "num warn" : "num");
    cell(all, fmt(lm.cold_starts), "num");
    cell(all, ms(lm.duration_avg), "num");
    rows.push(all);
    for (const f of data.functions) {
      const tr = document.createElement("tr");
      tr.dataset.name = f.name;
      const m = f.last_minute;
      cell(tr, f.name);
      cell(tr, fmt(f.runtime));
      cell(tr, fmt(f.memory), "num");
      cell(tr, fmt(f.timeout), "num");
      cell(tr, f.tracing);
      cell(tr, f.reserved === null || f.reserved === undefined ? "–" : String(f.reserved), "num");
      cell(tr, f.provisioned ? `${f.provisioned_ready}/${f.provisioned}` : "–", "num");
      cell(tr, fmt(f.concurrency), "num");
      cell(tr, fmt(m.peak_concurrency), "num");
      cell(tr, fmt(m.invocations), "num");
      cell(tr, fmt(m.errors), m.errors ? "num bad" : "num");
      cell(tr, fmt(m.throttles), m.throttles ? "num warn" : "num");
      cell(tr, fmt(m.cold_starts), "num");
      cell(tr, ms(m.duration_avg), "num");
      rows.push(tr);
    }
    for (const tr of rows) {
      if (tr.dataset.name === data.selected) tr.classList.add("selected");
      tr.addEventListener("click", () => select(tr.dataset.name));
    }
    body.replaceChildren(...rows);
  }

  function drawSettings(data) {
    const f = data.functions.find((x) => x.name === data.selected);
    $("details").hidden = !f;
    $("chart-title").textContent = f ? f.name : "All functions";
    if (!f) return;
    const items = [
      ["Runtime", f.runtime], ["Memory", `${f.memory} MB`], ["Timeout", `${f.timeout} s`],
      ["Tracing", f.tracing], ["Reserved", f.reserved ?? "none"],
      ["Provisioned", f.provisioned ? `${f.provisioned_ready} ready of ${f.provisioned}` : "none"],
      ["Provisioned invocations", f.provisioned_invocations], ["Spillover", f.spillover_invocations],
      ["Throttles by reason", Object.entries(f.throttles_by_reason).map(([k, v]) => `${k}: ${v}`).join(", ") || "none"],
    ];
    const nodes = [];
    for (const [k, v] of items) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = String(v);
      nodes.push(dt, dd);
    }
    $("settings").replaceChildren(...nodes);
  }

  // Logs and traces -------------------------------------------------------------------------
  function time(t) { return new Date(t * 1000).toISOString().slice(11, 23); }

  async function drawLogs() {
    if (!state.selected) return;
    const body = await getJson("/_lamina/live/logs", { function: state.selected, limit: "200" });
    const pre = $("logs");
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const nodes = [];
    for (const l of body.lines) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${time(l.t)} ${l.stream.slice(-8)} `;
      nodes.push(meta, document.createTextNode(l.text + "\n"));
    }
    pre.replaceChildren(...nodes);
    if (stick) pre.scrollTop = pre.scrollHeight;
  }

  function flatten(entity, depth, out, user) {
    out.push({ entity, depth, user });
    for (const child of entity.subsegments || []) {
      const own = ["Initialization", "Invocation", "Overhead"].includes(child.name);
      flatten(child, depth + 1, out, user || (!own && depth >= 0 && entity.origin === "AWS::Lambda::Function"));
    }
    return out;
  }

  function timeline(trace) {
    const rows = [];
    for (const segment of trace.segments) flatten(segment, 0, rows, false);
    const start = Math.min(...rows.map((r) => r.entity.start_time).filter(Number.isFinite));
    const end = Math.max(...rows.map((r) => r.entity.end_time || r.entity.start_time).filter(Number.isFinite));
    const span = Math.max(end - start, 1e-6);
    const box = document.createElement("div");
    box.className = "timeline";
    for (const { entity, depth, user } of rows) {
      const row = document.createElement("div");
      row.className = "bar-row";
      const name = document.createElement("span");
      name.textContent = `${"\u00a0".repeat(depth * 2)}${entity.name}${entity.origin ? " (" + entity.origin + ")" : ""}`;
      const track = document.createElement("div");
      track.className = "bar-track";
      const bar = document.createElement("div");
      bar.className = "bar" + (depth ? " sub" : "") + (user ? " user" : "") + (entity.error || entity.fault ? " error" : "");
      const s = entity.start_time, e = entity.end_time || s;
      bar.style.left = `${((s - start) / span) * 100}%`;
      bar.style.width = `${((e - s) / span) * 100}%`;
      track.appendChild(bar);
      const dur = document.createElement("span");
      dur.textContent = `${((e - s) * 1000).toFixed(1)} ms`;
      row.append(name, track, dur);
      box.appendChild(row);
    }
    return box;
  }

  async function drawTraces() {
    if (!state.selected) return;
    const body = await getJson("/_lamina/live/traces", { function: state.selected, limit: "20" });
    const nodes = [];
    for (const trace of body.traces) {
      const li = document.createElement("li");
      li.dataset.trace = trace.id;
      if (trace.error) li.classList.add("error");
      const id = document.createElement("span");
      id.className = "id";
      id.textContent = trace.id;
      li.append(`${time(trace.start)} `, id, ` ${(trace.duration * 1000).toFixed(1)} ms`);
      if (state.openTrace === trace.id) li.appendChild(timeline(trace));
      li.addEventListener("click", () => { state.openTrace = state.openTrace === trace.id ? null : trace.id; drawTraces(); });
      nodes.push(li);
    }
    if (!nodes.length) {
      const li = document.createElement("li");
      li.textContent = "No traces: set TracingConfig Mode Active, or send a sampled X-Amzn-Trace-Id.";
      nodes.push(li);
    }
    $("traces").replaceChildren(...nodes);
  }

  // Durable executions: the Lambda API itself (ListDurableExecutionsByFunction, history) ----
  const API = "/2025-12-01";

  function detailsText(event) {
    const key = Object.keys(event).find((k) => k.endsWith("Details"));
    const d = key ? event[key] : {};
    const parts = [];
    for (const [k, v] of Object.entries(d || {})) {
      if (v && typeof v === "object") {
        if ("Payload" in v) parts.push(`${k}: ${typeof v.Payload === "string" ? v.Payload : JSON.stringify(v.Payload)}`);
        else if (Object.keys(v).length) parts.push(`${k}: ${JSON.stringify(v)}`);
      } else parts.push(`${k}: ${k.endsWith("Timestamp") ? time(v) : v}`);
    }
    return parts.join(" · ").slice(0, 300);
  }

  async function drawHistory(arn) {
    const body = await getJson(`${API}/durable-executions/${encodeURIComponent(arn)}/history`,
      { IncludeExecutionData: "true", MaxItems: "1000" });
    const nodes = body.Events.map((e) => {
      const li = document.createElement("li");
      li.dataset.event = e.EventType;
      if (/Failed|TimedOut|Stopped/.test(e.EventType)) li.classList.add("error");
      const what = document.createElement("span");
      what.className = "event";
      what.textContent = `${e.EventId} ${e.EventType}`;
      const who = [e.SubType, e.Name].filter(Boolean).join(" ");
      li.append(`${time(e.EventTimestamp)} `, what, who ? ` ${who}` : "", ` ${detailsText(e)}`);
      return li;
    });
    $("history-title").hidden = false;
    $("history-title").textContent = `History of ${arn.split("/").slice(-2, -1)[0]}`;
    $("history").replaceChildren(...nodes);
  }

  async function drawExecutions() {
    if (!state.selected) return;
    let body;
    try {
      body = await getJson(`${API}/functions/${encodeURIComponent(state.selected)}/durable-executions`,
        { ReverseOrder: "true", MaxItems: "25" });
    } catch (error) { body = { DurableExecutions: [] }; }
    const list = body.DurableExecutions || [];
    $("durable").hidden = list.length === 0;
    const rows = list.map((x) => {
      const tr = document.createElement("tr");
      tr.dataset.arn = x.DurableExecutionArn;
      if (state.openExecution === x.DurableExecutionArn) tr.classList.add("selected");
      for (const [text, cls] of [[x.DurableExecutionName, ""], [x.Status, x.Status === "FAILED" || x.Status === "TIMED_OUT" ? "bad" : ""],
        [time(x.StartTimestamp), ""], [x.EndTimestamp ? time(x.EndTimestamp) : "", ""]]) cell(tr, text, cls);
      tr.addEventListener("click", () => { state.openExecution = x.DurableExecutionArn; drawExecutions(); });
      return tr;
    });
    $("executions").querySelector("tbody").replaceChildren(...rows);
    if (state.openExecution) await drawHistory(state.openExecution);
  }

  // Polling --------------------------------------------------------------------------------
  // With --auth on every request is signed (sigv4.js) with keys the user signs in with;
  // they are kept for this tab only (sessionStorage).
  function credentials() {
    const saved = sessionStorage.getItem("lamina-credentials");
    return saved ? JSON.parse(saved) : null;
  }

  function askForKeys(message) {
    $("signin").hidden = false;
    $("signin-problem").textContent = message || "";
  }

  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("lamina-credentials", JSON.stringify({
      key: $("signin-key").value.trim(), secret: $("signin-secret").value.trim(),
    }));
    $("signin").hidden = true;
    refresh();
    details();
  });

  async function getJson(path, extra) {
    const query = { region, ...extra };
    if (account) query.account = account;
    const keys = credentials();
    let url = `${path}?${new URLSearchParams(query)}`;
    let headers = {};
    if (keys) {
      const signed = LaminaSigV4.signGet(path, query, keys, region);
      url = `${path}?${signed.query}`;
      headers = signed.headers;
    }
    const response = await fetch(url, { cache: "no-store", headers });
    if (response.status === 403) {
      const body = await response.json().catch(() => ({}));
      // A request sent with keys the user has since replaced says nothing of the new ones.
      if (JSON.stringify(keys) === JSON.stringify(credentials())) {
        askForKeys(keys ? body.message || body.Message : "");
      }
      throw new Error("sign in to see this account");
    }
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.json();
  }

  function select(name) {
    state.selected = name;
    state.openTrace = null;
    state.openExecution = null;
    const url = new URL(location.href);
    if (name) url.searchParams.set("function", name); else url.searchParams.delete("function");
    history.replaceState(null, "", url);
    refresh();
    details();
  }

  async function refresh() {
    try {
      const data = await getJson("/_lamina/live", { seconds: String(SECONDS), function: state.selected });
      state.data = data;
      if (state.selected && !data.selected) state.selected = "";
      drawCards(data);
      drawTable(data);
      drawSettings(data);
      drawCharts(data);
      $("status").textContent = `live · ${new Date(data.now * 1000).toLocaleTimeString()}`;
      $("status").classList.remove("down");
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
    } catch (error) {
      $("status").textContent = `disconnected (${error.message})`;
      $("status").classList.add("down");
    }
  }

  async function details() {
    try { await Promise.all([drawLogs(), drawTraces(), drawExecutions(), drawNodes()]); } catch (error) { /* the next tick retries */ }
  }

  // Nodes of a cluster (lamina serve --redis): what each runs and holds, as Redis says.
  async function drawNodes() {
    const body = await getJson("/_lamina/cluster", {});
    $("nodes-panel").hidden = !body.Cluster;
    if (!body.Cluster) return;
    $("nodes-problem").textContent = body.Error || "";
    const tbody = $("nodes").querySelector("tbody");
    tbody.replaceChildren();
    for (const node of body.Nodes || []) {
      const tr = document.createElement("tr");
      tr.dataset.node = node.Name;
      if (node.Id === body.Self) tr.classList.add("selected");
      let busy = 0, idle = 0, provisioned = 0;
      for (const figures of Object.values(node.Environments || {})) {
        busy += figures.busy || 0; idle += figures.idle || 0; provisioned += figures.provisioned || 0;
      }
      const state = node.Alive ? "alive" : "expired";
      for (const [text, cls] of [[node.Name, ""], [node.Advertise, "muted"], [state, node.Alive ? "" : "bad"],
        [String(node.LeaseCount), "num"], [`${busy} / ${idle} / ${provisioned}`, "num"],
        [new Date(node.Started * 1000).toLocaleTimeString(), "muted"]]) {
        cell(tr, text, cls);
      }
      tbody.append(tr);
    }
  }

  // Plans: this server's own recent traffic through `lamina plan` (POST /_lamina/plans).
  $("plan-traffic").addEventListener("click", async () => {
    const button = $("plan-traffic");
    button.disabled = true;
    button.textContent = "Planning…";
    try {
      const response = await fetch("/_lamina/plans", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ since: 600 }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.message || String(response.status));
      location.href = body.url;
    } catch (error) {
      $("status").textContent = `plan: ${error.message}`;
    } finally {
      button.disabled = false;
      button.textContent = "Plan the last 10 minutes";
    }
  });

  refresh();
  details();
  setInterval(refresh, 1000);
  setInterval(details, 2000);
})();
