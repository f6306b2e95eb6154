// How an offering is presented, as investors expect from Republic, Seedrs, Kickstarter or JD 众筹:
// progress against the target AND the cap (labelled, the bar scaled to the cap with the target
// marked, so an oversubscribed raise does not read "1800 %" of a full bar), the time left on the
// exchange clock, a closed project's close date (never a future "closes"), the issuer's name,
// and a product raise told in backers, pledges and rewards rather than investors and shares.
import { h, day, keepValues, when } from "../dom.js";
import { duration, t, tMaybe } from "../i18n.js";
import { count, percent, percentOf, times, yuan } from "../money.js";
import { exchangeNowMs } from "../venue.js";

export const BOARD_KEYS = ["equity", "debt", "ip", "operating_rights", "product"];
// A board the server adds before the UI knows it still reads sensibly (its name, plain units).
export const boardLabel = (board) => tMaybe(`board.${board}`, String(board).replaceAll("_", " "));
export const TRADABLE = new Set(["equity", "debt", "ip", "operating_rights"]);
export const CLOSED = new Set(["succeeded", "failed", "trading"]);

/** "30 shares" / "30 股": a quantity with its board's unit. */
export const units = (board, n) => t(tMaybe(`units.${board}`, null) === null ? "units.other" : `units.${board}`,
  { n: count(n) });
/** Backers for a product raise, investors elsewhere. */
export const peopleLabel = (board) => t(board === "product" ? "funding.backers" : "funding.investors");
export const peopleTitle = (board) => t(board === "product" ? "funding.backers_title" : "funding.investors_title");
export const isProduct = (p) => p.board === "product";

export function unitPrice(p) {
  if (p.board === "debt") return p.terms.face_value;
  if (p.board === "product") return null;
  return p.terms.price;
}

/** The issuer as people know it: the name the server gives, else the account number. */
export const issuerName = (p) => p.issuer_name || t("funding.issuer_account", { id: p.issuer_id });

/**
 * The funding bar and its labels. Product: money raised against the goal (overfunding is the
 * point there, so "240 % of goal" is right). Other boards: units against the cap, the target
 * marked on the bar, both percentages written out.
 */
export function progressBar(p) {
  if (isProduct(p)) {
    const pct = percentOf(p.raised, p.terms.goal);
    const label = t("funding.of_goal", { pct, goal: yuan(p.terms.goal) });
    return h("div", { class: "progress-block", dataset: { pctTarget: String(pct) } },
      h("div", { class: "progress", role: "progressbar", "aria-label": t("funding.progress"),
        "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.min(pct, 100)),
        "aria-valuetext": `${yuan(p.raised)} — ${label}` },
      h("div", { class: `progress-fill${pct >= 100 ? " done" : ""}`, style: `width:${Math.min(pct, 100)}%` })),
      h("div", { class: "progress-label" }, h("span", { dataset: { field: "pct_target" } }, keepValues(label))));
  }
  const { min_quantity: target, max_quantity: cap } = p.terms;
  const value = p.subscribed_quantity;
  const pctTarget = percentOf(value, target);
  const pctCap = percentOf(value, cap);
  const targetAt = percentOf(target, cap);
  const text = `${t("funding.of_target", { pct: pctTarget, target: units(p.board, target) })}; `
    + t("funding.of_cap", { pct: pctCap, cap: units(p.board, cap) });
  return h("div", { class: "progress-block", dataset: { pctTarget: String(pctTarget), pctCap: String(pctCap) } },
    h("div", { class: "progress capped", role: "progressbar", "aria-label": t("funding.progress"),
      "aria-valuemin": "0", "aria-valuemax": String(cap), "aria-valuenow": String(Math.min(value, cap)),
      "aria-valuetext": `${units(p.board, value)} — ${text}` },
    h("div", { class: `progress-fill${value >= target ? " done" : ""}`, style: `width:${Math.min(pctCap, 100)}%` }),
    h("div", { class: "progress-target", style: `left:${Math.min(targetAt, 100)}%`, "aria-hidden": "true" })),
    h("div", { class: "progress-label" },
      h("span", { dataset: { field: "pct_target" } },
        keepValues(t("funding.of_target", { pct: pctTarget, target: units(p.board, target) }))),
      h("span", { class: "progress-cap", dataset: { field: "pct_cap" } },
        keepValues(t("funding.of_cap", { pct: pctCap, cap: units(p.board, cap) })))));
}

/**
 * Where the project stands in time, in words: "12 days 3 hours left", "closed 2026-03-03",
 * "awaiting review". Only an open offering speaks of its deadline as ahead.
 */
export function timeline(p) {
  if (p.status === "open") {
    const left = (Date.parse(p.deadline) - exchangeNowMs()) / 1000;
    if (left <= 0) return { key: "closing", text: t("funding.closing_now") };
    return { key: "left", text: t("funding.time_left", { left: duration(left) }), date: when(p.deadline) };
  }
  if (p.status === "pending_review") return { key: "review", text: t("funding.awaiting_review") };
  if (p.status === "rejected") return { key: "rejected", text: t("funding.not_listed") };
  const closed = p.closed || p.deadline;
  return { key: "closed", text: t(p.status === "failed" ? "funding.failed_on" : "funding.closed_on", { date: day(closed) }) };
}

export function timelineEl(p) {
  const { key, text, date } = timeline(p);
  return h("span", { class: `timeline timeline-${key}`, dataset: { field: "timeline" }, title: date || null },
    keepValues(text));
}

function rateText(p) {
  if (p.board !== "debt") return null;
  if (p.terms.auction) {
    return p.clearing_rate_bps ? t("terms.auction_cleared", { rate: percent(p.clearing_rate_bps) })
      : t("terms.auction_max", { rate: percent(p.terms.auction.max_rate_bps) });
  }
  return percent(p.terms.rate_bps);
}

export function headline(p) {
  if (p.board === "debt") {
    return t("headline.debt", { rate: rateText(p), months: p.terms.term_months, face: yuan(p.terms.face_value) });
  }
  if (p.board === "product") return t("headline.product", { goal: yuan(p.terms.goal), n: p.terms.tiers.length });
  if (p.terms.price === undefined) return boardLabel(p.board);
  const price = t(p.board === "equity" ? "headline.per_share" : "headline.per_unit", { price: yuan(p.terms.price) });
  return p.board === "ip" ? `${price} · ${t("headline.royalty", { share: percent(p.terms.royalty_share_bps) })}` : price;
}

function boardTerms(p) {
  const tm = p.terms;
  if (p.board === "equity" || p.board === "ip") {
    const rows = [["price", t(p.board === "ip" ? "terms.price_unit" : "terms.price_share"), yuan(tm.price)],
      ["min_quantity", t("terms.target"), units(p.board, tm.min_quantity)],
      ["max_quantity", t("terms.cap"), units(p.board, tm.max_quantity)],
      ["target_amount", t("terms.target_amount"), yuan(times(tm.price, tm.min_quantity))],
      ["cap_amount", t("terms.cap_amount"), yuan(times(tm.price, tm.max_quantity))]];
    if (p.board === "ip") rows.push(["royalty", t("terms.royalty"), percent(tm.royalty_share_bps)]);
    return rows;
  }
  if (p.board === "debt") {
    return [["face_value", t("terms.face_value"), yuan(tm.face_value)],
      ["rate", t("terms.rate"), rateText(p)],
      ["term", t("terms.term"), t("terms.months", { n: tm.term_months })],
      ["repayment", t("terms.repayment"), t(`repayment.${tm.repayment}`)],
      ["min_quantity", t("terms.target"), `${units("debt", tm.min_quantity)} (${yuan(times(tm.face_value, tm.min_quantity))})`],
      ["max_quantity", t("terms.cap"), `${units("debt", tm.max_quantity)} (${yuan(times(tm.face_value, tm.max_quantity))})`]];
  }
  if (p.board === "product") {
    return [["goal", t("terms.goal"), yuan(tm.goal)], ["tiers", t("terms.tiers"), String(tm.tiers.length)]];
  }
  if (p.board === "operating_rights") {
    return [["price", t("terms.price_unit"), yuan(tm.price)],
      ["min_quantity", t("terms.target"), units(p.board, tm.min_quantity)],
      ["max_quantity", t("terms.cap"), units(p.board, tm.max_quantity)],
      ["term", t("terms.term"), t("terms.months", { n: tm.term_months })],
      ["revenue_share", t("terms.revenue_share"), percent(tm.revenue_share_bps)],
      ["buyback", t("terms.buyback"), yuan(tm.buyback_price)]];
  }
  return [];
}

/** The terms as label/value facts; dates as the status allows (no future date once closed). */
export function termsFacts(p) {
  const rows = [["issuer", t("terms.issuer"), issuerName(p)], ...boardTerms(p)];
  if (p.terms.lockup_days !== undefined && p.board !== "product") {
    rows.push(["lockup", t("terms.lockup"), t("terms.days", { n: p.terms.lockup_days })]);
  }
  if (p.status === "open") rows.push(["deadline", t("terms.closes"), `${when(p.deadline)} (${timeline(p).text})`]);
  else if (p.status === "pending_review") rows.push(["deadline", t("terms.proposed_deadline"), when(p.deadline)]);
  if (p.created) rows.push(["created", t("terms.listed"), when(p.created)]);
  if (p.closed) rows.push(["closed", t("terms.closed"), when(p.closed)]);
  if (p.lockup_until && p.status === "succeeded") rows.push(["lockup_until", t("terms.tradable_from"), when(p.lockup_until)]);
  return rows;
}

/** The cancel rule in words, from the project's own rules, before one subscribes. */
export function cancelNote(p) {
  if (p.cancellable === false) return t("risk.no_cancel");
  const windowS = p.cancel_window_seconds ?? (p.board === "product" ? 0 : 48 * 3600);
  const until = Date.parse(p.deadline) - windowS * 1000;
  if (until <= exchangeNowMs()) return t("risk.window_closed");
  const untilText = when(new Date(until).toISOString());
  return windowS ? t("risk.cancel_until_window", { until: untilText, hours: Math.round(windowS / 3600) })
    : t("risk.cancel_until_deadline", { until: untilText });
}

/** A market link for a project whose units trade. */
export function marketLink(p) {
  if (p.status !== "trading" || !TRADABLE.has(p.board)) return null;
  return h("a", { class: "market-link", href: `#/markets/${p.project_id}`, dataset: { market: String(p.project_id) } },
    t("funding.trade_on_market"));
}
