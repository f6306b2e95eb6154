import { refreshSession, session } from "../api.js";
import { field, h, messageArea, onSubmit } from "../dom.js";

export async function signInView(container, _params, query) {
  const messages = messageArea();
  messages.el.id = "login-error";
  const form = h("form", { id: "login-form", class: "stack", "aria-describedby": "signin-help" },
    field("API key", { id: "api-key", type: "password", autocomplete: "off", required: true,
      spellcheck: "false" }),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  const panel = h("section", { class: "panel narrow", id: "login" },
    h("h1", {}, "Sign in"),
    h("p", { id: "signin-help", class: "muted" },
      "Paste the API key the operator gave you. It is kept only in this browser tab and "
      + "forgotten when the tab closes."),
    form, messages.el);
  container.append(panel);
  if (session.me) {
    messages.ok(`Signed in as ${session.me.name || "account " + session.me.account_id} (${session.me.role}).`);
  }
  onSubmit(form, messages, async () => {
    session.key = form.querySelector("#api-key").value.trim();
    try {
      await refreshSession();
    } catch (err) {
      session.key = null;
      session.me = null;
      window.dispatchEvent(new Event("crowdex:nav"));
      throw err;
    }
    const next = query.get("next");
    const home = { investor: "/account", issuer: "/issuer", operator: "/operator" }[session.me.role];
    const target = `#${next || home || "/projects"}`;
    if (location.hash === target) window.dispatchEvent(new Event("crowdex:session"));
    else location.hash = target;
  });
  form.querySelector("#api-key").focus();
}
