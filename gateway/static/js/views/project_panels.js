// The side panels of a project's page, one per kind of visitor: the investor's subscription
// form (with the risk note and the cancel rule said before the button, as regulators and
// investors expect), the issuer's disclosures and distributions, and the operator's review
// actions, each confirmed in a dialog first.
import { get, post, refreshSession, session } from "../api.js";
import {
  actionButton, badge, confirmDialog, facts, field, h, keepValues, loadInto, messageArea, onSubmit,
  panel, table,
} from "../dom.js";
import { t, tMaybe } from "../i18n.js";
import { count, parseCount, parseHundredths, percent, times, yuan } from "../money.js";
import { CLOSED, boardLabel, cancelNote, issuerName, unitPrice, units } from "./funding.js";

export function refreshTierOptions(select, p) {
  const chosen = select.value;
  select.replaceChildren(...(p.tiers || p.terms.tiers).map((x) => h("option", {
    value: String(x.tier_id), disabled: x.remaining === 0 ? true : null,
  }, `${x.tier_id} — ${yuan(x.price)}${x.remaining === null || x.remaining === undefined ? ""
    : x.remaining === 0 ? ` (${t("tiers.sold_out")})` : ` (${t("tiers.left", { n: count(x.remaining) })})`}`)));
  if (chosen) select.value = chosen;
}

function cashFacts(box) {
  box.replaceChildren(facts([
    ["available", t("cash.available"), yuan(session.me.cash_available)],
    ["reserved", t("cash.reserved"), yuan(session.me.cash_reserved)],
  ]));
}

/** What the investor reads before subscribing: the board's risks and the cancel rule. */
function riskNote(p) {
  return h("div", { class: "risk-note", id: "risk-note" },
    h("h3", {}, t("risk.title")),
    h("p", {}, tMaybe(`risk.${p.board}`, t("risk.other"))),
    h("p", { id: "cancel-note" }, h("strong", {}, t("risk.cancel_label")), " ", keepValues(cancelNote(p))));
}

function subscribeControls(p) {
  const controls = [];
  let tierSelect = null;
  if (p.board === "product") {
    const tierField = field(t("subscribe.tier"), { id: "sub-tier", name: "tier_id" }, { options: [] });
    tierSelect = tierField.querySelector("select");
    refreshTierOptions(tierSelect, p);
    const firstOpen = (p.tiers || []).find((x) => x.remaining !== 0);
    if (firstOpen) tierSelect.value = String(firstOpen.tier_id);
    controls.push(tierField);
  }
  controls.push(field(t("subscribe.quantity", { unit: tMaybe(`unitname.${p.board}`, t("unitname.other")) }), { id: "sub-quantity",
    name: "quantity", inputmode: "numeric", required: true, autocomplete: "off", value: "1" }));
  if (p.board === "debt" && p.terms.auction) {
    controls.push(field(t("subscribe.rate"), { id: "sub-rate", name: "rate", inputmode: "decimal",
      required: true, autocomplete: "off" }, { hint: t("subscribe.rate_hint", { max: percent(p.terms.auction.max_rate_bps) }) }));
  }
  return { controls, tierSelect };
}

export function subscribePanel(project, current) {
  const p = project;
  const product = p.board === "product";
  const title = t(product ? "subscribe.back_title" : "subscribe.invest_title");
  const messages = messageArea();
  messages.el.id = "subscribe-message";
  const cash = h("div", { id: "my-cash" });
  cashFacts(cash);
  if (p.status !== "open") {
    return panel(title, h("p", { id: "subscriptions-closed" }, t("subscribe.closed"), " ", badge(p.status)), cash);
  }
  const { controls, tierSelect } = subscribeControls(p);
  const ack = h("div", { class: "check" },
    h("input", { type: "checkbox", id: "sub-ack" }),
    h("label", { for: "sub-ack" }, t("risk.ack")));
  const cost = h("p", { id: "sub-cost", class: "cost", "aria-live": "polite" });
  const form = h("form", { id: "subscribe-form", class: "stack" }, controls, cost, riskNote(p), ack,
    h("button", { type: "submit", class: "primary" }, t(product ? "subscribe.pledge" : "subscribe.subscribe")));

  const tierOf = () => (current().tiers || p.terms.tiers).find((x) => String(x.tier_id) === tierSelect.value);
  const priceOf = () => (product ? (tierOf() || {}).price ?? null : unitPrice(p));
  const updateCost = () => {
    try {
      const q = parseCount(form.querySelector("#sub-quantity").value);
      const price = priceOf();
      cost.textContent = price === null ? "" : t("subscribe.reserves", { total: yuan(times(price, q)), n: count(q), price: yuan(price) });
    } catch { cost.textContent = ""; }
  };
  form.addEventListener("input", updateCost);
  updateCost();
  if (tierSelect) {
    const onProject = (event) => {
      if (!tierSelect.isConnected) { window.removeEventListener("crowdex:project", onProject); return; }
      refreshTierOptions(tierSelect, event.detail);
    };
    window.addEventListener("crowdex:project", onProject);
  }

  onSubmit(form, messages, async () => {
    if (!form.querySelector("#sub-ack").checked) throw new RangeError(t("risk.ack_needed"));
    const body = { quantity: parseCount(form.querySelector("#sub-quantity").value) };
    if (tierSelect) body.tier_id = (tierOf() || { tier_id: tierSelect.value }).tier_id;
    const rate = form.querySelector("#sub-rate");
    if (rate) body.rate_bps = parseHundredths(rate.value, { what: t("field.rate") });
    const result = await post(`/v1/projects/${p.project_id}/subscriptions`, body);
    await refreshSession();
    cashFacts(cash);
    messages.ok(h("span", { dataset: { subscriptionId: result.subscription_id } },
      t(product ? "subscribe.pledge_ok" : "subscribe.ok", { id: result.subscription_id, amount: yuan(result.reserved_amount) }), " "),
    h("a", { href: "#/account" }, t("subscribe.see_yours")));
  });
  return panel(title, form, messages.el, cash);
}

export function allocationTable(rows, board) {
  return table([
    { label: t("alloc.account"), cell: (r) => `#${r.account_id}` },
    { label: t("alloc.quantity"), num: true, cell: (r) => units(board, r.quantity) },
    { label: t("alloc.amount"), num: true, cell: (r) => yuan(r.amount) },
    { label: t("alloc.refunded"), num: true, cell: (r) => yuan(r.refunded) },
  ], rows, { id: "allocations", cards: true, caption: t("alloc.title"), empty: t("alloc.empty") });
}

export async function ownAllocations(side, project) {
  if (!CLOSED.has(project.status)) return;
  const rows = await get(`/v1/projects/${project.project_id}/allocations`);
  if (!rows.length) return;
  side.append(panel(t("alloc.yours"), allocationTable(rows, project.board)));
}

function allocationsPanel(project) {
  const box = h("div", {});
  loadInto(box, async () => allocationTable(await get(`/v1/projects/${project.project_id}/allocations`), project.board));
  return panel(t("alloc.title"), box);
}

function disclosurePanel(project, reloadDisclosures) {
  const m = messageArea();
  m.el.id = "disclosure-message";
  const form = h("form", { id: "disclosure-form", class: "stack" },
    field(t("disclosures.form_title"), { id: "disc-title", name: "title", required: true, maxlength: "200" }),
    field(t("disclosures.form_body"), { id: "disc-body", name: "body", type: "textarea", required: true, rows: "5" }),
    h("button", { type: "submit", class: "primary" }, t("disclosures.publish")));
  onSubmit(form, m, async () => {
    await post(`/v1/projects/${project.project_id}/disclosures`, {
      title: form.querySelector("#disc-title").value.trim(), body: form.querySelector("#disc-body").value,
    });
    form.reset();
    m.ok(t("disclosures.published"));
    await reloadDisclosures();
  });
  const owes = project.board === "debt" || project.board === "ip";
  return panel(t("disclosures.post"), h("p", { class: "muted small" }, t(owes ? "disclosures.owed" : "disclosures.keep_informed")),
    form, m.el);
}

/** Operating rights: the issuer reports a month's revenue and pays what it owes at once. */
function revenuePanel(project) {
  const m = messageArea();
  m.el.id = "revenue-message";
  const form = h("form", { id: "revenue-form", class: "stack" },
    field(t("revenue.month"), { id: "rev-month", name: "month", required: true, autocomplete: "off",
      pattern: "[0-9]{4}-[0-9]{2}", placeholder: "2026-02" }),
    field(t("revenue.amount"), { id: "rev-amount", name: "revenue", inputmode: "decimal", required: true,
      autocomplete: "off" }, { hint: t("revenue.hint") }),
    h("button", { type: "submit", class: "primary" }, t("revenue.report")));
  onSubmit(form, m, async () => {
    const revenue = parseHundredths(form.querySelector("#rev-amount").value,
      { allowZero: true, what: t("months.revenue") });  // a month without revenue owes 0
    const row = await post(`/v1/projects/${project.project_id}/revenue`,
      { month: form.querySelector("#rev-month").value.trim(), revenue });
    form.reset();
    m.ok(t("revenue.recorded", { month: row.month, owed: yuan(row.owed) }));
  });
  return panel(t("revenue.title"), form, m.el);
}

function distributionPanel(project) {
  if (project.board === "operating_rights") return buybackPanel(project);
  const debt = project.board === "debt";
  const m = messageArea();
  m.el.id = "distribution-message";
  const form = h("form", { id: "distribution-form", class: "stack" },
    field(t("dist.amount_yuan"), { id: "dist-amount", name: "amount", inputmode: "decimal", required: true, autocomplete: "off" },
      { hint: t(debt ? "dist.hint_debt" : "dist.hint_ip") }),
    h("button", { type: "submit", class: "primary" }, t(debt ? "dist.pay_repayment" : "dist.pay_royalties")));
  onSubmit(form, m, async () => {
    const amount = parseHundredths(form.querySelector("#dist-amount").value);
    const result = await post(`/v1/projects/${project.project_id}/distributions`, { amount });
    form.reset();
    m.ok(t("dist.recorded", { amount: yuan(result.amount ?? amount) }));
  });
  return panel(t(debt ? "dist.repay" : "dist.distribute"), form, m.el);
}

/** Operating rights: the buy-back at the end of the term, of exactly what the schedule says. */
function buybackPanel(project) {
  const m = messageArea();
  m.el.id = "distribution-message";
  const form = h("form", { id: "distribution-form", class: "stack" },
    field(t("dist.amount_yuan"), { id: "dist-amount", name: "amount", inputmode: "decimal", required: true, autocomplete: "off" },
      { hint: t("dist.hint_buyback") }),
    h("button", { type: "submit", class: "primary" }, t("dist.pay_buyback")));
  onSubmit(form, m, async () => {
    const amount = parseHundredths(form.querySelector("#dist-amount").value);
    const result = await post(`/v1/projects/${project.project_id}/distributions`, { amount });
    form.reset();
    m.ok(t("dist.recorded", { amount: yuan(result.amount ?? amount) }));
  });
  return panel(t("dist.buyback"), form, m.el);
}

export function issuerPanel(project, reloadDisclosures) {
  const parts = [disclosurePanel(project, reloadDisclosures)];
  const paying = ["succeeded", "trading"].includes(project.status);
  if (paying && project.board === "operating_rights") parts.push(revenuePanel(project));
  if (paying && ["debt", "ip", "operating_rights"].includes(project.board)) {
    parts.push(distributionPanel(project));
  }
  if (CLOSED.has(project.status)) parts.push(allocationsPanel(project));
  return h("div", { class: "stack" }, parts);
}

/** The operator's decision on one project, asked in a dialog that shows what it means. */
export async function confirmProjectAction(project, action) {
  const details = [[t("terms.issuer"), issuerName(project)], [t("review.board"), boardLabel(project.board)],
    [t("funding.raised"), yuan(project.raised)]];
  return confirmDialog({
    title: t(`confirm.${action}_title`, { title: project.title }),
    text: t(`confirm.${action}_text`),
    details,
    confirm: t(`confirm.${action}`),
    danger: action !== "approve" && action !== "delivery",
  });
}

export function operatorPanel(project, rerender) {
  const m = messageArea();
  m.el.id = "operator-message";
  const act = (action, cls) => actionButton(t(`op.${action}`), m, async () => {
    if (!(await confirmProjectAction(project, action))) return;
    await post(`/v1/projects/${project.project_id}/${action}`, action === "delivery" ? { delivered: true } : {});
    rerender();
  }, { class: cls, id: `op-${action}` });
  const buttons = [];
  if (project.status === "pending_review") buttons.push(act("approve", "primary"), act("reject", "danger"));
  if (project.status === "open") buttons.push(act("close", "danger"));
  if (project.board === "product" && project.status === "succeeded" && project.held_amount > 0) {
    buttons.push(act("delivery", "primary"));
  }
  const parts = [panel(t("op.title"), buttons.length ? h("div", { class: "button-row" }, buttons)
    : h("p", { class: "muted" }, t("op.nothing")), m.el)];
  if (CLOSED.has(project.status)) parts.push(allocationsPanel(project));
  return h("div", { class: "stack" }, parts);
}
