// The operator's desk: the review queue (each listing with its issuer and terms), open
// offerings, accounts and deposits, the manual clock (shown only when the venue runs one),
// settlement and reconciliation. Approve, reject, close and a settlement batch cannot be undone,
// so each asks for confirmation in a dialog first.
import { api, get, post } from "../api.js";
import {
  actionButton, badge, confirmDialog, errorBox, facts, field, h, keepValues, loadInto,
  messageArea, newReference, onSubmit, panel, table, when,
} from "../dom.js";
import { t } from "../i18n.js";
import { count, parseCount, parseYuan, yuan } from "../money.js";
import { loadVenue, venue } from "../venue.js";
import { boardLabel, headline, issuerName, progressBar, termsFacts, timelineEl } from "./funding.js";
import { confirmProjectAction } from "./project_panels.js";

const UNITS = [["86400", "unit.days"], ["3600", "unit.hours"], ["60", "unit.minutes"], ["1", "unit.seconds"]];

function stateFacts(state) {
  return facts([
    ["now", t("op.exchange_time"), when(state.now)], ["sequence", t("op.sequence"), count(state.sequence)],
    ["cash_total", t("op.cash_total"), yuan(state.cash_total)],
    ["clock", t("op.clock"), t(venue.clock === "manual" ? "op.clock_manual" : "op.clock_wall")],
  ], { class: "facts inline" });
}

/** A listing's terms in brief for the queue; the full list is one click away. */
function termsCell(p) {
  const rows = termsFacts(p).filter(([key]) => !["issuer", "created"].includes(key));
  return h("details", { class: "terms-brief" }, h("summary", {}, keepValues(headline(p))),
    facts(rows));
}

function projectQueues(messages) {
  const queueBox = h("div", { id: "review-queue" });
  const openBox = h("div", { id: "open-projects" });
  const projectCell = (p) => [h("a", { href: `#/projects/${p.project_id}` }, p.title),
    h("div", { class: "muted small" }, `#${p.project_id} · ${boardLabel(p.board)}`)];
  const load = async () => {
    const act = (p, action, cls) => actionButton(t(`op.${action}`), messages, async () => {
      if (!(await confirmProjectAction(p, action))) return;
      const result = await post(`/v1/projects/${p.project_id}/${action}`);
      messages.ok(t("op.now_status", { title: p.title }), " ", badge(result.status));
      await load();
    }, { class: `small ${cls}`, dataset: { action, projectId: p.project_id }, "aria-label": `${t(`op.${action}`)} ${p.title}` });
    await loadInto(queueBox, async () => table([
      { label: t("review.project"), name: true, cell: projectCell },
      { label: t("terms.issuer"), name: true, cell: (p) => h("span", { dataset: { field: "issuer" } }, issuerName(p)) },
      { label: t("detail.terms"), cell: termsCell },
      { label: t("terms.proposed_deadline"), cell: (p) => when(p.deadline) },
      { label: t("review.decision"), cell: (p) => h("div", { class: "button-row" }, act(p, "approve", "primary"), act(p, "reject", "danger")) },
    ], (await get("/v1/projects?status=pending_review")).map((p) => ({ ...p, __data: { projectId: p.project_id } })),
    { empty: t("review.empty"), id: "review-table", caption: t("review.title"), cards: true }));
    await loadInto(openBox, async () => table([
      { label: t("review.project"), name: true, cell: projectCell },
      { label: t("terms.issuer"), name: true, cell: (p) => issuerName(p) },
      { label: t("funding.progress"), cell: (p) => progressBar(p) },
      { label: t("funding.raised"), num: true, cell: (p) => yuan(p.raised) },
      { label: t("funding.when"), cell: (p) => timelineEl(p) },
      { label: t("review.decision"), cell: (p) => act(p, "close", "danger") },
    ], (await get("/v1/projects?status=open")).map((p) => ({ ...p, __data: { projectId: p.project_id } })),
    { empty: t("review.no_open"), id: "open-table", caption: t("review.open_title"), cards: true }));
  };
  return { queueBox, openBox, load };
}

function accountForm(onCreated) {
  const messages = messageArea();
  messages.el.id = "account-message";
  const classField = field(t("account.class"), { id: "acc-class", name: "investor_class" },
    { options: ["retail", "qualified", "institutional"].map((c) => [c, t(`class.${c}`)]) });
  const investorOnly = h("div", { class: "investor-only stack" }, classField,
    field(t("op.income"), { id: "acc-income", name: "annual_income", inputmode: "decimal", autocomplete: "off" }, { hint: t("op.income_hint") }),
    field(t("op.net_worth"), { id: "acc-networth", name: "net_worth", inputmode: "decimal", autocomplete: "off" }, { hint: t("op.optional") }));
  const roleField = field(t("account.role"), { id: "acc-role", name: "role" }, { options: ["investor", "issuer", "operator"].map((r) => [r, t(`role.${r}`)]) });
  const form = h("form", { id: "create-account-form", class: "stack" }, roleField,
    field(t("account.name"), { id: "acc-name", name: "name", required: true, maxlength: "200", autocomplete: "off" }),
    investorOnly, h("button", { type: "submit", class: "primary" }, t("op.create_account")));
  const roleSelect = roleField.querySelector("select");
  roleSelect.addEventListener("change", () => { investorOnly.hidden = roleSelect.value !== "investor"; });
  const keyBox = h("div", { id: "new-key", "aria-live": "polite" });
  onSubmit(form, messages, async () => {
    const role = roleSelect.value;
    const body = { role, name: form.querySelector("#acc-name").value.trim() };
    if (role === "investor") {
      body.investor_class = form.querySelector("#acc-class").value;
      const income = form.querySelector("#acc-income").value.trim();
      const worth = form.querySelector("#acc-networth").value.trim();
      if (income) body.annual_income = parseYuan(income, t("op.income"));
      if (worth) body.net_worth = parseYuan(worth, t("op.net_worth"));
    }
    const result = await post("/v1/accounts", body);
    const keyText = h("code", { class: "api-key", dataset: { accountId: result.account_id } }, result.api_key);
    const copy = h("button", { type: "button", class: "small ghost", onclick: async () => {
      try { await navigator.clipboard.writeText(result.api_key); copy.textContent = t("op.copied"); } catch { copy.textContent = t("op.select_copy"); }
    } }, t("op.copy"));
    keyBox.replaceChildren(h("div", { class: "key-reveal", role: "status" },
      h("p", {}, h("strong", {}, t("shell.account_n", { id: result.account_id })), " ",
        t("op.account_created", { role: t(`role.${result.role}`), name: body.name })),
      h("p", { class: "small" }, t("op.key_once")),
      h("div", { class: "key-line" }, keyText, copy)));
    form.querySelector("#acc-name").value = "";
    onCreated(result.account_id);
  });
  return panel(t("op.open_account"), form, messages.el, keyBox);
}

function depositForm(onDone) {
  const messages = messageArea();
  messages.el.id = "deposit-message";
  const form = h("form", { id: "deposit-form", class: "stack" },
    field(t("op.account_id"), { id: "dep-account", name: "account_id", required: true, inputmode: "numeric", autocomplete: "off" }),
    field(t("withdraw.amount"), { id: "dep-amount", name: "amount", required: true, inputmode: "decimal", autocomplete: "off" }),
    field(t("op.bank_reference"), { id: "dep-reference", name: "reference", required: true, maxlength: "100", value: newReference("dep") },
      { hint: t("op.bank_reference_hint") }),
    h("button", { type: "submit", class: "primary" }, t("op.credit")));
  onSubmit(form, messages, async () => {
    const accountId = parseCount(form.querySelector("#dep-account").value, { what: t("op.account_id") });
    const amount = parseYuan(form.querySelector("#dep-amount").value);
    const reference = form.querySelector("#dep-reference").value.trim();
    const result = await post(`/v1/accounts/${accountId}/deposits`, { amount, reference });
    messages.ok(t("op.credited", { amount: yuan(amount), id: result.account_id, available: yuan(result.cash_available) }));
    form.querySelector("#dep-amount").value = "";
    form.querySelector("#dep-reference").value = newReference("dep");
    await onDone();
  });
  return { form, panel: panel(t("op.deposit"), form, messages.el) };
}

function clockPanel(onDone) {
  const messages = messageArea();
  messages.el.id = "clock-message";
  const form = h("form", { id: "clock-form", class: "inline-form" },
    field(t("op.advance_by"), { id: "clock-amount", name: "amount", required: true, inputmode: "numeric", value: "1", autocomplete: "off" }),
    field(t("op.unit"), { id: "clock-unit", name: "unit" }, { options: UNITS.map(([v, key]) => [v, t(key)]) }),
    h("button", { type: "submit", class: "primary" }, t("op.advance")));
  onSubmit(form, messages, async () => {
    const n = parseCount(form.querySelector("#clock-amount").value, { what: t("op.advance_by") });
    const seconds = BigInt(n) * BigInt(form.querySelector("#clock-unit").value);
    if (seconds > 2n ** 53n) throw new RangeError(t("op.too_far"));
    const result = await post("/v1/admin/clock", { advance_seconds: Number(seconds) });
    messages.ok(t("op.clock_now", { time: when(result.now) }));
    await onDone();
  });
  return panel(t("op.clock_title"), h("p", { class: "muted small" }, t("op.clock_lead")), form, messages.el);
}

function batchTable(batches, download) {
  return table([
    { label: t("settle.batch"), cell: (b) => `#${b.batch_id}` },
    { label: t("op.exchange_time"), cell: (b) => when(b.exchange_time) },
    { label: t("settle.cutoff"), num: true, cell: (b) => count(b.cutoff_sequence) },
    { label: t("settle.movements"), num: true, cell: (b) => count(b.movement_count ?? 0) },
    { label: t("settle.trades"), num: true, cell: (b) => count(b.trade_count) },
    { label: t("settle.legs"), num: true, cell: (b) => count(b.entry_count) },
    { label: t("subs.status"), cell: (b) => badge(b.status) },
    { label: t("settle.report"), cell: (b) => download(b.batch_id) },
  ], batches.map((b) => ({ ...b, __data: { batchId: b.batch_id } })),
  { empty: t("settle.none"), id: "batch-table", caption: t("settle.batches"), cards: true });
}

function reconContent(r) {
  const asset = (x) => (x.asset === 0 ? t("settle.cash") : t("settle.instrument", { id: x.asset }));
  const amount = (x, v) => (x.asset === 0 ? yuan(v) : count(v));
  return [
    h("p", { id: "recon-status", class: `recon ${r.balanced ? "ok" : "bad"}`, dataset: { balanced: String(r.balanced) } },
      t(r.balanced ? "settle.balanced" : "settle.unbalanced")),
    facts([
      ["cash_total", t("settle.ledger_cash"), yuan(r.cash_total)],
      r.engine_cash_total !== undefined ? ["engine_cash_total", t("settle.engine_cash"), yuan(r.engine_cash_total)] : null,
      r.accounts_checked !== undefined ? ["accounts_checked", t("settle.accounts_checked"), count(r.accounts_checked)] : null,
      r.last_batch_id !== undefined ? ["last_batch", t("settle.last_batch"), r.last_batch_id ? `#${r.last_batch_id}` : "—"] : null,
    ]),
    r.mismatches.length ? table([
      { label: t("alloc.account"), cell: (x) => `#${x.account_id}` },
      { label: t("settle.asset"), cell: asset },
      { label: t("settle.ledger"), num: true, cell: (x) => amount(x, x.ledger_amount) },
      { label: t("settle.engine"), num: true, cell: (x) => amount(x, x.engine_amount) },
      { label: t("settle.difference"), num: true, cell: (x) => amount(x, x.difference) },
    ], r.mismatches, { cards: true,
      caption: t("settle.breaks", { n: r.mismatch_count ?? r.mismatches.length }) }) : null,
  ].filter(Boolean);
}

function settlementPanels(onDone) {
  const messages = messageArea();
  messages.el.id = "settlement-message";
  const batchesBox = h("div", { id: "batches" });
  const reconBox = h("div", { id: "reconciliation" });
  const download = (batchId) => actionButton(t("settle.csv"), messages, async () => {
    const response = await api("GET", `/v1/settlement/batches/${batchId}/report`, undefined, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: `settlement-batch-${batchId}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }, { class: "small ghost", "aria-label": t("settle.csv_label", { id: batchId }) });
  const load = () => Promise.all([
    loadInto(batchesBox, async () => batchTable((await get("/v1/settlement/batches")).batches, download)),
    loadInto(reconBox, async () => reconContent(await get("/v1/settlement/reconciliation"))),
  ]);
  const run = actionButton(t("settle.run"), messages, async () => {
    const ok = await confirmDialog({ title: t("confirm.settle_title"), text: t("confirm.settle_text"), confirm: t("confirm.settle") });
    if (!ok) return;
    const b = await post("/v1/settlement/batches");
    messages.ok(t("settle.done", { id: b.batch_id, legs: count(b.entry_count), trades: count(b.trade_count), seq: count(b.cutoff_sequence) }), " ", badge(b.status));
    await load();
    await onDone();
  }, { class: "primary", id: "run-batch" });
  const panels = h("div", { class: "span-2 stack" },
    panel(t("settle.title"), h("p", { class: "muted small" }, t("settle.lead")),
      h("div", { class: "button-row" }, run), messages.el, batchesBox),
    panel(t("settle.recon"), reconBox));
  return { panels, load };
}

export async function operatorView(container) {
  const clockFacts = h("div", { id: "exchange-state" });
  const loadState = async () => {
    try {
      const [state] = await Promise.all([get("/v1/admin/state"), loadVenue()]);
      clockFacts.replaceChildren(stateFacts(state));
    } catch (err) {
      clockFacts.replaceChildren(errorBox(err, loadState));
    }
  };
  container.append(h("div", { class: "page-head" }, h("h1", {}, t("op.desk")), clockFacts));
  await loadState();

  const grid = h("div", { class: "ops-grid" });
  container.append(grid);
  const queueMessages = messageArea();
  queueMessages.el.id = "review-message";
  const queues = projectQueues(queueMessages);
  grid.append(h("div", { class: "span-2 stack" },
    panel(t("review.title"), queueMessages.el, queues.queueBox),
    panel(t("review.open_title"), h("p", { class: "muted small" }, t("review.close_lead")), queues.openBox)));

  const deposit = depositForm(loadState);
  const rightStack = h("div", { class: "stack" }, deposit.panel);
  grid.append(accountForm((id) => { deposit.form.querySelector("#dep-account").value = String(id); }), rightStack);
  // The clock form only where it can work: a wall-clock venue cannot be moved (409).
  if (venue.clock === "manual") {
    rightStack.append(clockPanel(async () => { await loadState(); await queues.load(); }));
  }
  const settlement = settlementPanels(loadState);
  grid.append(settlement.panels);
  await Promise.all([queues.load(), settlement.load()]);
}
