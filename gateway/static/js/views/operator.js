import { api, get, post } from "../api.js";
import {
  actionButton, badge, errorContent, facts, field, h, messageArea, newReference, onSubmit, panel,
  table, when,
} from "../dom.js";
import { count, parseCount, parseYuan, yuan } from "../money.js";
import { BOARD_LABEL } from "./projects.js";

const UNITS = [["86400", "days"], ["3600", "hours"], ["60", "minutes"], ["1", "seconds"]];

export async function operatorView(container) {
  const clockFacts = h("div", { id: "exchange-state" });
  const loadState = async () => {
    const state = await get("/v1/admin/state");
    clockFacts.replaceChildren(facts([
      ["now", "Exchange time", when(state.now)], ["sequence", "Journal sequence", count(state.sequence)],
      ["cash_total", "Cash in venue", yuan(state.cash_total)],
    ], { class: "facts inline" }));
  };
  container.append(h("div", { class: "page-head" }, h("h1", {}, "Operator desk"), clockFacts));
  await loadState().catch((err) => clockFacts.replaceChildren(h("p", { class: "message error" }, ...errorContent(err))));

  const grid = h("div", { class: "ops-grid" });
  container.append(grid);

  // ---- review queue and open offerings ----
  const queueMessages = messageArea();
  queueMessages.el.id = "review-message";
  const queueBox = h("div", { id: "review-queue" });
  const openBox = h("div", { id: "open-projects" });
  const projectCell = (p) => h("a", { href: `#/projects/${p.project_id}` }, p.title);
  const loadProjects = async () => {
    const [pending, open] = await Promise.all([get("/v1/projects?status=pending_review"), get("/v1/projects?status=open")]);
    const act = (p, action, label, cls) => actionButton(label, queueMessages, async () => {
      const result = await post(`/v1/projects/${p.project_id}/${action}`);
      queueMessages.ok(`#${p.project_id} ${p.title}: now `, badge(result.status), ".");
      await loadProjects();
    }, { class: `small ${cls}`, dataset: { action, projectId: p.project_id }, "aria-label": `${label} ${p.title}` });
    queueBox.replaceChildren(table([
      { label: "#", cell: (p) => String(p.project_id) },
      { label: "Project", cell: projectCell },
      { label: "Board", cell: (p) => BOARD_LABEL[p.board] || p.board },
      { label: "Issuer", cell: (p) => `#${p.issuer_id}` },
      { label: "Deadline", cell: (p) => when(p.deadline) },
      { label: "Decision", cell: (p) => h("div", { class: "button-row" }, act(p, "approve", "Approve", "primary"), act(p, "reject", "Reject", "danger")) },
    ], pending.map((p) => ({ ...p, __data: { projectId: p.project_id } })), { empty: "Nothing waiting for review.", id: "review-table" }));
    openBox.replaceChildren(table([
      { label: "#", cell: (p) => String(p.project_id) },
      { label: "Project", cell: projectCell },
      { label: "Board", cell: (p) => BOARD_LABEL[p.board] || p.board },
      { label: "Raised", num: true, cell: (p) => yuan(p.raised) },
      { label: "Deadline", cell: (p) => when(p.deadline) },
      { label: "", cell: (p) => act(p, "close", "Close now", "danger") },
    ], open.map((p) => ({ ...p, __data: { projectId: p.project_id } })), { empty: "No open offerings.", id: "open-table" }));
  };
  await loadProjects();
  grid.append(h("div", { class: "span-2 stack" },
    panel("Review queue", queueMessages.el, queueBox),
    panel("Open offerings", h("p", { class: "muted small" }, "Closing allocates now (or fails the offering below its target)."), openBox)));

  // ---- accounts ----
  const accMessages = messageArea();
  accMessages.el.id = "account-message";
  const classField = field("Investor class", { id: "acc-class", name: "investor_class" },
    { options: [["retail", "Retail"], ["qualified", "Qualified"], ["institutional", "Institutional"]] });
  const investorOnly = h("div", { class: "investor-only stack" }, classField,
    field("Annual income (¥)", { id: "acc-income", name: "annual_income", inputmode: "decimal", autocomplete: "off" }, { hint: "Optional; sets the retail limit." }),
    field("Net worth (¥)", { id: "acc-networth", name: "net_worth", inputmode: "decimal", autocomplete: "off" }, { hint: "Optional." }));
  const roleField = field("Role", { id: "acc-role", name: "role" }, { options: [["investor", "Investor"], ["issuer", "Issuer"], ["operator", "Operator"]] });
  const accForm = h("form", { id: "create-account-form", class: "stack" }, roleField,
    field("Name", { id: "acc-name", name: "name", required: true, maxlength: "200", autocomplete: "off" }),
    investorOnly, h("button", { type: "submit", class: "primary" }, "Create account"));
  const roleSelect = roleField.querySelector("select");
  roleSelect.addEventListener("change", () => { investorOnly.hidden = roleSelect.value !== "investor"; });
  const keyBox = h("div", { id: "new-key", "aria-live": "polite" });
  onSubmit(accForm, accMessages, async () => {
    const role = roleSelect.value;
    const body = { role, name: accForm.querySelector("#acc-name").value.trim() };
    if (role === "investor") {
      body.investor_class = accForm.querySelector("#acc-class").value;
      const income = accForm.querySelector("#acc-income").value.trim();
      const worth = accForm.querySelector("#acc-networth").value.trim();
      if (income) body.annual_income = parseYuan(income, "annual income");
      if (worth) body.net_worth = parseYuan(worth, "net worth");
    }
    const result = await post("/v1/accounts", body);
    const keyText = h("code", { class: "api-key", dataset: { accountId: result.account_id } }, result.api_key);
    const copy = h("button", { type: "button", class: "small ghost", onclick: async () => {
      try { await navigator.clipboard.writeText(result.api_key); copy.textContent = "Copied"; } catch { copy.textContent = "Select and copy"; }
    } }, "Copy");
    keyBox.replaceChildren(h("div", { class: "key-reveal", role: "status" },
      h("p", {}, h("strong", {}, `Account #${result.account_id}`), ` (${result.role}, ${body.name}) created.`),
      h("p", { class: "small" }, "Its API key is shown only this once. Hand it over now:"),
      h("div", { class: "key-line" }, keyText, copy)));
    accForm.querySelector("#acc-name").value = "";
    depForm.querySelector("#dep-account").value = String(result.account_id); // ready to fund it
  });

  // ---- deposits ----
  const depMessages = messageArea();
  depMessages.el.id = "deposit-message";
  const depForm = h("form", { id: "deposit-form", class: "stack" },
    field("Account id", { id: "dep-account", name: "account_id", required: true, inputmode: "numeric", autocomplete: "off" }),
    field("Amount (¥)", { id: "dep-amount", name: "amount", required: true, inputmode: "decimal", autocomplete: "off" }),
    field("Bank reference", { id: "dep-reference", name: "reference", required: true, maxlength: "100", value: newReference("dep") },
      { hint: "The custodian's credit reference; a repeat with the same one is not credited twice." }),
    h("button", { type: "submit", class: "primary" }, "Credit deposit"));
  onSubmit(depForm, depMessages, async () => {
    const accountId = parseCount(depForm.querySelector("#dep-account").value, { what: "account id" });
    const amount = parseYuan(depForm.querySelector("#dep-amount").value);
    const reference = depForm.querySelector("#dep-reference").value.trim();
    const result = await post(`/v1/accounts/${accountId}/deposits`, { amount, reference });
    depMessages.ok(`Credited ${yuan(amount)} to account #${result.account_id}; available now ${yuan(result.cash_available)}.`);
    depForm.querySelector("#dep-amount").value = "";
    depForm.querySelector("#dep-reference").value = newReference("dep");
    await loadState().catch(() => {});
  });
  const rightStack = h("div", { class: "stack" }, panel("Deposit (custodian credit)", depForm, depMessages.el));
  grid.append(panel("Open an account", accForm, accMessages.el, keyBox), rightStack);

  // ---- clock ----
  const clockMessages = messageArea();
  clockMessages.el.id = "clock-message";
  const clockForm = h("form", { id: "clock-form", class: "inline-form" },
    field("Advance by", { id: "clock-amount", name: "amount", required: true, inputmode: "numeric", value: "1", autocomplete: "off" }),
    field("Unit", { id: "clock-unit", name: "unit" }, { options: UNITS }),
    h("button", { type: "submit", class: "primary" }, "Advance clock"));
  onSubmit(clockForm, clockMessages, async () => {
    const n = parseCount(clockForm.querySelector("#clock-amount").value, { what: "amount" });
    const seconds = BigInt(n) * BigInt(clockForm.querySelector("#clock-unit").value);
    if (seconds > 2n ** 53n) throw new RangeError("too far");
    try {
      const result = await post("/v1/admin/clock", { advance_seconds: Number(seconds) });
      clockMessages.ok(`Exchange time is now ${when(result.now)}. Deadlines that passed have fired.`);
      await loadState().catch(() => {});
    } catch (err) {
      if (err.code === "clock_not_manual") {
        clockMessages.error({ code: err.code, detail: "This exchange runs on the wall clock (started without --clock manual), so time cannot be advanced from here." });
        return;
      }
      throw err;
    }
  });
  rightStack.append(panel("Exchange clock", h("p", { class: "muted small" }, "Only with the manual clock (crowdex serve --clock manual)."), clockForm, clockMessages.el));

  // ---- settlement ----
  const setMessages = messageArea();
  setMessages.el.id = "settlement-message";
  const batchesBox = h("div", { id: "batches" });
  const reconBox = h("div", { id: "reconciliation" });
  const download = (batchId) => actionButton("CSV", setMessages, async () => {
    const response = await api("GET", `/v1/settlement/batches/${batchId}/report`, undefined, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: `settlement-batch-${batchId}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }, { class: "small ghost", "aria-label": `Download the custodian report of batch ${batchId}` });
  const loadSettlement = async () => {
    const [batches, recon] = await Promise.allSettled([get("/v1/settlement/batches"), get("/v1/settlement/reconciliation")]);
    if (batches.status === "fulfilled") {
      batchesBox.replaceChildren(table([
        { label: "Batch", cell: (b) => `#${b.batch_id}` },
        { label: "Exchange time", cell: (b) => when(b.exchange_time) },
        { label: "Cutoff seq.", num: true, cell: (b) => count(b.cutoff_sequence) },
        { label: "Movements", num: true, cell: (b) => count(b.movement_count ?? 0) },
        { label: "Trades", num: true, cell: (b) => count(b.trade_count) },
        { label: "Ledger legs", num: true, cell: (b) => count(b.entry_count) },
        { label: "Instructions", num: true, cell: (b) => count(b.instruction_count ?? 0) },
        { label: "Status", cell: (b) => badge(b.status) },
        { label: "Report", cell: (b) => download(b.batch_id) },
      ], batches.value.batches.map((b) => ({ ...b, __data: { batchId: b.batch_id } })), { empty: "No batch has run yet.", id: "batch-table" }));
    } else {
      batchesBox.replaceChildren(h("p", { class: "message error", role: "alert" }, ...errorContent(batches.reason)));
    }
    if (recon.status === "fulfilled") {
      const r = recon.value;
      reconBox.replaceChildren(...[
        h("p", { id: "recon-status", class: `recon ${r.balanced ? "ok" : "bad"}`, dataset: { balanced: String(r.balanced) } },
          r.balanced ? "Balanced: the ledger matches the engine." : "Not balanced: breaks below block the next batch."),
        facts([
          ["cash_total", "Ledger cash", yuan(r.cash_total)],
          r.engine_cash_total !== undefined ? ["engine_cash_total", "Engine settled cash", yuan(r.engine_cash_total)] : null,
          r.accounts_checked !== undefined ? ["accounts_checked", "Accounts checked", count(r.accounts_checked)] : null,
          r.last_batch_id !== undefined ? ["last_batch", "Last batch", r.last_batch_id ? `#${r.last_batch_id}` : "none"] : null,
        ]),
        r.mismatches.length ? table([
          { label: "Account", cell: (x) => `#${x.account_id}` },
          { label: "Asset", cell: (x) => (x.asset === 0 ? "cash" : `instrument ${x.asset}`) },
          { label: "Ledger", num: true, cell: (x) => (x.asset === 0 ? yuan(x.ledger_amount) : count(x.ledger_amount)) },
          { label: "Engine", num: true, cell: (x) => (x.asset === 0 ? yuan(x.engine_amount) : count(x.engine_amount)) },
          { label: "Difference", num: true, cell: (x) => (x.asset === 0 ? yuan(x.difference) : count(x.difference)) },
          { label: "Accepted", cell: (x) => (x.accepted ? "yes" : "no") },
        ], r.mismatches, { caption: `Breaks (${r.mismatch_count ?? r.mismatches.length})` }) : null].filter(Boolean));
    } else {
      reconBox.replaceChildren(h("p", { class: "message error", role: "alert" }, ...errorContent(recon.reason)));
    }
  };
  const runButton = actionButton("Run settlement batch", setMessages, async () => {
    const b = await post("/v1/settlement/batches");
    setMessages.ok(`Batch #${b.batch_id} `, badge(b.status), `: ${count(b.entry_count)} ledger legs, ${count(b.trade_count)} trades, up to sequence ${count(b.cutoff_sequence)}.`);
    await loadSettlement();
  }, { class: "primary", id: "run-batch" });
  await loadSettlement();
  grid.append(h("div", { class: "span-2 stack" },
    panel("Settlement", h("p", { class: "muted small" },
      "A batch writes every movement since the last one to the PostgreSQL ledger and makes proceeds withdrawable."),
    h("div", { class: "button-row" }, runButton), setMessages.el, h("h3", {}, "Batches"), batchesBox),
    panel("Reconciliation", reconBox)));
}
