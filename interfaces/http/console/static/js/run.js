// The Run screen: one progress bar per phase, fed by the pipeline's SSE stream.
//
// The stream is folded into counts as events arrive (cheap), and the page is
// drawn at most four times a second, however fast events come: 20,000
// entries are 20,000 events, not 20,000 redraws.

import { api, ApiError, path } from "./api.js";
import { h, pager, replace, showError } from "./dom.js";
import { ResumableStream, TERMINAL, throttled } from "./stream.js";

const PHASES = ["edit", "create", "delete", "backfill"];
const DONE = ["published", "failed", "skipped"];

export class RunModel {
  constructor() {
    this.entries = new Map(); // "phase:path" -> {phase, path, status, error, code}
    this.totals = {};
    this.counts = {};
    this.finished = new Map(); // key -> entry, in the order outcomes arrived (latest last)
    this.state = null;
    this.phase = null;
    this.error = null;
    this.cancelRequested = false;
  }

  count(phase, status, delta) {
    const c = (this.counts[phase] ||= { planned: 0, published: 0, failed: 0, skipped: 0 });
    c[status] += delta;
  }

  settle(data, status, error, code) {
    const key = `${data.phase}:${data.path}`;
    const entry = this.entries.get(key) || { phase: data.phase, path: data.path, status: "planned" };
    if (!this.entries.has(key)) {
      this.entries.set(key, entry);
      this.totals[entry.phase] = (this.totals[entry.phase] || 0) + 1;
      this.count(entry.phase, "planned", 1);
    }
    this.count(entry.phase, entry.status, -1);
    entry.status = status;
    entry.error = error || null;
    entry.code = code || null;
    entry.recordId = data.record_id || entry.recordId || null;
    this.count(entry.phase, status, 1);
    this.finished.delete(key);
    this.finished.set(key, entry);
  }

  apply(events) {
    for (const { type, data } of events) {
      switch (type) {
        case "PipelinePlanned":
          this.state = "planned";
          break;
        case "EntryPlanned": {
          const key = `${data.phase}:${data.path}`;
          if (!this.entries.has(key)) {
            this.entries.set(key, { phase: data.phase, path: data.path, status: "planned" });
            this.totals[data.phase] = (this.totals[data.phase] || 0) + 1;
            this.count(data.phase, "planned", 1);
          }
          break;
        }
        case "PipelineRunRequested":
          this.state = "running";
          this.error = null;
          break;
        case "RetryRequested":
          this.state = "running";
          this.error = null;
          for (const key of data.entries || []) {
            const entry = this.entries.get(key);
            if (!entry) continue;
            this.count(entry.phase, entry.status, -1);
            entry.status = "planned";
            entry.error = null;
            this.count(entry.phase, "planned", 1);
            this.finished.delete(key);
          }
          break;
        case "CancelRequested":
          this.cancelRequested = true;
          break;
        case "PhaseStarted":
          this.phase = data.phase;
          break;
        case "EntryPublished":
          this.settle(data, "published");
          break;
        case "EntryFailed":
          this.settle(data, "failed", data.error, data.code);
          break;
        case "EntrySkipped":
          this.settle(data, "skipped", data.reason, "skipped_dependency");
          break;
        case "PipelineCompleted":
          this.state = data.state;
          break;
        case "PipelineFailed":
          this.state = "failed";
          this.error = data.error;
          break;
        case "PipelineCancelled":
          this.state = "cancelled";
          this.cancelRequested = false;
          break;
        case "PipelineStale":
          this.state = "stale";
          this.error = data.reason;
          break;
        default:
          break;
      }
    }
  }

  phases() {
    return PHASES.filter((p) => this.totals[p]);
  }

  unpublished() {
    return Object.values(this.counts).reduce((n, c) => n + c.planned + c.failed + c.skipped, 0);
  }

  problems() {
    return [...this.entries.values()].filter((e) => e.status === "failed" || e.status === "skipped");
  }
}

export function runScreen(main, pipelineId, { onReplan } = {}) {
  const model = new RunModel();
  const url = path`/pipelines/${pipelineId}/events`;
  const title = h("h1", {}, "Run ", h("code", {}, pipelineId.slice(0, 8)));
  const stateLine = h("p", { class: "state", id: "run-state", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  const bars = h("div", { class: "bars", id: "progress" });
  const message = h("div", { class: "run-message", role: "status" });
  const errors = h("section", { id: "run-errors", "aria-label": "Errors" });
  const finished = h("section", { id: "finished", "aria-label": "Finished entries" });
  const streamInfo = h("p", { class: "muted", id: "stream-info" });
  let status = null;
  let streamState = "connecting";
  let list = null;
  let errorList = null;
  let draws = 0;
  let finishedItems = [];

  replace(
    main,
    h("p", {}, h("a", { href: "#/pipelines" }, "← Pipelines")),
    title,
    stateLine,
    message,
    actions,
    h("h2", {}, "Progress"),
    bars,
    errors,
    h("h2", {}, "Finished entries"),
    finished,
    streamInfo,
    h("p", {}, h("a", { href: `#/pipelines/${encodeURIComponent(pipelineId)}/audit` }, "Audit timeline")),
  );

  const command = async (label, verb) => {
    replace(message);
    try {
      await api("POST", path`/pipelines/${pipelineId}/${verb}`);
      stream.resume();
    } catch (err) {
      showError(err, message);
      if (err instanceof ApiError && err.error === "stale_plan" && status) {
        message.append(
          h("button", { type: "button", id: "replan", onclick: () => onReplan(status.workspace, status.user) }, "Re-plan"),
        );
        message.querySelector("#replan").focus();
      }
    }
  };

  const drawActions = () => {
    const state = model.state || (status && status.state);
    const buttons = [];
    if (state === "planned" || state === "failed")
      buttons.push(h("button", { type: "button", id: "run", onclick: () => command("Run", "run") }, state === "failed" ? "Resume" : "Run"));
    if (state === "planned" || state === "running")
      buttons.push(h("button", { type: "button", id: "cancel", class: "danger", disabled: model.cancelRequested, onclick: () => command("Cancel", "cancel") }, model.cancelRequested ? "Cancelling…" : "Cancel"));
    if (["completed_with_errors", "failed", "cancelled"].includes(state) && model.unpublished())
      buttons.push(h("button", { type: "button", id: "retry", onclick: () => command("Retry", "retry") }, "Retry unpublished entries"));
    if (state === "stale" && status)
      buttons.push(h("button", { type: "button", id: "replan", onclick: () => onReplan(status.workspace, status.user) }, "Re-plan"));
    const focused = document.activeElement && actions.contains(document.activeElement) ? document.activeElement.id : null;
    replace(actions, buttons);
    if (focused) actions.querySelector(`#${focused}`)?.focus();
  };

  const draw = () => {
    const state = model.state || (status && status.state) || "…";
    replace(stateLine, "State: ", h("strong", { dataset: { state } }, state.replaceAll("_", " ")),
      model.phase ? ` · phase ${model.phase}` : "", model.error ? ` · ${model.error}` : "");
    replace(bars, model.phases().map((phase) => {
      const total = model.totals[phase];
      const c = model.counts[phase];
      const done = DONE.reduce((n, s) => n + c[s], 0);
      return h("div", { class: "bar", dataset: { phase, total, done, published: c.published, failed: c.failed, skipped: c.skipped } },
        h("label", { for: `bar-${phase}` }, h("span", { class: "phase" }, phase), ` ${done} / ${total}`,
          c.failed ? h("span", { class: "bad" }, ` · ${c.failed} failed`) : null,
          c.skipped ? h("span", { class: "warn" }, ` · ${c.skipped} skipped`) : null),
        h("progress", { id: `bar-${phase}`, max: total, value: done }, `${done} of ${total}`));
    }));
    const problems = model.problems();
    if (!problems.length) {
      replace(errors);
      errorList = null;
    } else if (!errorList) {
      errorList = pager(problems, problemRow, { size: 20, label: "errors" });
      replace(errors, h("h2", { id: "errors-heading" }, ""), errorList);
    } else {
      errorList.replaceItems(problems);
    }
    if (problems.length) errors.querySelector("#errors-heading").textContent = `Errors (${problems.length})`;
    finishedItems = [...model.finished.values()].reverse();
    if (!list) {
      list = pager(finishedItems, finishedRow, { size: 100, label: "entries" });
      replace(finished, list);
    } else {
      list.replaceItems(finishedItems);
    }
    replace(streamInfo, `Stream: ${streamState} · events ${stream.received} · last id ${stream.lastId}`
      + (stream.reconnects ? ` · reconnected ${stream.reconnects}×` : ""));
    streamInfo.dataset.received = stream.received;
    streamInfo.dataset.lastId = stream.lastId;
    streamInfo.dataset.reconnects = stream.reconnects;
    streamInfo.dataset.draws = ++draws;
    drawActions();
  };
  const redraw = throttled(draw, 250);

  const stream = new ResumableStream(url, {
    onEvents: (events) => {
      model.apply(events);
      if (events.some((e) => TERMINAL.has(e.type))) refreshStatus();
      redraw();
    },
    onStatus: (s, err) => {
      streamState = s;
      if (s === "stopped" && err) showError(err, message);
      redraw();
    },
  });

  async function refreshStatus() {
    try {
      status = await api("GET", path`/pipelines/${pipelineId}`);
      if (!model.state) model.state = status.state;
      // a stream that ended while the pipeline went on (a retry, a resume elsewhere)
      if (stream.closed && ["planned", "running"].includes(status.state)) stream.resume();
      redraw();
    } catch (err) {
      showError(err, message);
    }
  }

  refreshStatus();
  stream.open();
  return () => stream.stop();
}

function problemRow(e) {
  return h("li", { class: "problem", dataset: { path: e.path, status: e.status } },
    h("code", {}, e.path), ` (${e.phase}, ${e.status}) `, h("span", { class: "message" }, e.error || ""));
}

function finishedRow(e) {
  return h("li", { class: `entry ${e.status}`, dataset: { path: e.path, phase: e.phase, status: e.status } },
    h("span", { class: "badge" }, e.status), " ", h("code", {}, e.path), ` ${e.phase}`,
    e.recordId ? h("span", { class: "muted" }, ` → ${e.recordId}`) : null,
    e.error ? h("span", { class: "message" }, ` ${e.error}`) : null);
}
