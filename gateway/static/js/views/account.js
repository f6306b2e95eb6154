// My account: cash, holdings valued at their last trade (or the offering price before any trade),
// open orders and subscriptions that can be cancelled from here, the trade history from the
// account's orders, every movement of cash and units with its settlement status
// (GET /v1/me/movements), and withdrawals.
import { del, get, post, refreshSession, session } from "../api.js";
import {
  actionButton, badge, facts, field, h, loadInto, messageArea, newReference, onSubmit, panel, table,
} from "../dom.js";
import { t } from "../i18n.js";
import { count, parseYuan, percent, times, yuan } from "../money.js";
import { TRADABLE, unitPrice, units } from "./funding.js";

export function cashSummary(me) {
  return h("div", { class: "stat-cards", id: "account" },
    [["available", me.cash_available], ["reserved", me.cash_reserved], ["withdrawable", me.cash_withdrawable]]
      .map(([key, value]) => h("div", { class: "stat" },
        h("div", { class: "stat-label" }, t(`cash.${key}`)),
        h("div", { class: "stat-value", dataset: { field: key } }, yuan(value)),
        h("div", { class: "stat-hint" }, t(`cash.${key}_hint`)))));
}

/** Each holding's price for its value: the last trade, else the offering's unit price. */
async function holdingPrices(holdings, projects) {
  return Object.fromEntries(await Promise.all(holdings.map(async (x) => {
    const p = projects.get(x.instrument_id);
    let last = null;
    if (p && TRADABLE.has(p.board)) {
      try { last = (await get(`/v1/instruments/${x.instrument_id}/trades?limit=1`))[0] || null; } catch { last = null; }
    }
    if (last) return [x.instrument_id, { price: last.price, basis: "last" }];
    return [x.instrument_id, { price: p ? unitPrice(p) : null, basis: "offering" }];
  })));
}

async function holdingsTable(me, projects, projectLink) {
  const prices = await holdingPrices(me.holdings, projects);
  let total = 0n;
  const rows = me.holdings.map((x) => {
    const quantity = BigInt(x.quantity_available) + BigInt(x.quantity_reserved);
    const { price, basis } = prices[x.instrument_id];
    const value = price === null ? null : times(price, quantity);
    if (value !== null) total += value;
    return { ...x, quantity, price, basis, value, __data: { instrumentId: x.instrument_id } };
  });
  const board = (x) => (projects.get(x.instrument_id) || {}).board || "equity";
  const body = table([
    { label: t("holdings.instrument"), name: true, cell: (x) => projectLink(x.instrument_id) },
    { label: t("holdings.quantity"), num: true, cell: (x) => units(board(x), x.quantity) },
    { label: t("holdings.reserved"), num: true, cell: (x) => count(x.quantity_reserved) },
    { label: t("holdings.price"), num: true, cell: (x) => [yuan(x.price), h("small", { class: "basis" }, ` ${t(`holdings.basis_${x.basis}`)}`)] },
    { label: t("holdings.value"), num: true, cell: (x) => h("span", { dataset: { field: "value" } }, yuan(x.value)) },
    { label: t("holdings.market"), cell: (x) => (TRADABLE.has(board(x)) ? h("a", { href: `#/markets/${x.instrument_id}` }, t("holdings.trade")) : "—") },
  ], rows, { id: "holdings", cards: true, caption: t("holdings.title"), empty: t("holdings.empty") });
  if (!rows.length) return body;
  return [body, h("p", { class: "total" }, t("holdings.total"), " ", h("strong", { id: "holdings-total" }, yuan(total)))];
}

function subscriptionsBox(container, projectLink) {
  const messages = messageArea();
  messages.el.id = "subscriptions-message";
  const box = h("div", {});
  const load = () => loadInto(box, async () => {
    const subs = (await get("/v1/me/subscriptions")).slice().reverse();
    return table([
      { label: "#", cell: (s) => String(s.subscription_id) },
      { label: t("subs.project"), name: true, cell: (s) => projectLink(s.project_id) },
      { label: t("subs.quantity"), num: true, cell: (s) => count(s.quantity) },
      { label: t("subs.detail"), cell: (s) => [s.tier_id !== undefined ? t("subs.tier", { tier: s.tier_id }) : "",
        s.rate_bps !== undefined ? t("subs.bid", { rate: percent(s.rate_bps) }) : ""].filter(Boolean).join(" · ") || "—" },
      { label: t("subs.reserved"), num: true, cell: (s) => yuan(s.reserved_amount) },
      { label: t("subs.status"), cell: (s) => badge(s.status) },
      { label: t("subs.action"), cell: (s) => (s.status === "accepted"
        ? actionButton(t("common.cancel"), messages, async () => {
          await del(`/v1/subscriptions/${s.subscription_id}`);
          await refreshSession();
          container.querySelector("#account").replaceWith(cashSummary(session.me));
          await load();
          messages.ok(t("subs.cancelled", { id: s.subscription_id }));
        }, { class: "small danger", "aria-label": t("subs.cancel_label", { id: s.subscription_id }) })
        : "—") },
    ], subs.map((s) => ({ ...s, __data: { subscriptionId: s.subscription_id, status: s.status } })),
    { id: "subscriptions", cards: true, caption: t("subs.title"), empty: t("subs.empty") });
  });
  return { el: h("div", {}, messages.el, box), load };
}

const sideText = (side) => h("span", { class: `side side-${side}` }, t(`side.${side}`));

function ordersBox(projectLink, afterCancel) {
  const messages = messageArea();
  messages.el.id = "orders-message";
  const openBox = h("div", { id: "account-orders" });
  const historyBox = h("div", { id: "trade-history" });
  const load = async () => {
    let orders = [];
    await loadInto(openBox, async () => {
      orders = await get("/v1/orders");
      const open = orders.filter((o) => o.status === "open" || o.status === "partially_filled");
      return table([
        { label: t("orders.order"), cell: (o) => `#${o.order_id}` },
        { label: t("orders.instrument"), name: true, cell: (o) => projectLink(o.instrument_id) },
        { label: t("orders.side"), cell: (o) => sideText(o.side) },
        { label: t("orders.price"), num: true, cell: (o) => (o.price === null ? t("orders.market") : yuan(o.price)) },
        { label: t("orders.filled"), num: true, cell: (o) => `${count(o.filled_quantity)}/${count(o.quantity)}` },
        { label: t("subs.action"), cell: (o) => actionButton(t("common.cancel"), messages, async () => {
          await del(`/v1/orders/${o.order_id}`);
          messages.ok(t("orders.cancelled", { id: o.order_id }));
          await load();
          await afterCancel();
        }, { class: "small danger", "aria-label": t("orders.cancel_label", { id: o.order_id }) }) },
      ], open.map((o) => ({ ...o, __data: { orderId: o.order_id } })),
      { id: "account-orders-table", cards: true, caption: t("orders.open_title"), empty: t("orders.none_open") });
    });
    await loadInto(historyBox, async () => tradeHistory(orders, projectLink));
  };
  return { open: h("div", {}, messages.el, openBox), history: historyBox, load };
}

/** Every fill of the account's orders, newest first: the trades it took part in. */
function tradeHistory(orders, projectLink) {
  const fills = orders.flatMap((o) => o.fills.map((f) => ({ ...f, side: o.side, instrument_id: o.instrument_id,
    order_id: o.order_id })))
    .sort((a, b) => b.trade_id - a.trade_id);
  return table([
    { label: t("history.trade"), cell: (f) => `#${f.trade_id}` },
    { label: t("history.instrument"), name: true, cell: (f) => projectLink(f.instrument_id) },
    { label: t("orders.side"), cell: (f) => sideText(f.side) },
    { label: t("orders.price"), num: true, cell: (f) => yuan(f.price) },
    { label: t("holdings.quantity"), num: true, cell: (f) => count(f.quantity) },
    { label: t("history.amount"), num: true, cell: (f) => yuan(times(f.price, f.quantity)) },
    { label: t("history.order"), cell: (f) => `#${f.order_id}` },
  ], fills.map((f) => ({ ...f, __data: { tradeId: f.trade_id } })),
  { id: "trade-history-table", cards: true, caption: t("history.title"),
    empty: t("history.empty") });
}

function withdrawPanel(container, me) {
  // Withdrawals dedupe on their reference: one reference per form, so a double submit is safe.
  const m = messageArea();
  m.el.id = "withdraw-message";
  const form = h("form", { id: "withdraw-form", class: "stack" },
    field(t("withdraw.amount"), { id: "withdraw-amount", name: "amount", inputmode: "decimal", required: true,
      autocomplete: "off", placeholder: "0.00" }, { hint: t("withdraw.up_to", { amount: yuan(me.cash_withdrawable) }) }),
    field(t("withdraw.reference"), { id: "withdraw-reference", name: "reference", required: true, maxlength: "100",
      value: newReference("wd") }, { hint: t("withdraw.reference_hint") }),
    h("button", { type: "submit", class: "primary" }, t("withdraw.submit")));
  onSubmit(form, m, async () => {
    const amount = parseYuan(form.querySelector("#withdraw-amount").value);
    const reference = form.querySelector("#withdraw-reference").value.trim();
    const result = await post("/v1/me/withdrawals", { amount, reference });
    await refreshSession();
    container.querySelector("#account").replaceWith(cashSummary(session.me));
    form.querySelector("#withdraw-amount").value = "";
    form.querySelector("#withdraw-reference").value = newReference("wd");
    form.querySelector("#withdraw-amount").closest(".field").querySelector(".hint").textContent = t("withdraw.up_to", { amount: yuan(session.me.cash_withdrawable) });
    m.ok(t("withdraw.ok", { amount: yuan(amount), reference, available: yuan(result.cash_available) }));
  });
  return panel(t("withdraw.title"), form, m.el);
}

const MOVEMENTS_SHOWN = 100;

/** A movement's amount: yuan for cash, units of its instrument otherwise; signed. */
function movementAmount(m, projects) {
  if (m.asset === "cash") return (m.amount < 0 ? "−" : "+") + yuan(Math.abs(m.amount));
  const p = projects.get(m.instrument_id);
  const text = p ? units(p.board, Math.abs(m.amount)) : count(Math.abs(m.amount));
  return (m.amount < 0 ? "−" : "+") + text;
}

/** Every change of the account's cash and units, newest first, pending until its batch. */
async function movementsTable(projects, projectLink) {
  const rows = await get(`/v1/me/movements?limit=${MOVEMENTS_SHOWN}`);
  return table([
    { label: t("movements.kind"), cell: (m) => t(`movement.${m.kind}`) },
    { label: t("movements.what"), name: true, cell: (m) => (m.asset === "cash" ? t("movements.cash") : projectLink(m.instrument_id)) },
    { label: t("movements.amount"), num: true, cell: (m) => h("span", { class: m.amount < 0 ? "neg" : "pos" }, movementAmount(m, projects)) },
    { label: t("movements.status"), cell: (m) => (m.status === "settled"
      ? t("movements.settled_in", { batch: m.batch_id }) : t("movements.pending")) },
  ], rows.map((m) => ({ ...m, __data: { movementId: String(m.movement_id), status: m.status } })),
  { caption: t("movements.title"), empty: t("movements.empty"), id: "movements-table", cards: true });
}

export async function accountView(container) {
  await refreshSession();
  const me = session.me;
  const projects = new Map((await get("/v1/projects").catch(() => [])).map((p) => [p.project_id, p]));
  const projectLink = (id) => h("a", { href: `#/projects/${id}` },
    projects.has(id) ? projects.get(id).title : t("common.project_n", { id }));

  container.append(h("div", { class: "page-head" }, h("h1", {}, t("account.title")),
    h("div", { class: "muted" }, facts([
      ["name", t("account.name"), me.name || "—"], ["account_id", t("account.account"), `#${me.account_id}`],
      ["role", t("account.role"), t(`role.${me.role}`)],
      me.investor_class ? ["class", t("account.class"), t(`class.${me.investor_class}`)] : null,
    ], { class: "facts inline" }))));
  container.append(cashSummary(me));
  const left = h("div", { class: "stack" });
  const right = h("div", { class: "stack" });
  container.append(h("div", { class: "two-col" }, left, right));

  const holdingsBox = h("div", {});
  left.append(panel(t("holdings.title"), holdingsBox));
  const loadHoldings = () => loadInto(holdingsBox, () => holdingsTable(session.me, projects, projectLink));
  const loads = [loadHoldings()];
  if (me.role === "investor") {
    const subs = subscriptionsBox(container, projectLink);
    const orders = ordersBox(projectLink, async () => {
      await refreshSession();
      container.querySelector("#account").replaceWith(cashSummary(session.me));
      await loadHoldings();
    });
    left.append(panel(t("orders.open_title"), orders.open), panel(t("subs.title"), subs.el));
    // Full width below the columns: a trade has more figures than a side column holds.
    container.append(h("div", { class: "stack wide-below" },
      panel(t("history.title"), h("p", { class: "muted small" }, t("history.note")), orders.history)));
    loads.push(subs.load(), orders.load());
  }
  right.prepend(withdrawPanel(container, me));
  const movementsBox = h("div", {});
  container.append(h("div", { class: "stack wide-below" }, panel(t("movements.title"),
    h("p", { class: "muted small" }, t("movements.note")), movementsBox)));
  loads.push(loadInto(movementsBox, () => movementsTable(projects, projectLink)));
  await Promise.all(loads);
}
