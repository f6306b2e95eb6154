// crowdex web UI: a hash-routed single page, plain ES modules, no build step.
import { api, refreshSession, session } from "./js/api.js";
import { h, errorContent } from "./js/dom.js";
import { projectList, projectDetail } from "./js/views/projects.js";
import { accountView } from "./js/views/account.js";
import { issuerView } from "./js/views/issuer.js";
import { operatorView } from "./js/views/operator.js";
import { integrityView } from "./js/views/integrity.js";
import { marketsView } from "./js/views/markets.js";
import { signInView } from "./js/views/signin.js";

// The main navigation. `roles` limits a tab to signed-in accounts of those roles (null: all).
// A secondary-markets tab slots in here as one more entry ({ path: "/markets", ... }) with its
// route below; the layout needs no other change.
const NAV = [
  { path: "/projects", label: "Projects", roles: null },
  { path: "/markets", label: "Markets", roles: null },
  { path: "/integrity", label: "Integrity list", roles: null },
  { path: "/account", label: "My account", roles: ["investor", "issuer"] },
  { path: "/issuer", label: "Issuer desk", roles: ["issuer"] },
  { path: "/operator", label: "Operator desk", roles: ["operator"] },
];

// [pattern, view, roles]; a view is async (container, params, query) -> optional cleanup fn.
const ROUTES = [
  [/^\/(?:projects)?$/, projectList, null],
  [/^\/projects\/(\d+)$/, projectDetail, null],
  [/^\/markets(?:\/(\d+))?$/, marketsView, null],
  [/^\/integrity$/, integrityView, null],
  [/^\/signin$/, signInView, null],
  [/^\/account$/, accountView, ["investor", "issuer"]],
  [/^\/issuer$/, issuerView, ["issuer"]],
  [/^\/operator$/, operatorView, ["operator"]],
];

const view = document.getElementById("view");
let cleanup = null;
let renderToken = 0;

function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/projects";
  const [path, queryString = ""] = hash.split("?");
  return { path, query: new URLSearchParams(queryString) };
}

function renderNav() {
  const { path } = currentRoute();
  const role = session.me && session.me.role;
  const links = NAV.filter((item) => !item.roles || (role && item.roles.includes(role)))
    .map((item) => {
      const active = path === item.path || (item.path === "/projects" && path.startsWith("/projects"))
        || (item.path === "/projects" && path === "/");
      return h("a", { href: `#${item.path}`, class: active ? "active" : null,
        "aria-current": active ? "page" : null }, item.label);
    });
  document.getElementById("nav").replaceChildren(...links);
  const who = document.getElementById("who");
  const signedIn = Boolean(session.me);
  who.hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  document.getElementById("signin-link").hidden = signedIn;
  if (signedIn) {
    who.replaceChildren(h("span", { class: "who-name" }, session.me.name || `Account ${session.me.account_id}`),
      h("span", { class: `role role-${session.me.role}` }, `${session.me.role} #${session.me.account_id}`));
  }
}

export async function route() {
  const token = ++renderToken;
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } cleanup = null; }
  renderNav();
  const { path, query } = currentRoute();
  const match = ROUTES.map(([re, fn, roles]) => [re.exec(path), fn, roles]).find(([m]) => m);
  view.replaceChildren();
  if (!match) {
    view.append(h("section", { class: "panel" }, h("h1", {}, "Not found"),
      h("p", {}, "No such page. ", h("a", { href: "#/projects" }, "Browse projects"))));
    return;
  }
  const [m, fn, roles] = match;
  if (roles && !(session.me && roles.includes(session.me.role))) {
    view.append(h("section", { class: "panel" }, h("h1", {}, "Sign in needed"),
      h("p", {}, `This page is for ${roles.join(" and ")} accounts. `,
        h("a", { href: `#/signin?next=${encodeURIComponent(path)}` }, "Sign in with your API key"))));
    return;
  }
  try {
    const result = await fn(view, m.slice(1), query);
    if (token !== renderToken) { if (typeof result === "function") result(); return; }
    cleanup = typeof result === "function" ? result : null;
  } catch (err) {
    if (token !== renderToken) return;
    view.replaceChildren(h("section", { class: "panel" }, h("h1", {}, "Something went wrong"),
      h("p", { class: "message error", role: "alert" }, ...errorContent(err))));
  }
  // Move focus to the new page's heading for keyboard and screen-reader users (not on first load).
  const active = document.activeElement;
  if (active && active !== document.body && !view.contains(active)) {
    const heading = view.querySelector("h1");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
  }
}

async function showHealth() {
  const pill = document.getElementById("health");
  try {
    await api("GET", "/healthz", undefined, { anonymous: true });
    pill.textContent = "online"; pill.className = "pill ok";
  } catch {
    pill.textContent = "offline"; pill.className = "pill bad";
  }
}

document.getElementById("logout").addEventListener("click", () => {
  session.key = null;
  session.me = null;
  location.hash = "#/projects";
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("crowdex:session", () => route());
window.addEventListener("crowdex:nav", () => renderNav());

showHealth();
setInterval(showHealth, 15_000);
(async () => {
  if (session.key) { try { await refreshSession(); } catch { /* shown as signed out */ } }
  route();
})();
