// Small DOM helpers. Everything user-visible is set through textContent (never innerHTML), so
// titles, names and disclosure bodies from the API cannot inject markup.

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

/** "2026-02-01T00:00:00Z" -> "2026-02-01 00:00 UTC" (exchange times are UTC). */
export function when(iso) {
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

export const STATUS_LABEL = {
  pending_review: "Pending review", rejected: "Rejected", open: "Open", succeeded: "Succeeded",
  failed: "Failed", trading: "Trading", accepted: "Accepted", cancelled: "Cancelled",
  allocated: "Allocated", refunded: "Refunded", scheduled: "Scheduled", paid: "Paid",
  late: "Late", default: "Default", committed: "Committed",
};

export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, STATUS_LABEL[status] || status);
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

export function errorContent(err) {
  if (err && err.code) {
    return [h("code", { class: "error-code" }, err.code), " ", err.detail || err.message];
  }
  return [String((err && err.message) || err)];
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

export function table(columns, rows, { caption, empty = "Nothing yet.", id } = {}) {
  if (!rows.length) return h("p", { class: "empty", id }, empty);
  return h("div", { class: "table-wrap" },
    h("table", { id },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", { dataset: row.__data || {} },
        columns.map((c) => h("td", { class: c.num ? "num" : null, "data-label": c.label }, c.cell(row))))))));
}

export function panel(title, ...children) {
  const headingId = newId("h");
  return h("section", { class: "panel", "aria-labelledby": headingId },
    h("h2", { id: headingId }, title), ...children);
}

/** Key/value pairs as a <dl>; each <dd> gets data-field for tests and styling. */
export function facts(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs }, pairs.filter(Boolean).map(([key, label, value]) => [
    h("dt", {}, label), h("dd", { dataset: { field: key } }, value)]));
}

/** A fresh reference for deposits and withdrawals (they dedupe on it). */
export function newReference(prefix) {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${random[0].toString(36)}${random[1].toString(36)}`;
}
