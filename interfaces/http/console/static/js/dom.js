// Building the page from data with textContent only: nothing the API returns
// is ever parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function json(value) {
  if (value === undefined) return "—";
  if (typeof value === "string") return JSON.stringify(value);
  return JSON.stringify(value, null, 0);
}

/** Show an API error's message (and its code) where the user is looking. */
export function showError(err, where) {
  const target = where || document.getElementById("alert");
  const message = err && err.message ? err.message : String(err);
  const code = err && err.error ? ` (${err.error})` : "";
  replace(target, h("p", { class: "error" }, message + code));
}

export function clearAlert() {
  replace(document.getElementById("alert"));
}

/** A pager over `items`: renders one page of them through `row`. */
export function pager(items, row, { size = 50, label = "items", onPage, ordered = true } = {}) {
  const wrap = h("div", { class: "pager" });
  let page = 0;
  let current = items;
  const draw = () => {
    const items = current;
    const pages = Math.max(1, Math.ceil(items.length / size));
    page = Math.min(page, pages - 1);
    const start = page * size;
    const rows = items.slice(start, start + size).map(row);
    const list = ordered ? h("ol", { class: "rows", start: start + 1 }, rows) : h("ul", { class: "rows plain" }, rows);
    const nav = h(
      "div",
      { class: "pager-nav" },
      h("button", { type: "button", disabled: page === 0, onclick: () => { page--; draw(); } }, "Previous"),
      h("span", {}, ` ${label} ${items.length ? start + 1 : 0}–${Math.min(items.length, start + size)} of ${items.length} `),
      h("button", { type: "button", disabled: page >= pages - 1, onclick: () => { page++; draw(); } }, "Next"),
    );
    replace(wrap, items.length > size ? nav : null, list);
    if (onPage) onPage(page);
  };
  draw();
  wrap.replaceItems = (next) => {
    current = next;
    draw();
  };
  return wrap;
}
