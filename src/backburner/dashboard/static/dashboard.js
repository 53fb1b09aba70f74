// backburner dashboard: live updates by polling the JSON API, actions by fetch, charts in SVG.
// Every piece of data reaches the page through textContent or a checked attribute, never as
// markup (no innerHTML anywhere), and the page's CSP allows no inline script or style.
// A live update changes in place only what changed (see "Updating in place"), so that the
// keyboard focus, a text selection and the scroll positions survive it.
"use strict";

(function () {
  const body = document.body;
  if (!body || !body.dataset.page) return; // an error page: nothing to update
  const root = body.dataset.root || "";
  const page = body.dataset.page;
  const readOnly = body.dataset.readOnly === "true";
  const pollSeconds = Number(body.dataset.poll) || 0;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  const SVG = "http://www.w3.org/2000/svg";
  let serverOffset = 0; // server time minus ours, in seconds
  let inFlight = false;
  // Live updates paused by the reader: remembered per tab (sessionStorage) and per dashboard,
  // so that the next page of this tab stays paused, and another tab is not.
  const PAUSED_KEY = "backburner.paused:" + (root || "/");
  let paused = readPaused();
  // What the last update showed, to say in a sentence what the next one changed.
  let before = null;

  // Building nodes.

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function text(value) {
    return document.createTextNode(value === null || value === undefined ? "" : String(value));
  }

  function jobHref(id) {
    return root + "/jobs/" + encodeURIComponent(id);
  }

  function here() {
    return window.location.pathname + window.location.search;
  }

  function actionForm(action, fields, label, kind, confirmText) {
    const form = el("form", { class: "action", method: "post", action: root + "/api/actions/" + action });
    if (confirmText) form.dataset.confirm = confirmText;
    for (const [name, value] of Object.entries(fields)) {
      form.append(el("input", { type: "hidden", name: name, value: value }));
    }
    form.append(el("input", { type: "hidden", name: "csrf_token", value: csrf }));
    form.append(el("input", { type: "hidden", name: "next", value: here() }));
    form.append(el("button", { type: "submit", class: kind || "", "data-action": action }, [label]));
    return form;
  }

  // Updating in place. A live update builds the new nodes, then morphs the page's nodes into
  // them: a node of the same kind is kept and only its attributes and text are changed, so
  // that a focused button stays the focused node (replacing a table's body at every poll
  // dropped the focus to <body>). Rows are matched by key, not by position.

  function morph(old, fresh) {
    if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
      old.replaceWith(fresh);
      return;
    }
    if (old.nodeType === Node.TEXT_NODE) {
      if (old.data !== fresh.data) old.data = fresh.data;
      return;
    }
    if (old.nodeType !== Node.ELEMENT_NODE) return;
    const sameTime = old.nodeName === "TIME" && old.getAttribute("data-ts") === fresh.getAttribute("data-ts");
    for (const attr of Array.from(old.attributes)) {
      if (!fresh.hasAttribute(attr.name)) old.removeAttribute(attr.name);
    }
    for (const attr of Array.from(fresh.attributes)) {
      if (old.getAttribute(attr.name) !== attr.value) old.setAttribute(attr.name, attr.value);
    }
    if (!sameTime) morphChildren(old, fresh); // (a time's text is refreshTimes' business)
  }

  function morphChildren(old, fresh) {
    const wanted = Array.from(fresh.childNodes);
    wanted.forEach((node, i) => {
      const have = old.childNodes[i];
      if (have) morph(have, node);
      else old.append(node);
    });
    while (old.childNodes.length > wanted.length) old.lastChild.remove();
  }

  // Brings a table body's rows in line with `rows` (fresh <tr>s), matching them by the
  // attribute `key`: kept rows are morphed, new ones inserted, gone ones removed.
  function syncRows(tbody, rows, key) {
    const have = new Map();
    for (const tr of Array.from(tbody.rows)) have.set(tr.getAttribute(key) || "", tr);
    const wanted = new Set(rows.map((tr) => tr.getAttribute(key) || ""));
    for (const [name, tr] of have) if (!wanted.has(name)) tr.remove();
    rows.forEach((fresh, i) => {
      let tr = have.get(fresh.getAttribute(key) || "");
      if (tr) morph(tr, fresh);
      else tr = fresh;
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
  }

  // Runs `render`, then gives the focus back if it moved a focused node (a row moved up when
  // one above it left) or to the table's box if the focused row is gone, never to <body>.
  function keepingFocus(render) {
    const active = document.activeElement;
    const box = active && active.closest ? active.closest(".table-scroll") : null;
    render();
    if (!active || active === body || document.activeElement === active) return;
    if (active.isConnected) active.focus({ preventScroll: true });
    else if (box && box.isConnected) box.focus({ preventScroll: true });
  }

  // The server's markup has whitespace between its cells' nodes, which the nodes the script
  // builds have not: dropped once, so that the first update does not rebuild every cell.
  function dropBlankText(node) {
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    const blank = [];
    while (walker.nextNode()) if (!walker.currentNode.data.trim()) blank.push(walker.currentNode);
    for (const text of blank) text.remove();
  }

  // (Set only when it changed: setting the same text again would drop a reader's selection.)
  function setText(node, value) {
    if (node.textContent !== value) node.textContent = value;
  }

  // Says what an update changed, in the polite live region (screen readers read it when idle).
  function announce(message) {
    const box = document.getElementById("announce");
    if (box && message) setText(box, message);
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  // Times.

  function now() {
    return Date.now() / 1000 + serverOffset;
  }

  function duration(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds > 0 && seconds < 0.0005) return "< 1 ms"; // (not "0 ms": it was not nothing)
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
  }

  function relative(ts, rel) {
    const delta = now() - ts;
    if (rel === "elapsed") return duration(delta);
    if (rel === "in") return delta > 0 ? "due now" : "in " + duration(-delta);
    return duration(delta) + " ago";
  }

  function timeNode(ts, rel) {
    if (ts === null || ts === undefined) return el("span", { class: "muted" }, ["-"]);
    const iso = new Date(ts * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    return el("time", { "data-ts": ts, "data-rel": rel, title: iso }, [relative(ts, rel)]);
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll("time[data-ts]")) {
      const ts = Number(node.getAttribute("data-ts"));
      if (Number.isFinite(ts)) setText(node, relative(ts, node.getAttribute("data-rel")));
    }
  }

  // Job tables (busy, pending, scheduled, retries, dead): the same columns as the template.

  function cell(column, job) {
    switch (column) {
      case "id":
        return el("a", { class: "job-link", href: jobHref(job.id) }, [job.id]);
      case "name":
        return el("code", { class: "fn" }, [job.name]);
      case "queue":
        return text(job.queue);
      case "args":
        return el("code", { class: "args" }, [job.args.join(", ")]);
      case "status":
        return el("span", { class: "status status-" + job.status }, [job.status]);
      case "enqueued":
        return timeNode(job.enqueued_at, "ago");
      case "started":
        return timeNode(job.started_at, "elapsed");
      case "run_at":
        return timeNode(job.run_at, "in");
      case "finished":
        return timeNode(job.finished_at, "ago");
      case "attempt":
        return text(job.attempt_text);
      case "error":
        return el("span", { class: "error" }, [job.error === null ? "" : job.error]);
      case "progress":
        return el("span", { class: "progress" }, [job.progress === null ? "" : job.progress]);
      default:
        return text("");
    }
  }

  function jobActions(actions, job) {
    const td = el("td", { class: "actions" });
    for (const action of actions) {
      if (action === "retry" && job.in_failures) td.append(actionForm("retry", { job: job.id }, "Retry"));
      if (action === "discard" && job.in_failures) td.append(actionForm("discard", { job: job.id }, "Discard", "danger"));
      if (action === "cancel" && job.can_cancel) td.append(actionForm("cancel", { job: job.id }, "Cancel", "danger"));
    }
    return td;
  }

  function renderJobs(data) {
    const table = document.querySelector("table.jobs");
    if (!table) return;
    const columns = table.dataset.columns.split(",");
    const actions = table.dataset.actions ? table.dataset.actions.split(",") : [];
    const rows = [];
    for (const job of data.jobs) {
      const row = el("tr", { "data-id": job.id });
      for (const column of columns) row.append(el("td", { class: "col-" + column }, [cell(column, job)]));
      if (actions.length) row.append(jobActions(actions, job));
      rows.push(row);
    }
    if (!data.jobs.length) {
      const span = columns.length + (actions.length ? 1 : 0);
      rows.push(el("tr", { class: "empty" }, [el("td", { colspan: span }, ["Nothing here."])]));
    }
    syncRows(table.tBodies[0], rows, "data-id");
    const total = document.querySelector("[data-total-text]");
    if (total) setText(total, plural(data.total, "job"));
    const bulk = document.querySelector("[data-bulk]");
    if (bulk) bulk.hidden = data.total === 0;
    const ids = new Set(data.jobs.map((job) => job.id));
    if (before) {
      const added = [...ids].filter((id) => !before.ids.has(id)).length;
      const gone = [...before.ids].filter((id) => !ids.has(id)).length;
      if (added || gone || data.total !== before.total) {
        const changes = [added ? added + " new" : "", gone ? gone + " gone" : ""].filter(Boolean);
        announce((changes.length ? changes.join(", ") + "; " : "") + plural(data.total, "job") + " in all.");
      }
    }
    before = { ids: ids, total: data.total };
  }

  // Overview: totals, the queues table, the charts.

  function renderOverview(data) {
    for (const node of document.querySelectorAll("[data-total]")) {
      const key = node.getAttribute("data-total");
      setText(node, String(key === "failures" ? data.failures : data.total[key]));
    }
    const yielding = document.querySelector("[data-yielding]");
    if (yielding && data.yielding) {
      setText(yielding, data.yielding.summary);
      yielding.parentElement.setAttribute("data-yielding-state", data.yielding.state);
    }
    const table = document.getElementById("queues");
    if (table) {
      const rows = [];
      for (const q of data.queues) {
        const name = el("td", { class: "col-queue" }, [
          el("a", { href: root + "/pending?queue=" + encodeURIComponent(q.name) }, [q.label]),
        ]);
        if (q.paused) name.append(" ", el("span", { class: "badge paused-badge" }, ["paused"]));
        const row = el("tr", { "data-queue": q.name, class: q.paused ? "paused" : null }, [
          name,
          el("td", {}, [q.busy + " / " + q.workers]),
          el("td", {}, [String(q.idle)]),
          el("td", {}, [String(q.pending)]),
          el("td", {}, [String(q.scheduled)]),
          el("td", {}, [String(q.processed)]),
          el("td", {}, [String(q.failed)]),
          el("td", {}, [String(q.dead)]),
          el("td", {}, [String(q.cancelled)]),
        ]);
        if (!readOnly) {
          const action = q.paused ? "resume" : "pause";
          row.append(el("td", { class: "actions" }, [actionForm(action, { queue: q.name }, q.paused ? "Resume" : "Pause")]));
        }
        rows.push(row);
      }
      syncRows(table.tBodies[0], rows, "data-queue");
    }
    renderCharts(data);
    const pausedQueues = new Set(data.queues.filter((q) => q.paused).map((q) => q.label));
    if (before) {
      const news = [];
      for (const label of pausedQueues) if (!before.paused.has(label)) news.push("Queue " + label + " paused.");
      for (const label of before.paused) if (!pausedQueues.has(label)) news.push("Queue " + label + " resumed.");
      if (data.failures !== before.failures) news.push(plural(data.failures, "job") + " in the dead list.");
      if (data.running !== before.running) news.push(data.running ? "The executor is running." : "The executor stopped.");
      if (news.length) announce(news.join(" "));
    }
    before = { paused: pausedQueues, failures: data.failures, running: data.running };
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  // A chart's size comes from its data: 3 px for each sample the window holds (10 minutes of
  // 5-second samples: 360 px), whatever the width of the card or the screen (a chart
  // stretched to a wide card had 30 px axis text). CSS only shrinks it, on a narrow screen.
  const SLOT = 3, LEFT = 4, TOP = 16, BOTTOM = 16, PLOT_H = 64;

  function chart(samples, series, since, until, slots, unit, label) {
    const plotW = Math.min(600, Math.max(180, Math.round(slots * SLOT)));
    const width = plotW + 2 * LEFT, height = TOP + PLOT_H + BOTTOM;
    let max = 0;
    const drawn = [];
    for (const serie of series) {
      const values = samples.filter((s) => s.at >= since).map((s) => [s.at, serie.value(s)]);
      const known = values.filter(([, v]) => v !== null);
      // A line that would lie on zero all along says nothing: the failed one is left out then.
      if (serie.onlyAboveZero && !known.some(([, v]) => v > 0)) continue;
      for (const [, v] of known) if (v > max) max = v;
      drawn.push([serie, known]);
    }
    // Waits of a few microseconds are noise: the wait scale starts at 10 ms, so that they
    // lie flat at the bottom instead of filling the chart.
    max = niceMax(Math.max(max, unit === "s" ? 0.01 : 0));
    const maxText = unit === "s" ? duration(max) : max + " " + unit;
    const span = until - since;
    const spanText = span >= 90 ? Math.round(span / 60) + " min" : duration(span);
    const box = svg("svg", {
      width: width,
      height: height,
      viewBox: "0 0 " + width + " " + height,
      class: "chart",
      role: "img",
      "aria-label": label + " over the last " + spanText + ", up to " + maxText,
    });
    box.append(svg("rect", { x: LEFT, y: TOP, width: plotW, height: PLOT_H, class: "plot" }));
    const x = (t) => LEFT + ((t - since) / (until - since)) * plotW;
    const y = (v) => TOP + PLOT_H - (v / max) * PLOT_H;
    for (const [serie, known] of drawn) {
      if (!known.length) continue;
      const points = known.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1));
      box.append(svg("polyline", { points: points.join(" "), class: "line " + serie.cls }));
    }
    const title = svg("text", { x: LEFT, y: 11, class: "axis" });
    title.textContent = label + " (max " + maxText + ")";
    const start = svg("text", { x: LEFT, y: height - 3, class: "axis" });
    start.textContent = "-" + spanText;
    const end = svg("text", { x: width - LEFT, y: height - 3, class: "axis end" });
    end.textContent = "now";
    box.append(title, start, end);
    return box;
  }

  function renderCharts(data) {
    const section = document.getElementById("charts");
    if (!section) return;
    const minutes = Number(data.minutes) || Number(section.dataset.minutes) || 10;
    const interval = Number(data.interval) || 5;
    const slots = (minutes * 60) / interval;
    // The time axis runs from the oldest sample (within the window) to now: a dashboard
    // started 15 s ago shows those 15 s across the chart, not a sliver at its right end.
    const until = data.now;
    let since = until - minutes * 60;
    const firsts = data.queues.map((q) => (data.history[q.name] || [])[0]).filter(Boolean);
    if (firsts.length) {
      const oldest = Math.min(...firsts.map((first) => first.at - first.seconds));
      since = Math.max(since, Math.min(oldest, until - 2 * interval));
    }
    const figures = [];
    for (const q of data.queues) {
      const samples = data.history[q.name] || [];
      const last = samples.length ? samples[samples.length - 1] : null;
      const caption = el("figcaption", {}, [el("strong", {}, [q.label])]);
      if (last) {
        const rate = last.processed / last.seconds;
        caption.append(" · " + rate.toFixed(rate < 10 ? 1 : 0) + " jobs/s");
        if (last.wait !== null) caption.append(" · wait " + duration(last.wait));
      }
      const throughput = chart(samples, [
        { cls: "failed", value: (s) => s.failed / s.seconds, onlyAboveZero: true },
        { cls: "processed", value: (s) => s.processed / s.seconds }, // drawn over the failures
      ], since, until, slots, "jobs/s", "Throughput");
      const wait = chart(samples, [{ cls: "wait", value: (s) => s.wait }], since, until, slots, "s", "Wait for a worker");
      figures.push(el("figure", { class: "chart-card", "data-queue": q.name }, [caption, throughput, wait]));
    }
    morphChildren(section, el("section", {}, figures));
  }

  // Periodic jobs.

  function renderPeriodic(data) {
    const table = document.getElementById("periodic");
    if (!table) return;
    const rows = [];
    for (const p of data.periodic) {
      const row = el("tr", { "data-name": p.name }, [
        el("td", {}, [el("code", { class: "fn" }, [p.label])]),
        el("td", {}, [p.schedule]),
        el("td", {}, [p.queue]),
        el("td", {}, [timeNode(p.last_run, "ago")]),
        el("td", {}, [timeNode(p.next_run, "in")]),
        el("td", {}, [String(p.runs)]),
        el("td", {}, [String(p.skipped)]),
      ]);
      if (!readOnly) row.append(el("td", { class: "actions" }, [actionForm("trigger", { name: p.name }, "Run now")]));
      rows.push(row);
    }
    if (!data.periodic.length) {
      const hint = "No periodic jobs: give them as Backburner(periodic=[Periodic(fn, every=60)]).";
      rows.push(el("tr", { class: "empty" }, [el("td", { colspan: readOnly ? 7 : 8 }, [hint])]));
    }
    syncRows(table.tBodies[0], rows, "data-name");
  }

  // One job.

  function renderJob(data) {
    const job = data.job;
    for (const node of document.querySelectorAll("[data-field]")) {
      const key = node.getAttribute("data-field");
      if (key === "args") {
        const items = job.args.map((arg) => el("li", {}, [el("code", {}, [arg])]));
        morphChildren(node, el("ol", {}, items.length ? items : [el("li", { class: "muted" }, ["none"])]));
      } else if (key === "traceback" || key === "result" || key === "progress") {
        setText(node, job[key] === null ? "" : job[key]); // (hidden when null: data-show-if)
      } else if (key === "status") {
        setText(node, job.status);
        if (node.getAttribute("class") !== "status status-" + job.status) node.setAttribute("class", "status status-" + job.status);
      } else if (key in job) {
        const value = job[key];
        setText(node, value === null ? (key === "error" ? "" : "none") : String(value));
      }
    }
    for (const node of document.querySelectorAll("[data-time]")) {
      const key = node.getAttribute("data-time");
      morphChildren(node, el("dd", {}, [timeNode(job[key], key === "run_at" ? "in" : "ago")]));
    }
    for (const node of document.querySelectorAll("[data-show-if]")) {
      const hidden = !job[node.getAttribute("data-show-if")];
      if (node.hidden !== hidden) node.hidden = hidden;
    }
    if (before && before.status !== job.status) announce("Job " + job.id + " " + job.status + ".");
    before = { status: job.status };
  }

  // Polling.

  const RENDER = {
    overview: renderOverview,
    busy: renderJobs,
    pending: renderJobs,
    scheduled: renderJobs,
    retries: renderJobs,
    dead: renderJobs,
    periodic: renderPeriodic,
    job: renderJob,
  };

  function apiPath() {
    if (page === "job") {
      const table = document.getElementById("job");
      return root + "/api/jobs/" + encodeURIComponent(table ? table.dataset.id : "");
    }
    return root + "/api/" + page + window.location.search;
  }

  function setLive(state, title) {
    const live = document.getElementById("live");
    if (!live) return;
    setText(live, state);
    live.setAttribute("class", "live " + state);
    live.setAttribute("title", title || "");
  }

  function count(name) {
    body.dataset[name] = String(Number(body.dataset[name] || "0") + 1);
  }

  // One update: the page's API answer, rendered in place. `data-updated` on <body> counts the
  // updates rendered (the browser tests wait on it, as they would on an event).
  async function refresh(force) {
    if (inFlight) return;
    inFlight = true;
    // A poll that hangs (a stalled proxy, a server that stopped answering) is given up, so
    // that the next one runs: without it, one lost request would end live updates for good.
    const controller = new AbortController();
    const deadline = window.setTimeout(() => controller.abort(), Math.max(10, 3 * pollSeconds) * 1000);
    try {
      const response = await fetch(apiPath(), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      const data = await response.json();
      if (paused && !force) return; // paused while it was on its way: not shown
      if (!response.ok) {
        setLive("error", data.error || "HTTP " + response.status);
        return;
      }
      if (typeof data.now === "number") serverOffset = data.now - Date.now() / 1000;
      keepingFocus(() => RENDER[page](data));
      refreshTimes();
      setLive(pollSeconds && !paused ? "live" : "paused", "Updated " + new Date().toLocaleTimeString());
      count("updated");
    } catch (error) {
      setLive("offline", String(error));
    } finally {
      window.clearTimeout(deadline);
      inFlight = false;
    }
  }

  // Every poll interval, one update, unless the tab is hidden or the reader paused them.
  // `data-ticks` counts the intervals, updated or not (a test of the pause waits on it).
  function schedule() {
    if (!pollSeconds) return;
    window.setTimeout(async () => {
      count("ticks");
      if (!paused && !document.hidden) await refresh(false);
      schedule();
    }, pollSeconds * 1000);
  }

  // Pausing live updates: a button in the header, which a page without updates has not.

  function readPaused() {
    try {
      return window.sessionStorage.getItem(PAUSED_KEY) === "1";
    } catch (error) {
      return false; // storage refused (a privacy setting): not remembered, still works
    }
  }

  function storePaused() {
    try {
      if (paused) window.sessionStorage.setItem(PAUSED_KEY, "1");
      else window.sessionStorage.removeItem(PAUSED_KEY);
    } catch (error) {
      // (see readPaused)
    }
  }

  function showPaused(toggle) {
    setText(toggle, paused ? "Resume updates" : "Pause updates");
    toggle.setAttribute("title", paused ? "Live updates are paused" : "Updated every " + pollSeconds + " s");
    setLive(paused ? "paused" : "live", paused ? "Live updates paused" : "");
  }

  const toggle = document.getElementById("live-toggle");
  if (toggle && pollSeconds) {
    toggle.hidden = false;
    showPaused(toggle);
    toggle.addEventListener("click", () => {
      paused = !paused;
      storePaused();
      showPaused(toggle);
      announce(paused ? "Live updates paused." : "Live updates resumed.");
      if (!paused) refresh(false);
    });
  }

  // Actions: forms sent with fetch (they work without the script too, as plain POSTs).

  function flash(message, isError) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.setAttribute("class", isError ? "flash error" : "flash");
    box.hidden = false;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("action")) return;
    event.preventDefault();
    const question = form.dataset.confirm;
    if (question && !window.confirm(question)) return;
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/x-www-form-urlencoded",
          "X-Backburner-CSRF": csrf,
        },
        credentials: "same-origin",
        body: new URLSearchParams(new FormData(form)),
      });
      const data = await response.json();
      flash(response.ok ? data.message : data.error || "HTTP " + response.status, !response.ok);
    } catch (error) {
      flash(String(error), true);
    } finally {
      if (button) button.disabled = false;
    }
    await refresh(true); // the reader's own action: shown even with live updates paused
  });

  for (const tbody of document.querySelectorAll("table tbody")) dropBlankText(tbody);
  // The first update draws the charts and makes the times relative, paused or not.
  refresh(true).then(schedule);
  window.setInterval(refreshTimes, 1000);
})();
