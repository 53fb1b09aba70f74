// backburner dashboard: live updates by polling the JSON API, actions by fetch, charts in SVG.
// Every piece of data reaches the page through textContent or a checked attribute, never as
// markup (no innerHTML anywhere), and the page's CSP allows no inline script or style.
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

  // Times.

  function now() {
    return Date.now() / 1000 + serverOffset;
  }

  function duration(seconds) {
    seconds = Math.max(0, seconds);
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
      if (Number.isFinite(ts)) node.textContent = relative(ts, node.getAttribute("data-rel"));
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
    const tbody = el("tbody");
    for (const job of data.jobs) {
      const row = el("tr", { "data-id": job.id });
      for (const column of columns) row.append(el("td", { class: "col-" + column }, [cell(column, job)]));
      if (actions.length) row.append(jobActions(actions, job));
      tbody.append(row);
    }
    if (!data.jobs.length) {
      const span = columns.length + (actions.length ? 1 : 0);
      tbody.append(el("tr", { class: "empty" }, [el("td", { colspan: span }, ["Nothing here."])]));
    }
    table.tBodies[0].replaceWith(tbody);
    const total = document.querySelector("[data-total-text]");
    if (total) total.textContent = data.total + (data.total === 1 ? " job" : " jobs");
    const bulk = document.querySelector("[data-bulk]");
    if (bulk) bulk.hidden = data.total === 0;
  }

  // Overview: totals, the queues table, the charts.

  function renderOverview(data) {
    for (const node of document.querySelectorAll("[data-total]")) {
      const key = node.getAttribute("data-total");
      node.textContent = key === "failures" ? data.failures : data.total[key];
    }
    const table = document.getElementById("queues");
    if (table) {
      const tbody = el("tbody");
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
        tbody.append(row);
      }
      table.tBodies[0].replaceWith(tbody);
    }
    renderCharts(data);
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

  function chart(samples, series, since, until, unit, label) {
    const width = 320, height = 90, left = 4, top = 14, plotW = width - left * 2, plotH = height - top - 14;
    const box = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart", role: "img", "aria-label": label });
    let max = 0;
    for (const s of samples) for (const serie of series) {
      const v = serie.value(s);
      if (v !== null && v > max) max = v;
    }
    max = niceMax(max);
    box.append(svg("rect", { x: left, y: top, width: plotW, height: plotH, class: "plot" }));
    const x = (t) => left + ((t - since) / (until - since)) * plotW;
    const y = (v) => top + plotH - (v / max) * plotH;
    for (const serie of series) {
      const points = [];
      for (const s of samples) {
        const v = serie.value(s);
        if (v !== null && s.at >= since) points.push(x(s.at).toFixed(1) + "," + y(v).toFixed(1));
      }
      if (points.length) box.append(svg("polyline", { points: points.join(" "), class: "line " + serie.cls }));
    }
    const title = svg("text", { x: left, y: 10, class: "axis" });
    title.textContent = label + " (max " + (unit === "s" ? duration(max) : max + " " + unit) + ")";
    const start = svg("text", { x: left, y: height - 2, class: "axis" });
    start.textContent = "-" + Math.round((until - since) / 60) + " min";
    const end = svg("text", { x: width - left, y: height - 2, class: "axis end" });
    end.textContent = "now";
    box.append(title, start, end);
    return box;
  }

  function renderCharts(data) {
    const section = document.getElementById("charts");
    if (!section) return;
    const minutes = Number(data.minutes) || Number(section.dataset.minutes) || 10;
    const until = data.now, since = until - minutes * 60;
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
        { cls: "failed", value: (s) => s.failed / s.seconds },
        { cls: "processed", value: (s) => s.processed / s.seconds }, // drawn over the failures
      ], since, until, "jobs/s", "Throughput");
      const wait = chart(samples, [{ cls: "wait", value: (s) => s.wait }], since, until, "s", "Wait for a worker");
      figures.push(el("figure", { class: "chart-card", "data-queue": q.name }, [caption, throughput, wait]));
    }
    section.replaceChildren(...figures);
  }

  // Periodic jobs.

  function renderPeriodic(data) {
    const table = document.getElementById("periodic");
    if (!table) return;
    const tbody = el("tbody");
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
      tbody.append(row);
    }
    if (!data.periodic.length) {
      tbody.append(el("tr", { class: "empty" }, [el("td", { colspan: readOnly ? 7 : 8 }, ["No periodic jobs."])]));
    }
    table.tBodies[0].replaceWith(tbody);
  }

  // One job.

  function renderJob(data) {
    const job = data.job;
    for (const node of document.querySelectorAll("[data-field]")) {
      const key = node.getAttribute("data-field");
      if (key === "args") {
        const items = job.args.map((arg) => el("li", {}, [el("code", {}, [arg])]));
        node.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, ["none"])]));
      } else if (key === "traceback" || key === "result") {
        node.textContent = job[key] === null ? "" : job[key]; // (hidden when null: data-show-if)
      } else if (key === "status") {
        node.textContent = job.status;
        node.setAttribute("class", "status status-" + job.status);
      } else if (key in job) {
        const value = job[key];
        node.textContent = value === null ? (key === "error" ? "" : "none") : String(value);
      }
    }
    for (const node of document.querySelectorAll("[data-time]")) {
      const key = node.getAttribute("data-time");
      node.replaceChildren(timeNode(job[key], key === "run_at" ? "in" : "ago"));
    }
    for (const node of document.querySelectorAll("[data-show-if]")) {
      node.hidden = !job[node.getAttribute("data-show-if")];
    }
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
    live.textContent = state;
    live.setAttribute("class", "live " + state);
    live.setAttribute("title", title || "");
  }

  async function refresh() {
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
      if (!response.ok) {
        setLive("error", data.error || "HTTP " + response.status);
        return;
      }
      if (typeof data.now === "number") serverOffset = data.now - Date.now() / 1000;
      RENDER[page](data);
      refreshTimes();
      setLive(pollSeconds ? "live" : "paused", "Updated " + new Date().toLocaleTimeString());
      body.dataset.updated = String(Number(body.dataset.updated || "0") + 1);
    } catch (error) {
      setLive("offline", String(error));
    } finally {
      window.clearTimeout(deadline);
      inFlight = false;
    }
  }

  function schedule() {
    if (!pollSeconds) return;
    window.setTimeout(async () => {
      if (!document.hidden) await refresh();
      schedule();
    }, pollSeconds * 1000);
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
    await refresh();
  });

  refresh().then(schedule);
  window.setInterval(refreshTimes, 1000);
})();
