import { LiveChannel, get, post, refreshSession, session } from "../api.js";
import {
  actionButton, badge, facts, field, h, messageArea, onSubmit, panel, table, when,
} from "../dom.js";
import { count, parseCount, parseHundredths, percent, percentOf, times, yuan } from "../money.js";

export const BOARDS = [
  ["equity", "Equity"], ["debt", "Debt"], ["ip", "IP royalties"], ["product", "Product"],
];
export const BOARD_LABEL = Object.fromEntries(BOARDS);
const STATUSES = [
  ["", "Any status"], ["open", "Open"], ["pending_review", "Pending review"],
  ["succeeded", "Succeeded"], ["trading", "Trading"], ["failed", "Failed"], ["rejected", "Rejected"],
];
const UNIT = { equity: "shares", debt: "notes", ip: "units", product: "rewards" };

// ---- shared pieces ----------------------------------------------------------------------------

/** Funding progress: product by money raised vs goal, the others by quantity vs target. */
export function progressOf(p) {
  if (p.board === "product") {
    return { value: p.raised, target: p.terms.goal, label: `${yuan(p.raised)} of ${yuan(p.terms.goal)} goal` };
  }
  const target = p.terms.min_quantity;
  return {
    value: p.subscribed_quantity, target,
    label: `${count(p.subscribed_quantity)} of ${count(target)} ${UNIT[p.board]} target`
      + (p.terms.max_quantity ? ` (cap ${count(p.terms.max_quantity)})` : ""),
  };
}

export function progressBar(p) {
  const { value, target, label } = progressOf(p);
  const pct = percentOf(value, target);
  return h("div", { class: "progress-block" },
    h("div", { class: "progress", role: "progressbar", "aria-label": "Funding progress",
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.min(pct, 100)),
      "aria-valuetext": `${pct}% — ${label}` },
    h("div", { class: `progress-fill${pct >= 100 ? " done" : ""}`, style: `width:${Math.min(pct, 100)}%` })),
    h("div", { class: "progress-label" }, h("strong", {}, `${pct}%`), " ", label));
}

export function unitPrice(p) {
  if (p.board === "debt") return p.terms.face_value;
  if (p.board === "product") return null;
  return p.terms.price;
}

function rateText(p) {
  if (p.board !== "debt") return null;
  if (p.terms.auction) {
    return p.clearing_rate_bps ? `${percent(p.clearing_rate_bps)} (auction cleared)`
      : `auction, at most ${percent(p.terms.auction.max_rate_bps)}`;
  }
  return percent(p.terms.rate_bps);
}

function termsFacts(p) {
  const t = p.terms;
  const rows = [];
  if (p.board === "equity" || p.board === "ip") {
    rows.push(["price", `Price per ${p.board === "ip" ? "unit" : "share"}`, yuan(t.price)],
      ["min_quantity", "Target (minimum)", `${count(t.min_quantity)} ${UNIT[p.board]}`],
      ["max_quantity", "Cap (maximum)", `${count(t.max_quantity)} ${UNIT[p.board]}`],
      ["target_amount", "Target amount", yuan(times(t.price, t.min_quantity))]);
    if (p.board === "ip") rows.push(["royalty", "Royalty share to holders", percent(t.royalty_share_bps)]);
  } else if (p.board === "debt") {
    rows.push(["face_value", "Face value per note", yuan(t.face_value)],
      ["rate", "Interest rate (p.a.)", rateText(p)],
      ["term", "Term", `${t.term_months} months`],
      ["repayment", "Repayment", t.repayment === "bullet" ? "Bullet (interest monthly, principal at maturity)" : "Amortizing (equal monthly instalments)"],
      ["min_quantity", "Minimum to fund", `${count(t.min_quantity)} notes`],
      ["max_quantity", "Maximum", `${count(t.max_quantity)} notes (${yuan(times(t.face_value, t.max_quantity))})`]);
  } else if (p.board === "product") {
    rows.push(["goal", "Goal", yuan(t.goal)], ["tiers", "Reward tiers", String(t.tiers.length)]);
  }
  if (t.lockup_days !== undefined && p.board !== "product") {
    rows.push(["lockup", "Lock-up after close", `${t.lockup_days} days`]);
  }
  rows.push(["deadline", "Deadline", when(p.deadline)]);
  if (p.created) rows.push(["created", "Listed", when(p.created)]);
  if (p.closed) rows.push(["closed", "Closed", when(p.closed)]);
  if (p.instrument_id) rows.push(["instrument", "Instrument id", String(p.instrument_id)]);
  if (p.lockup_until) rows.push(["lockup_until", "Tradable from", when(p.lockup_until)]);
  if (p.issuer_id) rows.push(["issuer", "Issuer account", `#${p.issuer_id}`]);
  return rows;
}

function headline(p) {
  if (p.board === "debt") return `${rateText(p)} · ${p.terms.term_months} months · ${yuan(p.terms.face_value)} per note`;
  if (p.board === "product") return `Goal ${yuan(p.terms.goal)} · ${p.terms.tiers.length} tier${p.terms.tiers.length === 1 ? "" : "s"}`;
  const extra = p.board === "ip" ? ` · ${percent(p.terms.royalty_share_bps)} royalty share` : "";
  return `${yuan(p.terms.price)} per ${p.board === "ip" ? "unit" : "share"}${extra}`;
}

export function projectCard(p) {
  return h("article", { class: "card", dataset: { projectId: p.project_id } },
    h("div", { class: "card-top" },
      h("span", { class: `chip chip-${p.board}` }, BOARD_LABEL[p.board] || p.board), badge(p.status)),
    h("h3", {}, h("a", { href: `#/projects/${p.project_id}` }, p.title)),
    h("p", { class: "muted small" }, headline(p)),
    progressBar(p),
    h("div", { class: "card-stats" },
      h("span", {}, h("strong", {}, yuan(p.raised)), " raised"),
      h("span", {}, h("strong", {}, count(p.investor_count)), " investors"),
      h("span", {}, "closes ", when(p.deadline).slice(0, 10))));
}

// ---- the list --------------------------------------------------------------------------------

let refocusTab = false; // keyboard users keep focus on the board tabs across the re-render

export async function projectList(container, _params, query) {
  const board = query.get("board") || "";
  const status = query.get("status") || "";
  const go = (b, s) => {
    const q = new URLSearchParams();
    if (b) q.set("board", b);
    if (s) q.set("status", s);
    location.hash = `#/projects${q.toString() ? `?${q}` : ""}`;
  };
  const tabs = [["", "All boards"], ...BOARDS].map(([value, label]) => h("button", {
    type: "button", role: "tab", id: `tab-${value || "all"}`, "aria-selected": String(value === board),
    "aria-controls": "project-grid", tabindex: value === board ? "0" : "-1",
    dataset: { board: value }, onclick: () => go(value, status),
  }, label));
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Board" }, tabs);
  tablist.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (event.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (event.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = tabs.length - 1;
    if (j === null) return;
    event.preventDefault();
    refocusTab = true;
    tabs[j].click();
  });
  const statusSelect = field("Status", { id: "status-filter", name: "status" }, { options: STATUSES });
  statusSelect.querySelector("select").value = status;
  statusSelect.querySelector("select").addEventListener("change", (e) => go(board, e.target.value));

  const grid = h("div", { id: "project-grid", class: "grid", role: "tabpanel",
    "aria-labelledby": `tab-${board || "all"}`, "aria-busy": "true" });
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "Projects"),
      h("p", { class: "muted" }, "Primary offerings on every board. Anyone can browse; sign in to invest.")),
    h("div", { class: "toolbar" }, tablist, statusSelect),
    grid);

  const params = new URLSearchParams();
  if (board) params.set("board", board);
  if (status) params.set("status", status);
  const projects = await get(`/v1/projects${params.toString() ? `?${params}` : ""}`);
  grid.removeAttribute("aria-busy");
  // Newest first: a freshly approved offering is what people come to look at.
  projects.sort((a, b) => b.project_id - a.project_id);
  if (!projects.length) {
    grid.append(h("p", { class: "empty" }, "No projects match this board and status."));
  } else {
    grid.append(...projects.map(projectCard));
  }
  if (refocusTab) {
    refocusTab = false;
    const selected = tabs.find((t) => t.getAttribute("aria-selected") === "true");
    if (selected) selected.focus();
  }
}

// ---- the detail page -------------------------------------------------------------------------

export async function projectDetail(container, [idText]) {
  const id = Number(idText);
  let project = await get(`/v1/projects/${id}`);
  const me = session.me;
  const isOwner = me && me.role === "issuer" && me.account_id === project.issuer_id;

  const liveDot = h("span", { id: "live", class: "live", role: "status", dataset: { state: "connecting" } }, "connecting…");
  const figures = h("div", { id: "figures" });
  const tiersBox = h("div", { id: "tiers" });
  const statusBox = h("span", { id: "project-status" }, badge(project.status));
  const termsBox = h("div", { id: "terms" });

  function renderFigures(p) {
    figures.replaceChildren(
      progressBar(p),
      facts([
        ["raised", "Raised", yuan(p.raised)],
        ["subscribed", "Subscribed", `${count(p.subscribed_quantity)} ${UNIT[p.board]}`],
        ["investors", "Investors", count(p.investor_count)],
        p.board === "product" && p.held_amount ? ["held", "Held until delivery", yuan(p.held_amount)] : null,
      ], { class: "facts big" }));
    statusBox.replaceChildren(badge(p.status));
    termsBox.replaceChildren(facts(termsFacts(p)));
    if (p.board === "product") {
      tiersBox.replaceChildren(h("h3", {}, "Reward tiers"), table([
        { label: "Tier", cell: (t) => String(t.tier_id) },
        { label: "Price", num: true, cell: (t) => yuan(t.price) },
        { label: "Quantity", num: true, cell: (t) => (t.quantity === null ? "unlimited" : count(t.quantity)) },
        { label: "Backed", num: true, cell: (t) => count(t.sold) },
        { label: "Remaining", num: true, cell: (t) => (t.remaining === null ? "unlimited"
          : t.remaining === 0 ? h("span", { class: "badge badge-failed" }, "sold out") : count(t.remaining)) },
      ], (p.tiers || []).map((t) => ({ ...t, __data: { tier: String(t.tier_id) } })), { id: "tier-table" }));
    }
  }

  container.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: `#/projects?board=${project.board}` }, `${BOARD_LABEL[project.board] || project.board} projects`),
      " / ", h("span", { "aria-current": "page" }, `#${project.project_id}`)),
    h("div", { class: "page-head" },
      h("div", { class: "title-row" },
        h("span", { class: `chip chip-${project.board}` }, BOARD_LABEL[project.board]), statusBox, liveDot),
      h("h1", { id: "project-title" }, project.title),
      project.description ? h("p", { class: "lead" }, project.description) : null),
  );
  const layout = h("div", { class: "detail" });
  const mainCol = h("div", { class: "detail-main" });
  const side = h("aside", { class: "detail-side", "aria-label": "Take part" });
  layout.append(mainCol, side);
  container.append(layout);

  mainCol.append(panel("Funding", figures), panel("Terms", termsBox, tiersBox));
  renderFigures(project);

  // Debt schedule, distributions and disclosures load in parallel, each in its own panel.
  const extras = [];
  if (project.board === "debt") {
    const box = h("div", { id: "schedule" }, h("p", { class: "muted" }, "Loading…"));
    mainCol.append(panel("Repayment schedule", box));
    extras.push(get(`/v1/projects/${id}/schedule`).then((rows) => box.replaceChildren(table([
      { label: "#", cell: (r) => String(r.number) },
      { label: "Due", cell: (r) => when(r.due).slice(0, 10) },
      { label: "Principal", num: true, cell: (r) => yuan(r.principal) },
      { label: "Interest", num: true, cell: (r) => yuan(r.interest) },
      { label: "Amount", num: true, cell: (r) => yuan(r.amount) },
      { label: "Paid", num: true, cell: (r) => yuan(r.paid) },
      { label: "Status", cell: (r) => badge(r.status) },
    ], rows, { empty: "The schedule starts when the loan closes successfully." }))));
  }
  if (project.board === "debt" || project.board === "ip") {
    const box = h("div", { id: "distributions" });
    mainCol.append(panel(project.board === "debt" ? "Repayments paid" : "Royalties paid", box));
    extras.push(get(`/v1/projects/${id}/distributions`).then((rows) => box.replaceChildren(table([
      { label: "Time", cell: (r) => when(r.time) },
      { label: "Amount", num: true, cell: (r) => yuan(r.amount) },
      { label: "Fee", num: true, cell: (r) => yuan(r.fee) },
      { label: "Status", cell: (r) => badge(r.status) },
    ], rows, { empty: "No distributions yet." }))));
  }
  const disclosuresBox = h("div", { id: "disclosures" });
  const loadDisclosures = () => get(`/v1/projects/${id}/disclosures`).then((rows) => {
    disclosuresBox.replaceChildren(rows.length
      ? h("ol", { class: "disclosures", reversed: true }, rows.slice().reverse().map((d) => h("li", {},
        h("div", { class: "disclosure-head" }, h("strong", {}, d.title), h("span", { class: "muted small" }, when(d.time))),
        h("p", { class: "pre" }, d.body))))
      : h("p", { class: "empty" }, "No disclosures yet."));
  });
  mainCol.append(panel("Disclosures", disclosuresBox));
  extras.push(loadDisclosures());

  // ---- role panels ----
  const rerender = () => window.dispatchEvent(new Event("crowdex:session"));
  if (!me) {
    side.append(panel("Invest", h("p", {}, project.status === "open"
      ? "This offering is open. " : "",
    h("a", { href: `#/signin?next=${encodeURIComponent(`/projects/${id}`)}` }, "Sign in"),
    " with an investor key to subscribe.")));
  } else if (me.role === "investor") {
    side.append(subscribePanel(project, () => project));
    extras.push(ownAllocations(side, project));
  } else if (isOwner) {
    side.append(issuerPanel(project, loadDisclosures));
  } else if (me.role === "operator") {
    side.append(operatorPanel(project, rerender));
  }

  await Promise.allSettled(extras);

  // Live figures over the WebSocket; a status change (approve, close) redraws the page.
  const live = new LiveChannel(`project:${id}`, (data) => {
    const statusChanged = data.status !== project.status;
    project = data;
    if (statusChanged) { rerender(); return; }
    renderFigures(data);
    const tierSelect = side.querySelector("#sub-tier");
    if (tierSelect) refreshTierOptions(tierSelect, data);
  }, (state) => {
    liveDot.dataset.state = state;
    liveDot.textContent = { live: "live", connecting: "connecting…", offline: "reconnecting…" }[state];
  });
  return () => live.close();
}

function refreshTierOptions(select, p) {
  const chosen = select.value;
  select.replaceChildren(...(p.tiers || p.terms.tiers).map((t) => h("option", {
    value: String(t.tier_id), disabled: t.remaining === 0 ? true : null,
  }, `${t.tier_id} — ${yuan(t.price)}${t.remaining === null || t.remaining === undefined ? "" : t.remaining === 0 ? " (sold out)" : ` (${count(t.remaining)} left)`}`)));
  if (chosen) select.value = chosen;
}

function subscribePanel(project, current) {
  const messages = messageArea();
  messages.el.id = "subscribe-message";
  const cash = h("div", { id: "my-cash" });
  const renderCash = () => cash.replaceChildren(facts([
    ["available", "Cash available", yuan(session.me.cash_available)],
    ["reserved", "Cash reserved", yuan(session.me.cash_reserved)],
  ]));
  renderCash();
  if (project.status !== "open") {
    return panel("Invest", h("p", {}, "Subscriptions are closed: this project is ", badge(project.status), "."), cash);
  }
  const p = project;
  const qty = field(`Quantity (${UNIT[p.board]})`, { id: "sub-quantity", name: "quantity", inputmode: "numeric",
    required: true, autocomplete: "off", value: "1" });
  const controls = [];
  let tierSelect = null;
  if (p.board === "product") {
    const tierField = field("Reward tier", { id: "sub-tier", name: "tier_id" }, { options: [] });
    tierSelect = tierField.querySelector("select");
    refreshTierOptions(tierSelect, p);
    const firstOpen = (p.tiers || []).find((t) => t.remaining !== 0);
    if (firstOpen) tierSelect.value = String(firstOpen.tier_id);
    controls.push(tierField);
  }
  controls.push(qty);
  if (p.board === "debt" && p.terms.auction) {
    controls.push(field("Lowest rate you accept (% p.a.)", { id: "sub-rate", name: "rate", inputmode: "decimal",
      required: true, autocomplete: "off" }, { hint: `At most ${percent(p.terms.auction.max_rate_bps)}. Everyone filled earns the clearing rate.` }));
  }
  const cost = h("p", { id: "sub-cost", class: "cost", "aria-live": "polite" });
  const form = h("form", { id: "subscribe-form", class: "stack" }, controls, cost,
    h("button", { type: "submit", class: "primary" }, "Subscribe"));

  const priceOf = () => {
    if (p.board !== "product") return unitPrice(p);
    const tiers = current().tiers || p.terms.tiers;
    const tier = tiers.find((t) => String(t.tier_id) === tierSelect.value);
    return tier ? tier.price : null;
  };
  const updateCost = () => {
    try {
      const q = parseCount(form.querySelector("#sub-quantity").value);
      const price = priceOf();
      cost.textContent = price === null ? "" : `Reserves ${yuan(times(price, q))} now (${count(q)} × ${yuan(price)}).`;
    } catch { cost.textContent = ""; }
  };
  form.addEventListener("input", updateCost);
  updateCost();

  onSubmit(form, messages, async () => {
    const body = { quantity: parseCount(form.querySelector("#sub-quantity").value) };
    if (tierSelect) {
      const original = (current().tiers || p.terms.tiers).find((t) => String(t.tier_id) === tierSelect.value);
      body.tier_id = original ? original.tier_id : tierSelect.value;
    }
    const rate = form.querySelector("#sub-rate");
    if (rate) body.rate_bps = parseHundredths(rate.value, { what: "rate" });
    const result = await post(`/v1/projects/${p.project_id}/subscriptions`, body);
    await refreshSession();
    renderCash();
    messages.ok(h("span", { dataset: { subscriptionId: result.subscription_id } },
      `Subscription #${result.subscription_id} accepted: ${yuan(result.reserved_amount)} reserved. `),
    h("a", { href: "#/account" }, "See your subscriptions"));
  });
  return panel("Invest", form, messages.el, cash);
}

async function ownAllocations(side, project) {
  if (!["succeeded", "failed", "trading"].includes(project.status)) return;
  const rows = await get(`/v1/projects/${project.project_id}/allocations`);
  if (!rows.length) return;
  side.append(panel("Your allocation", allocationTable(rows)));
}

function allocationTable(rows) {
  return table([
    { label: "Account", cell: (r) => `#${r.account_id}` },
    { label: "Quantity", num: true, cell: (r) => count(r.quantity) },
    { label: "Amount", num: true, cell: (r) => yuan(r.amount) },
    { label: "Refunded", num: true, cell: (r) => yuan(r.refunded) },
  ], rows, { id: "allocations" });
}

function issuerPanel(project, reloadDisclosures) {
  const parts = [];
  const dMessages = messageArea();
  dMessages.el.id = "disclosure-message";
  const dForm = h("form", { id: "disclosure-form", class: "stack" },
    field("Title", { id: "disc-title", name: "title", required: true, maxlength: "200" }),
    field("Text", { id: "disc-body", name: "body", type: "textarea", required: true, rows: "5" }),
    h("button", { type: "submit", class: "primary" }, "Publish disclosure"));
  onSubmit(dForm, dMessages, async () => {
    await post(`/v1/projects/${project.project_id}/disclosures`, {
      title: dForm.querySelector("#disc-title").value.trim(), body: dForm.querySelector("#disc-body").value,
    });
    dForm.reset();
    dMessages.ok("Disclosure published.");
    await reloadDisclosures();
  });
  parts.push(panel("Post a disclosure", h("p", { class: "muted small" },
    project.board === "debt" || project.board === "ip" ? "Debt and IP issuers owe one disclosure a month." : "Keep your backers informed."),
  dForm, dMessages.el));

  if ((project.board === "debt" || project.board === "ip") && ["succeeded", "trading"].includes(project.status)) {
    const m = messageArea();
    m.el.id = "distribution-message";
    const form = h("form", { id: "distribution-form", class: "stack" },
      field("Amount (¥)", { id: "dist-amount", name: "amount", inputmode: "decimal", required: true, autocomplete: "off" },
        { hint: project.board === "debt" ? "A repayment; it covers the oldest unpaid instalment first." : "The holders' royalty share of your receipts." }),
      h("button", { type: "submit", class: "primary" }, project.board === "debt" ? "Pay repayment" : "Pay royalties"));
    onSubmit(form, m, async () => {
      const amount = parseHundredths(form.querySelector("#dist-amount").value);
      const result = await post(`/v1/projects/${project.project_id}/distributions`, { amount });
      form.reset();
      m.ok(`Distribution of ${yuan(result.amount ?? amount)} recorded; holders are paid at the next settlement batch.`);
    });
    parts.push(panel(project.board === "debt" ? "Repay" : "Distribute royalties", form, m.el));
  }
  if (["succeeded", "failed", "trading"].includes(project.status)) {
    const box = h("div", {});
    get(`/v1/projects/${project.project_id}/allocations`).then((rows) => box.replaceChildren(allocationTable(rows)))
      .catch(() => {});
    parts.push(panel("Allocations", box));
  }
  return h("div", { class: "stack" }, parts);
}

function operatorPanel(project, rerender) {
  const m = messageArea();
  m.el.id = "operator-message";
  const buttons = [];
  const act = (label, action, cls) => actionButton(label, m, async () => {
    await post(`/v1/projects/${project.project_id}/${action}`, action === "delivery" ? { delivered: true } : {});
    rerender();
  }, { class: cls, id: `op-${action}` });
  if (project.status === "pending_review") buttons.push(act("Approve", "approve", "primary"), act("Reject", "reject", "danger"));
  if (project.status === "open") buttons.push(act("Close offering now", "close", "danger"));
  if (project.board === "product" && project.status === "succeeded" && project.held_amount > 0) {
    buttons.push(act("Confirm delivery (release held payout)", "delivery", "primary"));
  }
  const parts = [panel("Operator", buttons.length ? h("div", { class: "button-row" }, buttons)
    : h("p", { class: "muted" }, "No review action for this project."), m.el)];
  if (["succeeded", "failed", "trading"].includes(project.status)) {
    const box = h("div", {});
    get(`/v1/projects/${project.project_id}/allocations`).then((rows) => box.replaceChildren(allocationTable(rows)))
      .catch(() => {});
    parts.push(panel("Allocations", box));
  }
  return h("div", { class: "stack" }, parts);
}
