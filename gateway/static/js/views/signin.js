// Sign in with an API key; the key stays in this tab's sessionStorage only.
import { refreshSession, session } from "../api.js";
import { field, h, messageArea, onSubmit } from "../dom.js";
import { t } from "../i18n.js";

export async function signInView(container, _params, query) {
  const messages = messageArea();
  messages.el.id = "login-error";
  const form = h("form", { id: "login-form", class: "stack", "aria-describedby": "signin-help" },
    field(t("signin.key"), { id: "api-key", type: "password", autocomplete: "off", required: true,
      spellcheck: "false" }),
    h("button", { type: "submit", class: "primary" }, t("signin.submit")));
  const box = h("section", { class: "panel narrow", id: "login" },
    h("h1", {}, t("signin.title")),
    h("p", { id: "signin-help", class: "muted" }, t("signin.help")),
    form, messages.el);
  container.append(box);
  if (session.me) {
    messages.ok(t("signin.already", { name: session.me.name || t("shell.account_n", { id: session.me.account_id }),
      role: t(`role.${session.me.role}`) }));
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
