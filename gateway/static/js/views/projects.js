// The project list and a project's page: funding figures that update live over the WebSocket,
// the terms, the debt schedule, distributions and disclosures, and the panel of whoever looks
// (sign in, subscribe, the issuer's tools, the operator's review).
import { LiveChannel, get, session } from "../api.js";
import { badge, facts, field, h, loadInto, panel, table, when } from "../dom.js";
import { getLang, t } from "../i18n.js";
import { count, yuan } from "../money.js";
import {
  BOARD_KEYS, CLOSED, boardLabel, headline, issuerName, marketLink, peopleLabel, peopleTitle, progressBar,
  termsFacts, timelineEl, units,
} from "./funding.js";
import { issuerPanel, operatorPanel, ownAllocations, subscribePanel } from "./project_panels.js";

export { boardLabel };
export const BOARDS = () => BOARD_KEYS.map((b) => [b, boardLabel(b)]);
const STATUSES = ["open", "pending_review", "succeeded", "trading", "failed", "rejected"];

export function projectCard(p) {
  return h("article", { class: "card", dataset: { projectId: p.project_id, status: p.status } },
    h("div", { class: "card-top" },
      h("span", { class: `chip chip-${p.board}` }, boardLabel(p.board)), badge(p.status)),
    h("h3", {}, h("a", { href: `#/projects/${p.project_id}` }, p.title)),
    h("p", { class: "muted small issuer-line" }, t("funding.by", { issuer: issuerName(p) })),
    h("p", { class: "muted small" }, headline(p)),
    progressBar(p),
    h("div", { class: "card-stats" },
      h("span", {}, h("strong", {}, yuan(p.raised)), " ", t("funding.raised_word")),
      h("span", {}, h("strong", {}, count(p.investor_count)), " ", peopleLabel(p.board)),
      timelineEl(p)),
    marketLink(p));
}

// ---- the list --------------------------------------------------------------------------------

let refocusTab = false; // keyboard users keep focus on the board tabs across the re-render

function boardTabs(board, go) {
  const tabs = [["", t("list.all_boards")], ...BOARDS()].map(([value, label]) => h("button", {
    type: "button", role: "tab", id: `tab-${value || "all"}`, "aria-selected": String(value === board),
    "aria-controls": "project-grid", tabindex: value === board ? "0" : "-1",
    dataset: { board: value }, onclick: () => go(value),
  }, label));
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": t("list.board") }, tabs);
  tablist.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const j = { ArrowRight: (i + 1) % tabs.length, ArrowLeft: (i - 1 + tabs.length) % tabs.length,
      Home: 0, End: tabs.length - 1 }[event.key];
    if (j === undefined) return;
    event.preventDefault();
    refocusTab = true;
    tabs[j].click();
  });
  return { tabs, tablist };
}

export async function projectList(container, _params, query) {
  const board = query.get("board") || "";
  const status = query.get("status") || "";
  const go = (b, s) => {
    const q = new URLSearchParams();
    if (b) q.set("board", b);
    if (s) q.set("status", s);
    location.hash = `#/projects${q.toString() ? `?${q}` : ""}`;
  };
  const { tabs, tablist } = boardTabs(board, (b) => go(b, status));
  const statusSelect = field(t("list.status"), { id: "status-filter", name: "status" },
    { options: [["", t("list.any_status")], ...STATUSES.map((s) => [s, t(`status.${s}`)])] });
  statusSelect.querySelector("select").value = status;
  statusSelect.querySelector("select").addEventListener("change", (e) => go(board, e.target.value));

  const grid = h("div", { id: "project-grid", class: "grid", role: "tabpanel",
    "aria-labelledby": `tab-${board || "all"}` });
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, t("list.title")), h("p", { class: "muted" }, t("list.lead"))),
    h("div", { class: "toolbar" }, tablist, statusSelect),
    grid);

  const params = new URLSearchParams();
  if (board) params.set("board", board);
  if (status) params.set("status", status);
  await loadInto(grid, async () => {
    const projects = await get(`/v1/projects${params.toString() ? `?${params}` : ""}`);
    // Newest first: a freshly approved offering is what people come to look at.
    projects.sort((a, b) => b.project_id - a.project_id);
    return projects.length ? projects.map(projectCard) : h("p", { class: "empty" }, t("list.none"));
  });
  if (refocusTab) {
    refocusTab = false;
    const selected = tabs.find((tab) => tab.getAttribute("aria-selected") === "true");
    if (selected) selected.focus();
  }
}

// ---- the detail page -------------------------------------------------------------------------

/** "2026-10" as a reader expects it: "Oct 2026", "2026年10月" (no time zone involved). */
function monthText(month) {
  const [year, number] = month.split("-").map(Number);
  if (getLang() === "zh") return `${year}年${number}月`;
  const names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  return `${names[number - 1]} ${year}`;
}
function tierTable(p) {
  return table([
    { label: t("tiers.reward"), cell: (x) => h("span", {}, h("strong", {}, String(x.tier_id)),
      x.reward ? h("span", { class: "tier-reward" }, ` — ${x.reward}`) : null) },
    { label: t("tiers.delivery"), cell: (x) => (x.estimated_delivery ? monthText(x.estimated_delivery) : t("tiers.no_delivery")) },
    { label: t("tiers.price"), num: true, cell: (x) => yuan(x.price) },
    { label: t("tiers.quantity"), num: true, cell: (x) => (x.quantity === null ? t("tiers.unlimited") : count(x.quantity)) },
    { label: t("tiers.backed"), num: true, cell: (x) => count(x.sold) },
    { label: t("tiers.remaining"), num: true, cell: (x) => (x.remaining === null ? t("tiers.unlimited")
      : x.remaining === 0 ? h("span", { class: "badge badge-failed" }, t("tiers.sold_out")) : count(x.remaining)) },
  ], (p.tiers || []).map((x) => ({ ...x, __data: { tier: String(x.tier_id) } })),
  { id: "tier-table", cards: true, caption: t("tiers.title") });
}

function figuresOf(p) {
  return [progressBar(p), facts([
    ["raised", t(p.board === "product" ? "funding.pledged" : "funding.raised"), yuan(p.raised)],
    ["subscribed", t(p.board === "product" ? "funding.rewards_pledged" : "funding.subscribed"), units(p.board, p.subscribed_quantity)],
    ["investors", peopleTitle(p.board), count(p.investor_count)],
    p.board === "product" && p.held_amount ? ["held", t("funding.held"), yuan(p.held_amount)] : null,
    ["timeline", t("funding.when"), timelineEl(p)],
  ], { class: "facts big" })];
}

function scheduleTable(rows) {
  return table([
    { label: "#", cell: (r) => String(r.number) },
    { label: t("schedule.due"), cell: (r) => when(r.due).slice(0, 10) },
    { label: t("schedule.principal"), num: true, cell: (r) => yuan(r.principal) },
    { label: t("schedule.interest"), num: true, cell: (r) => yuan(r.interest) },
    { label: t("schedule.amount"), num: true, cell: (r) => yuan(r.amount) },
    { label: t("schedule.paid"), num: true, cell: (r) => yuan(r.paid) },
    { label: t("schedule.status"), cell: (r) => badge(r.status) },
  ], rows, { id: "schedule-table", cards: true, empty: t("schedule.empty"),
    caption: t("schedule.title") });
}

/** Operating rights: each month's revenue, what it owed and paid, then the buy-back. */
function monthsTable(rows) {
  const shown = (v) => (v === null || v === undefined ? "—" : yuan(v));
  return table([
    { label: t("months.month"), cell: (r) => (r.buyback ? t("months.buyback") : r.month) },
    { label: t("schedule.due"), cell: (r) => when(r.due).slice(0, 10) },
    { label: t("months.revenue"), num: true, cell: (r) => shown(r.revenue) },
    { label: t("months.owed"), num: true, cell: (r) => shown(r.owed) },
    { label: t("schedule.paid"), num: true, cell: (r) => yuan(r.paid) },
    { label: t("schedule.status"), cell: (r) => badge(r.status) },
  ], rows.map((r) => ({ ...r, __data: { month: r.buyback ? "buyback" : r.month } })),
  { id: "months", cards: true, empty: t("months.empty"), caption: t("months.title") });
}

function distributionTable(rows) {
  return table([
    { label: t("dist.time"), cell: (r) => when(r.time) },
    { label: t("dist.amount"), num: true, cell: (r) => yuan(r.amount) },
    { label: t("dist.fee"), num: true, cell: (r) => yuan(r.fee) },
    { label: t("dist.status"), cell: (r) => badge(r.status) },
  ], rows, { cards: true, empty: t("dist.empty"), caption: t("dist.title") });
}

function disclosureList(rows) {
  return rows.length
    ? h("ol", { class: "disclosures", reversed: true }, rows.slice().reverse().map((d) => h("li", {},
      h("div", { class: "disclosure-head" }, h("strong", {}, d.title), h("span", { class: "muted small" }, when(d.time))),
      h("p", { class: "pre" }, d.body))))
    : h("p", { class: "empty" }, t("disclosures.empty"));
}

/** The main column's panels below the figures; their loads run in parallel. */
function extraPanels(mainCol, project) {
  const id = project.project_id;
  const loads = [];
  if (project.board === "debt") {
    const box = h("div", { id: "schedule" });
    mainCol.append(panel(t("schedule.title"), box));
    loads.push(loadInto(box, async () => scheduleTable(await get(`/v1/projects/${id}/schedule`))));
  }
  if (project.board === "operating_rights") {
    const box = h("div", { id: "schedule" });
    mainCol.append(panel(t("months.title"), box));
    loads.push(loadInto(box, async () => monthsTable(await get(`/v1/projects/${id}/schedule`))));
  }
  if (["debt", "ip", "operating_rights"].includes(project.board)) {
    const box = h("div", { id: "distributions" });
    const title = { debt: "dist.repayments", ip: "dist.royalties" }[project.board] || "dist.revenue_paid";
    mainCol.append(panel(t(title), box));
    loads.push(loadInto(box, async () => distributionTable(await get(`/v1/projects/${id}/distributions`))));
  }
  const disclosuresBox = h("div", { id: "disclosures" });
  const loadDisclosures = () => loadInto(disclosuresBox, async () => disclosureList(await get(`/v1/projects/${id}/disclosures`)));
  mainCol.append(panel(t("disclosures.title"), disclosuresBox));
  loads.push(loadDisclosures());
  return { loads, loadDisclosures };
}

function detailHead(project, statusBox, liveDot) {
  return [
    h("nav", { class: "crumbs", "aria-label": t("detail.breadcrumb") },
      h("a", { href: `#/projects?board=${project.board}` }, t("detail.board_projects", { board: boardLabel(project.board) })),
      " / ", h("span", { "aria-current": "page" }, `#${project.project_id}`)),
    h("div", { class: "page-head" },
      h("div", { class: "title-row" },
        h("span", { class: `chip chip-${project.board}` }, boardLabel(project.board)), statusBox, liveDot),
      h("h1", { id: "project-title" }, project.title),
      h("p", { class: "muted issuer-line", id: "project-issuer" }, t("funding.by", { issuer: issuerName(project) })),
      project.description ? h("p", { class: "lead" }, project.description) : null,
      marketLink(project)),
  ];
}

function sidePanels(side, project, current, loadDisclosures) {
  const me = session.me;
  const id = project.project_id;
  const rerender = () => window.dispatchEvent(new Event("crowdex:session"));
  if (!me) {
    const open = project.status === "open";
    side.append(panel(t(project.board === "product" ? "subscribe.back_title" : "subscribe.invest_title"),
      h("p", { id: "signin-to-invest" }, open ? `${t("subscribe.is_open")} ` : `${t("subscribe.not_open")} `,
        open ? h("a", { href: `#/signin?next=${encodeURIComponent(`/projects/${id}`)}` }, t("subscribe.sign_in_to")) : null)));
    return [];
  }
  if (me.role === "investor") {
    side.append(subscribePanel(project, current));
    return [ownAllocations(side, project)];
  }
  if (me.role === "issuer" && me.account_id === project.issuer_id) side.append(issuerPanel(project, loadDisclosures));
  else if (me.role === "operator") side.append(operatorPanel(project, rerender));
  return [];
}

export async function projectDetail(container, [idText]) {
  const id = Number(idText);
  let project = await get(`/v1/projects/${id}`);
  const issuerNameKept = project.issuer_name; // live updates carry the engine's view only

  const liveDot = h("span", { id: "live", class: "live", role: "status", dataset: { state: "connecting" } }, t("live.connecting"));
  const figures = h("div", { id: "figures" });
  const tiersBox = h("div", { id: "tiers" });
  const statusBox = h("span", { id: "project-status" }, badge(project.status));
  const termsBox = h("div", { id: "terms" });
  const renderFigures = (p) => {
    figures.replaceChildren(...figuresOf(p));
    statusBox.replaceChildren(badge(p.status));
    termsBox.replaceChildren(facts(termsFacts(p)));
    if (p.board === "product") tiersBox.replaceChildren(tierTable(p));
  };

  container.append(...detailHead(project, statusBox, liveDot));
  const mainCol = h("div", { class: "detail-main" });
  const side = h("aside", { class: "detail-side", "aria-label": t("detail.take_part") });
  container.append(h("div", { class: "detail" }, mainCol, side));
  mainCol.append(panel(t(project.board === "product" ? "detail.funding_product" : "detail.funding"), figures),
    panel(t("detail.terms"), termsBox, tiersBox));
  renderFigures(project);

  const { loads, loadDisclosures } = extraPanels(mainCol, project);
  loads.push(...sidePanels(side, project, () => project, loadDisclosures));
  await Promise.allSettled(loads);

  // Live figures over the WebSocket; a status change (approve, close) redraws the page.
  const live = new LiveChannel(`project:${id}`, (data) => {
    const statusChanged = data.status !== project.status;
    project = { issuer_name: issuerNameKept, ...data };
    if (statusChanged) { window.dispatchEvent(new Event("crowdex:session")); return; }
    renderFigures(project);
    window.dispatchEvent(new CustomEvent("crowdex:project", { detail: project }));
  }, (state) => {
    liveDot.dataset.state = state;
    liveDot.textContent = t(`live.${state}`);
  });
  return () => live.close();
}

export { CLOSED };
