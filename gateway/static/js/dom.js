// Small DOM helpers. Everything user-visible is set through textContent (never innerHTML), so
// titles, names and disclosure bodies from the API cannot inject markup.
import { describeError } from "./errors.js";
import { getLang, t, tMaybe } from "./i18n.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let uid = 0;
export const newId = (prefix = "f") => `${prefix}-${++uid}`;

/** A labelled form field. `input` attrs go to the <input>/<select>; `hint` adds help text. */
export function field(label, attrs = {}, { hint, options } = {}) {
  const id = attrs.id || newId();
  const hintId = hint ? `${id}-hint` : null;
  const control = options
    ? h("select", { ...attrs, id, "aria-describedby": hintId },
      options.map(([value, text]) => h("option", { value }, text)))
    : h(attrs.type === "textarea" ? "textarea" : "input",
      { ...attrs, type: attrs.type === "textarea" ? null : (attrs.type || "text"), id,
        "aria-describedby": hintId });
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null);
}

// A value as readers take it in: a number or a date with its unit after it ("23 hours",
// "155 股", "10 份债权", "2026-03-01 00:04 UTC"). The units are the ones strings.js writes
// after numbers.
const UNITS = "shares?|notes?|units?|rewards?|days?|hours?|minutes?|months?|"
  + "股|份债权|份收益权|份回报|份经营权|份|天|小时|分钟|个月";
const VALUE = new RegExp(
  `[#+\\-−]?¥?\\d[\\d,.:/%-]*(?: (?:UTC|\\d[\\d:]*))*(?: ?(?:${UNITS})(?![A-Za-z]))?`, "g");

/**
 * `text` with each value in it kept whole: a line may break between values and around them,
 * never inside one ("29 days 23 | hours left" or "closed 2026- | 03-01" read as other values).
 */
export function keepValues(text) {
  const out = [];
  let at = 0;
  for (const m of String(text).matchAll(VALUE)) {
    if (m.index > at) out.push(text.slice(at, m.index));
    out.push(h("span", { class: "nowrap" }, m[0]));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/** "2026-02-01T00:00:00Z" -> "2026-02-01 00:00 UTC" (exchange times are UTC). */
export function when(iso) {
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/** A status badge; the label is the status's name in the current language. */
export function badge(status) {
  return h("span", { class: `badge badge-${status}`, dataset: { status } },
    tMaybe(`status.${status}`, String(status).replaceAll("_", " ")));
}

/** An inline message area for a form or panel: role=alert for errors, status for success. */
export function messageArea() {
  const el = h("div", { class: "message", "aria-live": "polite" });
  el.hidden = true;
  return {
    el,
    error(err) {
      el.hidden = false;
      el.className = "message error";
      el.setAttribute("role", "alert");
      el.replaceChildren(...errorContent(err));
    },
    ok(...content) {
      el.hidden = false;
      el.className = "message ok";
      el.setAttribute("role", "status");
      el.replaceChildren(...content);
    },
    clear() { el.hidden = true; el.replaceChildren(); },
  };
}

/** An error as words the user reads: the code stays in data-code (for support and tests). */
export function errorContent(err) {
  return [h("span", { class: "error-text", dataset: { code: (err && err.code) || "invalid_input" } },
    describeError(err))];
}

/**
 * Wire a form: on submit, run `action(form)` with the submit button disabled; an exception is
 * shown in `messages` (API errors as code + message, parse errors as text).
 */
export function onSubmit(form, messages, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => { b.disabled = true; });
    form.setAttribute("aria-busy", "true");
    messages.clear();
    try {
      await action(form);
    } catch (err) {
      messages.error(err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      form.removeAttribute("aria-busy");
    }
  });
}

/** A button whose click runs an async action, disabled meanwhile, errors to `messages`. */
export function actionButton(label, messages, action, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    messages.clear();
    try { await action(button); } catch (err) { messages.error(err); } finally {
      if (button.isConnected) button.disabled = false;
    }
  });
  return button;
}

/**
 * A table; `cards: true` turns each row into a card, every cell labelled by its column's name,
 * wherever the table does not fit its place: on a phone, and on a tablet or in a narrow side
 * column when its columns are wider than their panel (see `fitCards`). So no figure or action
 * sits off its panel in a sideways-scrolled table. Give it to every table whose rows carry
 * buttons or whose columns may not fit; the few narrow ones without it (two columns of names)
 * stay tables.
 */
// A column's class: `num` right-aligns figures and keeps each on one line; `name` (a project's or
// an issuer's name) keeps room for a few words a line, so a squeezed table breaks into cards
// rather than stack a name one word a line.
const cellClass = (c) => [c.num ? "num" : null, c.name ? "name" : null]
  .filter(Boolean).join(" ") || null;

export function table(columns, rows, { caption, empty, id, cards = false } = {}) {
  if (!rows.length) return h("p", { class: "empty", id }, empty || t("common.nothing_yet"));
  // A card's cell is a grid of two columns, label and value: the value is one element, else a
  // cell of several nodes (a price and its basis, a title and its number) spills its second
  // node into the label's column.
  // Text keeps its values whole ("2026-03-28 00:00 UTC", "12 months") when a cell wraps.
  const text = (c, row) => {
    const value = c.cell(row);
    return typeof value === "string" ? keepValues(value) : value;
  };
  const content = (c, row) => (cards ? h("div", { class: "cell" }, text(c, row)) : text(c, row));
  // A scrolled table must be reachable by keyboard (axe: scrollable-region-focusable).
  const wrap = h("div", { class: `table-wrap${cards ? " as-cards" : ""}`, tabindex: "0",
    role: "region", "aria-label": caption || t("common.table") },
  h("table", { id },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: cellClass(c) }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", { dataset: row.__data || {} },
        columns.map((c) => h("td", { class: cellClass(c), "data-label": c.label },
          content(c, row))))))));
  if (cards) fitObserver.observe(wrap);
  return wrap;
}

// Below 40rem every card table is cards (as the stylesheet's phone rules assumed before); above
// it, a table is cards only when its columns, at their narrowest, are wider than its place.
const PHONE = window.matchMedia("(max-width: 40rem)");

/**
 * Show `wrap`'s table as cards if it cannot fit as a table. Measured with the cards off: the
 * table's narrowest layout (every cell wrapped where it may) against the width it is given.
 * Only a change of width re-measures: the switch itself changes the height, which must not
 * set the observer off again.
 */
function fitCards(wrap) {
  const width = wrap.clientWidth;
  if (!width || wrap.dataset.fitWidth === String(width)) return;
  wrap.dataset.fitWidth = String(width);
  wrap.classList.remove("cards-on");
  const table = wrap.querySelector("table");
  const tooWide = PHONE.matches || (table && table.scrollWidth > width + 1);
  wrap.classList.toggle("cards-on", Boolean(tooWide));
}

const fitObserver = new ResizeObserver((entries) => entries.forEach((e) => fitCards(e.target)));

export function panel(title, ...children) {
  const headingId = newId("h");
  return h("section", { class: "panel", "aria-labelledby": headingId },
    h("h2", { id: headingId }, title), ...children);
}

/**
 * Key/value pairs as a <dl>; each <dd> gets data-field for tests and styling. A value given as
 * text keeps its amounts, dates and quantities whole when it wraps.
 */
export function facts(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs }, pairs.filter(Boolean).map(([key, label, value]) => [
    h("dt", {}, label),
    h("dd", { dataset: { field: key } }, typeof value === "string" ? keepValues(value) : value)]));
}

/** A fresh reference for deposits and withdrawals (they dedupe on it). */
export function newReference(prefix) {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${random[0].toString(36)}${random[1].toString(36)}`;
}

/** A placeholder while something loads: announced politely, replaced by the content. */
export function loading(text) {
  return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }),
    text || t("common.loading"));
}

/**
 * An error in words with, for errors a retry may cure (the network, an overloaded or
 * restarting server), a Retry button that runs `retry`.
 */
export function errorBox(err, retry) {
  const box = h("div", { class: "message error", role: "alert" }, ...errorContent(err));
  if (retry && isRetryable(err)) {
    box.append(" ", h("button", { type: "button", class: "small retry", onclick: retry }, t("common.retry")));
  }
  return box;
}

export function isRetryable(err) {
  return Boolean(err && (err.status === 0 || err.status === 429 || err.status >= 500));
}

/**
 * Fill `box` from `load()` with a loading line first and, if it fails, the error with a
 * Retry button that loads again. Resolves once the content (or the error) is shown.
 */
export async function loadInto(box, load) {
  box.setAttribute("aria-busy", "true");
  box.replaceChildren(loading());
  try {
    const content = await load();
    if (content !== undefined) box.replaceChildren(...[content].flat().filter((x) => x !== null && x !== false));
  } catch (err) {
    box.replaceChildren(errorBox(err, () => loadInto(box, load)));
  } finally {
    box.removeAttribute("aria-busy");
  }
}

/**
 * Ask before an action that cannot be undone. A modal <dialog> (focus is trapped and Escape
 * cancels); resolves true on confirm. `details` are [label, value] pairs shown as facts.
 */
export function confirmDialog({ title, text, details = [], confirm, danger = false }) {
  return new Promise((resolve) => {
    const titleId = newId("dlg");
    const ok = h("button", { type: "button", class: danger ? "danger-solid" : "primary", id: "confirm-ok" }, confirm);
    const cancel = h("button", { type: "button", class: "ghost", id: "confirm-cancel" }, t("common.cancel"));
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": titleId, id: "confirm-dialog" },
      h("h2", { id: titleId }, title),
      text ? h("p", {}, text) : null,
      details.length ? facts(details.map(([label, value], i) => [`d${i}`, label, value])) : null,
      h("div", { class: "button-row end" }, cancel, ok));
    const finish = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** "2026-02-01T00:00:00Z" -> "2026-02-01". */
export const day = (iso) => (iso ? iso.slice(0, 10) : "—");

/** The language's list separator (", " or "、"). */
export const listSep = () => (getLang() === "zh" ? "、" : ", ");
