// The publishd console: screens routed by the URL's hash, each drawn from the public API.

import { api, ApiError, path, setToken, token } from "./api.js";
import { clearAlert, h, json, pager, replace, showError } from "./dom.js";
import { runScreen } from "./run.js";
import { ResumableStream, throttled } from "./stream.js";

const main = document.getElementById("main");
const plans = new Map(); // pipeline id -> the plan as POST .../plans answered it
let leave = null; // what the current screen must stop (a stream, a poll) when left

const STATES = ["planned", "running", "completed", "completed_with_errors", "failed", "cancelled", "stale"];

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function heading(text, ...rest) {
  const el = h("h1", {}, text, ...rest);
  return el;
}

// --- sign in ---------------------------------------------------------------------------
function signIn(reason) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { type: "password", name: "token", id: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { role: "status" });
  const form = h("form", { class: "card narrow", id: "sign-in" },
    heading("Sign in"),
    h("p", {}, "Paste a publishd token (", h("code", {}, "publishd serve"), " prints a local admin token; ",
      h("code", {}, "publishd tokens create"), " makes others). It is kept for this tab only."),
    field("Token", input),
    h("button", { type: "submit" }, "Sign in"),
    status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    try {
      await api("GET", "/workspaces");
      go("#/");
    } catch (err) {
      setToken(null);
      showError(err, status);
    }
  });
  replace(main, reason ? h("p", { class: "error" }, reason) : null, form);
  input.focus();
}

// --- workspaces --------------------------------------------------------------------------
async function workspaces() {
  const { workspaces: found } = await api("GET", "/workspaces");
  replace(main,
    heading("Workspaces"),
    found.length
      ? h("ul", { class: "cards", id: "workspaces" }, found.map((w) => h("li", {},
        h("a", { href: `#/ws/${encodeURIComponent(w.id)}` }, w.id),
        h("span", { class: "muted" }, ` main v${w.main_version} · ${w.folders.length} folders`),
        w.publishing ? h("span", { class: "warn" }, " · publishing") : null)))
      : h("p", {}, "No workspace yet (", h("code", {}, "POST /workspaces"), ")."));
}

// --- one workspace: its drafts, pulls, pipelines ------------------------------------------
async function workspace(ws) {
  const [info, { drafts }] = await Promise.all([
    api("GET", path`/workspaces/${ws}`),
    api("GET", path`/workspaces/${ws}/drafts`),
  ]);
  const pullBox = h("section", { id: "pull", "aria-label": "Pull" });
  const pullButton = h("button", { type: "button", id: "pull-button", onclick: () => pull(ws, pullBox, pullButton) }, "Pull from the service");
  replace(main,
    h("p", {}, h("a", { href: "#/" }, "← Workspaces")),
    heading("Workspace ", h("code", {}, ws)),
    h("p", {}, `main version ${info.main_version} · folders: ${info.folders.join(", ") || "none"}`,
      info.publishing ? [" · publishing ", h("a", { href: `#/pipelines/${info.publishing}` }, "now")] : null),
    h("h2", {}, "Drafts"),
    drafts.length
      ? h("ul", { id: "drafts" }, drafts.map((d) => h("li", {},
        h("a", { href: `#/ws/${encodeURIComponent(ws)}/draft/${encodeURIComponent(d.user)}` }, d.user),
        ` · ${d.changes} change${d.changes === 1 ? "" : "s"}`)))
      : h("p", {}, "No draft has changes."),
    h("h2", {}, "Pull"),
    h("p", {}, "Bring main up to date with the service."),
    pullButton, pullBox,
    h("h2", {}, "Pipelines"),
    h("p", {}, h("a", { href: `#/pipelines?workspace=${encodeURIComponent(ws)}` }, "This workspace's pipelines")));
}

async function pull(ws, box, button) {
  button.disabled = true;
  replace(box, h("p", {}, "Starting…"));
  try {
    const started = await api("POST", path`/workspaces/${ws}/pulls`);
    const show = (p) => replace(box,
      h("p", { id: "pull-state", dataset: { state: p.state } }, `Pull ${p.pull_id.slice(0, 8)}: `, h("strong", {}, p.state)),
      h("dl", { class: "counts" },
        ["created", "updated", "unchanged", "deleted"].map((k) => [h("dt", {}, k), h("dd", { dataset: { count: k } }, String(p[k] ?? 0))])),
      p.state === "running" ? h("progress", { "aria-label": "Pull in progress" }) : null,
      p.error ? h("p", { class: "error" }, p.error) : null);
    let p = { ...started, created: 0, updated: 0, unchanged: 0, deleted: 0 };
    show(p);
    const deadline = Date.now() + 10 * 60 * 1000;
    while (p.state === "running" && Date.now() < deadline && box.isConnected) {
      await new Promise((r) => setTimeout(r, 400));
      p = await api("GET", path`/pulls/${started.pull_id}`);
      show(p);
    }
  } catch (err) {
    showError(err, box);
  } finally {
    button.disabled = false;
  }
}

// --- a draft's changes, with before -> after ----------------------------------------------
async function draft(ws, user) {
  const { changes, version } = await api("GET", path`/workspaces/${ws}/drafts/${user}/changes`);
  const planBox = h("div", { id: "plan-result" });
  const planButton = h("button", { type: "button", id: "plan-button", onclick: () => makePlan(ws, user, planBox) }, "Plan publish");
  replace(main,
    h("p", {}, h("a", { href: `#/ws/${encodeURIComponent(ws)}` }, `← ${ws}`)),
    heading("Draft of ", h("code", {}, user)),
    h("p", {}, `${changes.length} change${changes.length === 1 ? "" : "s"} · draft version ${version}`),
    h("div", { class: "actions" }, planButton),
    planBox,
    h("h2", {}, "Changes"),
    pager(changes, (c) => changeRow(ws, user, c), { size: 50, label: "changes" }));
}

function changeRow(ws, user, c) {
  const body = h("div", { class: "diff" }, h("p", { class: "muted" }, "Loading…"));
  const details = h("details", { dataset: { path: c.path } },
    h("summary", {}, h("span", { class: `badge ${c.change}` }, c.change), " ", h("code", {}, c.path)), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    const read = (draftUser) => api("GET", path`/workspaces/${ws}/files/${c.path}`, { params: { draft: draftUser } })
      .catch((err) => (err instanceof ApiError && err.status === 404 ? null : Promise.reject(err)));
    try {
      const [before, after] = await Promise.all([
        c.change === "added" ? null : read(undefined),
        c.change === "deleted" ? null : read(user),
      ]);
      replace(body, diffTable(fieldDiff(before, after)));
    } catch (err) {
      showError(err, body);
    }
  });
  return h("li", {}, details);
}

function fieldDiff(before, after) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  return keys
    .filter((k) => JSON.stringify((before || {})[k]) !== JSON.stringify((after || {})[k]))
    .map((k) => ({ field: k, before: before ? before[k] : undefined, after: after ? after[k] : undefined }));
}

function diffTable(diff) {
  if (!diff.length) return h("p", { class: "muted" }, "No field changes.");
  return h("table", { class: "diff-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Before"), h("th", { scope: "col" }, ""), h("th", { scope: "col" }, "After"))),
    h("tbody", {}, diff.map((d) => h("tr", { dataset: { field: d.field } },
      h("th", { scope: "row" }, d.field), h("td", { class: "before" }, json(d.before)), h("td", { "aria-hidden": "true" }, "→"), h("td", { class: "after" }, json(d.after))))));
}

// --- plan ----------------------------------------------------------------------------------
async function makePlan(ws, user, box) {
  replace(box, h("p", {}, "Planning…"));
  try {
    const plan = await api("POST", path`/workspaces/${ws}/drafts/${user}/plans`, { body: {} });
    plans.set(plan.pipeline_id, plan);
    go(`#/plans/${plan.pipeline_id}`);
  } catch (err) {
    showError(err, box);
    if (err instanceof ApiError && err.error === "dangling_references" && Array.isArray(err.details)) {
      box.append(h("table", { id: "dangling", class: "diff-table" },
        h("caption", {}, "References to files that will not exist"),
        h("thead", {}, h("tr", {}, ["Source", "Field", "Target"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, err.details.map((d) => h("tr", {}, h("td", {}, h("code", {}, d.source)), h("td", {}, d.field), h("td", {}, h("code", {}, d.target)))))));
    }
  }
}

async function replan(ws, user) {
  clearAlert();
  replace(main, heading("Re-planning…"));
  try {
    const plan = await api("POST", path`/workspaces/${ws}/drafts/${user}/plans`, { body: {} });
    plans.set(plan.pipeline_id, plan);
    go(`#/plans/${plan.pipeline_id}`);
  } catch (err) {
    showError(err, main);
  }
}

function planScreen(id) {
  const plan = plans.get(id);
  if (!plan) {
    // a plan's details are in its answer only; its run screen still shows its phases
    go(`#/pipelines/${id}`);
    return;
  }
  const message = h("div", { id: "plan-message", role: "status" });
  const run = async () => {
    replace(message);
    try {
      await api("POST", path`/pipelines/${id}/run`);
      go(`#/pipelines/${id}`);
    } catch (err) {
      showError(err, message);
      if (err instanceof ApiError && err.error === "stale_plan") {
        const again = h("button", { type: "button", id: "replan", onclick: () => replan(plan.workspace, plan.user) }, "Re-plan");
        message.append(h("p", {}, "The draft or main changed since this plan was made. "), again);
        again.focus();
      }
    }
  };
  replace(main,
    h("p", {}, h("a", { href: `#/ws/${encodeURIComponent(plan.workspace)}/draft/${encodeURIComponent(plan.user)}` }, `← Draft of ${plan.user}`)),
    heading("Plan ", h("code", {}, id.slice(0, 8))),
    h("p", {}, `${plan.entries.length} entries · `, h("strong", { id: "estimated-calls" }, String(plan.estimated_calls)), " estimated calls to the service"),
    h("table", { id: "phases", class: "phases" },
      h("thead", {}, h("tr", {}, ["Phase", "Entries", "Calls"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, plan.phases.map((p) => h("tr", { dataset: { phase: p.phase, entries: p.entries, calls: p.calls } },
        h("th", { scope: "row" }, p.phase), h("td", {}, String(p.entries)), h("td", {}, String(p.calls)))))),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "run", onclick: run }, "Run publish"),
      h("a", { href: `#/pipelines/${id}`, class: "button secondary" }, "Watch")),
    message,
    h("h2", {}, "Entries"),
    pager(plan.entries, planEntry, { size: 50, label: "entries" }));
  main.querySelector("#run").focus();
}

function planEntry(e) {
  return h("li", { class: "plan-entry", dataset: { path: e.path, phase: e.phase } },
    h("details", {},
      h("summary", {}, h("span", { class: "badge" }, e.phase), " ", h("code", {}, e.path),
        e.deferred_fields.length ? h("span", { class: "warn" }, ` · deferred: ${e.deferred_fields.join(", ")}`) : null),
      e.deferred_fields.length ? h("p", { class: "muted" }, `Sent later, in backfill: ${e.deferred_fields.join(", ")}`) : null,
      diffTable(e.diff || [])));
}

// --- pipelines list --------------------------------------------------------------------------
async function pipelines(params) {
  const form = h("form", { class: "filters", id: "filters" },
    field("Workspace", h("input", { name: "workspace", value: params.get("workspace") || "" })),
    field("User", h("input", { name: "user", value: params.get("user") || "" })),
    field("State", h("select", { name: "state" }, h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s, selected: params.get("state") === s }, s.replaceAll("_", " "))))),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    go(`#/pipelines?${q}`);
  });
  const list = h("div", { id: "pipelines" });
  replace(main, heading("Pipelines"), form, list);
  const q = Object.fromEntries(["workspace", "user", "state", "before"].map((k) => [k, params.get(k)]));
  const { pipelines: found } = await api("GET", "/pipelines", { params: { ...q, limit: 50 } });
  replace(list,
    found.length ? h("table", { class: "pipelines" },
      h("thead", {}, h("tr", {}, ["Pipeline", "Workspace", "User", "State", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, found.map((p) => h("tr", { dataset: { pipeline: p.pipeline_id, state: p.state } },
        h("td", {}, h("a", { href: `#/pipelines/${p.pipeline_id}` }, p.pipeline_id.slice(0, 8))),
        h("td", {}, p.workspace), h("td", {}, p.user), h("td", {}, h("span", { class: `state ${p.state}` }, p.state.replaceAll("_", " "))),
        h("td", {}, p.created_at ? new Date(p.created_at).toLocaleString() : "")))))
      : h("p", {}, "No pipeline matches."),
    found.length === 50 ? h("p", {}, h("a", { href: `#/pipelines?${new URLSearchParams({ ...Object.fromEntries(Object.entries(q).filter(([, v]) => v)), before: found[found.length - 1].pipeline_id })}` }, "Older →")) : null);
}

// --- audit timeline ---------------------------------------------------------------------------
function audit(id) {
  const events = [];
  const list = h("div", { id: "timeline" });
  const at = h("section", { id: "state-at", "aria-live": "polite", "aria-label": "State at the chosen event" });
  const info = h("p", { class: "muted", id: "audit-info" });
  const showAt = async (event) => {
    const n = event.id;
    replace(at, h("p", {}, `Loading the state after event ${n}…`));
    try {
      const s = await api("GET", path`/pipelines/${id}/versions/${n}`);
      const { pipeline_id: _p, type: _t, ...fields } = event.data;
      const fieldsBox = h("details", { class: "event-fields" }, h("summary", {}, "The event's fields"),
        h("pre", { class: "event-data", tabindex: "0" }, JSON.stringify(fields, null, 2)));
      replace(at, h("h2", {}, `State after event ${n}`),
        h("p", {}, h("strong", {}, event.type), h("span", { class: "muted" }, event.data.timestamp ? ` at ${new Date(event.data.timestamp).toLocaleString()}` : "")),
        h("p", { dataset: { version: s.version, state: s.state } }, "State: ", h("strong", { id: "state-at-state" }, s.state), s.phase ? ` · phase ${s.phase}` : ""),
        h("table", { class: "phases" },
          h("thead", {}, h("tr", {}, ["Phase", "Planned", "Published", "Failed", "Skipped"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, Object.entries(s.counts).map(([phase, c]) => h("tr", { dataset: { phase } },
            h("th", { scope: "row" }, phase), ["planned", "published", "failed", "skipped"].map((k) => h("td", { dataset: { count: k } }, String(c[k]))))))),
        s.errors.length ? h("ul", {}, s.errors.map((e) => h("li", {}, h("code", {}, e.path || ""), ` ${e.message}`))) : null,
        fieldsBox);
    } catch (err) {
      showError(err, at);
    }
  };
  let chosen = null;
  const row = (e) => h("li", { class: "event", dataset: { id: e.id, type: e.type }, "aria-current": e.id === chosen ? "true" : null },
    h("span", { class: "muted" }, `#${e.id} `), h("strong", {}, e.type),
    e.data.path ? [" ", h("code", {}, e.data.path)] : null,
    e.data.phase ? ` ${e.data.phase}` : "",
    h("span", { class: "muted" }, e.data.timestamp ? ` ${new Date(e.data.timestamp).toLocaleTimeString()}` : ""),
    " ", h("button", { type: "button", class: "small", "aria-label": `State after event ${e.id}`, onclick: () => choose(e) }, "State here"));
  const choose = (e) => {
    chosen = e.id;
    for (const li of list.querySelectorAll("li.event")) {
      if (Number(li.dataset.id) === e.id) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
    showAt(e);
  };
  const timeline = pager(events, row, { size: 100, label: "events", ordered: false });
  replace(list, timeline);
  const draw = throttled(() => {
    timeline.replaceItems(events);
    replace(info, `${events.length} events`);
  });
  const stream = new ResumableStream(path`/pipelines/${id}/events`, {
    onEvents: (batch) => {
      events.push(...batch);
      draw();
    },
  });
  replace(main,
    h("p", {}, h("a", { href: `#/pipelines/${id}` }, "← Run")),
    heading("Audit timeline ", h("code", {}, id.slice(0, 8))),
    h("p", {}, "Every event of the pipeline, in order; pick one to see the pipeline as it was then."),
    info, h("div", { class: "audit" }, list, at));
  stream.open();
  return () => stream.stop();
}

// --- routing -----------------------------------------------------------------------------------
async function route() {
  if (leave) {
    leave();
    leave = null;
  }
  clearAlert();
  if (!token()) return signIn();
  document.getElementById("nav").hidden = false;
  const [hashPath, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = hashPath.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  try {
    if (parts.length === 0) await workspaces();
    else if (parts[0] === "ws" && parts.length === 2) await workspace(parts[1]);
    else if (parts[0] === "ws" && parts[2] === "draft" && parts.length === 4) await draft(parts[1], parts[3]);
    else if (parts[0] === "plans" && parts.length === 2) planScreen(parts[1]);
    else if (parts[0] === "pipelines" && parts.length === 1) await pipelines(params);
    else if (parts[0] === "pipelines" && parts.length === 2) leave = runScreen(main, parts[1], { onReplan: replan });
    else if (parts[0] === "pipelines" && parts[2] === "audit") leave = audit(parts[1]);
    else replace(main, heading("Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the workspaces")));
    // a new screen: keyboard and screen-reader users start at its top, unless it chose a focus
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setToken(null);
      return signIn(err.message);
    }
    showError(err);
    replace(main, heading("Something went wrong"), h("p", { class: "error" }, err.message));
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  setToken(null);
  go("#/");
});
window.addEventListener("hashchange", route);
route();
