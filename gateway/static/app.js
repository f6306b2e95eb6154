// crowdex web UI: a hash-routed single page, plain ES modules, no build step. This module is the
// shell: the header (language, health, exchange time, the signed-in account and its cash, kept
// fresh after every action), the navigation and the router with its loading and retry states.
import { get, refreshSession, session } from "./js/api.js";
import { errorBox, h, loading } from "./js/dom.js";
import { LANGS, applyStatic, getLang, initLang, setLang, t } from "./js/i18n.js";
import { yuan } from "./js/money.js";
import { loadVenue, venue } from "./js/venue.js";
import { projectList, projectDetail } from "./js/views/projects.js";
import { accountView } from "./js/views/account.js";
import { issuerView } from "./js/views/issuer.js";
import { operatorView } from "./js/views/operator.js";
import { integrityView } from "./js/views/integrity.js";
import { marketsView } from "./js/views/markets.js";
import { signInView } from "./js/views/signin.js";

// The main navigation. `roles` limits a tab to signed-in accounts of those roles (null: all).
const NAV = [
  { path: "/projects", label: "nav.projects", roles: null },
  { path: "/markets", label: "nav.markets", roles: null },
  { path: "/integrity", label: "nav.integrity", roles: null },
  { path: "/account", label: "nav.account", roles: ["investor", "issuer"] },
  { path: "/issuer", label: "nav.issuer", roles: ["issuer"] },
  { path: "/operator", label: "nav.operator", roles: ["operator"] },
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
      const active = path === item.path || (item.path === "/projects" && (path.startsWith("/projects") || path === "/"))
        || (item.path === "/markets" && path.startsWith("/markets"));
      return h("a", { href: `#${item.path}`, class: active ? "active" : null,
        "aria-current": active ? "page" : null, dataset: { nav: item.path.slice(1) } }, t(item.label));
    });
  document.getElementById("nav").replaceChildren(...links);
  renderHeader();
}

/** The header's account, cash and exchange time, from session.me and the venue. */
function renderHeader() {
  const who = document.getElementById("who");
  const me = session.me;
  const signedIn = Boolean(me);
  who.hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  document.getElementById("signin-link").hidden = signedIn;
  if (signedIn) {
    who.replaceChildren(h("span", { class: "who-name" }, me.name || t("shell.account_n", { id: me.account_id })),
      h("span", { class: `role role-${me.role}` }, `${t(`role.${me.role}`)} #${me.account_id}`));
  }
  const cash = document.getElementById("header-cash");
  cash.hidden = !(signedIn && me.role !== "operator");
  if (!cash.hidden) cash.textContent = t("shell.cash", { cash: yuan(me.cash_available) });
  const time = document.getElementById("exchange-time");
  time.hidden = venue.nowMs === null || venue.clock !== "manual";
  if (!time.hidden) time.textContent = t("shell.exchange_time", { time: new Date(venue.nowMs).toISOString().slice(0, 16).replace("T", " ") });
}

export async function route() {
  const token = ++renderToken;
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } cleanup = null; }
  renderNav();
  const { path, query } = currentRoute();
  const match = ROUTES.map(([re, fn, roles]) => [re.exec(path), fn, roles]).find(([m]) => m);
  view.replaceChildren();
  if (!match) {
    view.append(h("section", { class: "panel" }, h("h1", {}, t("shell.not_found")),
      h("p", {}, t("shell.no_such_page"), " ", h("a", { href: "#/projects" }, t("shell.browse_projects")))));
    return;
  }
  const [m, fn, roles] = match;
  if (roles && !(session.me && roles.includes(session.me.role))) {
    view.append(h("section", { class: "panel" }, h("h1", {}, t("shell.sign_in_needed")),
      h("p", {}, t("shell.page_for", { roles: roles.map((r) => t(`role.${r}`)).join(t("shell.and")) }), " ",
        h("a", { href: `#/signin?next=${encodeURIComponent(path)}` }, t("shell.sign_in_with_key")))));
    return;
  }
  const spinner = loading();
  spinner.id = "page-loading";
  view.append(spinner);
  view.setAttribute("aria-busy", "true");
  try {
    const result = await fn(view, m.slice(1), query);
    if (token !== renderToken) { if (typeof result === "function") result(); return; }
    cleanup = typeof result === "function" ? result : null;
  } catch (err) {
    if (token !== renderToken) return;
    view.replaceChildren(h("section", { class: "panel", id: "page-error" }, h("h1", {}, t("shell.went_wrong")),
      errorBox(err, () => route())));
  } finally {
    if (token === renderToken) { spinner.remove(); view.removeAttribute("aria-busy"); }
  }
  // Move focus to the new page's heading for keyboard and screen-reader users (not on first load).
  const active = document.activeElement;
  if (active && active !== document.body && !view.contains(active) && !active.closest(".topbar")) {
    const heading = view.querySelector("h1");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
  }
}

let healthy = null;
async function showHealth() {
  const pill = document.getElementById("health");
  try {
    await get("/healthz", { anonymous: true });
    healthy = true;
  } catch {
    healthy = false;
  }
  pill.textContent = t(healthy ? "shell.online" : "shell.offline");
  pill.className = `pill ${healthy ? "ok" : "bad"}`;
}

// After any change (a subscription, an order, a deposit, the clock) the header re-reads the
// account and the exchange time; several changes in a burst cost one refresh.
let headerTimer = null;
function refreshHeaderSoon() {
  clearTimeout(headerTimer);
  headerTimer = setTimeout(async () => {
    await Promise.allSettled([session.key ? refreshSession() : null, loadVenue()]);
    renderHeader();
  }, 150);
}

function setupLanguage() {
  const select = document.getElementById("lang-select");
  select.replaceChildren(...LANGS.map(([value, label]) => h("option", { value, lang: value === "zh" ? "zh-CN" : "en" }, label)));
  select.value = getLang();
  select.addEventListener("change", () => setLang(select.value));
  window.addEventListener("crowdex:lang", () => {
    select.value = getLang();
    applyStatic();
    if (healthy !== null) document.getElementById("health").textContent = t(healthy ? "shell.online" : "shell.offline");
    route();
  });
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
window.addEventListener("crowdex:changed", refreshHeaderSoon);

(async () => {
  let profile = null;
  try { profile = (await loadVenue()).profile; } catch { /* the pages say what failed */ }
  initLang(profile);
  setupLanguage();
  applyStatic();
  showHealth();
  setInterval(showHealth, 15_000);
  if (session.key) { try { await refreshSession(); } catch { /* shown as signed out */ } }
  route();
})();
