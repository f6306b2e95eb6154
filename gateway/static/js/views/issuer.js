// The issuer's desk: their projects (full width, so the table never overflows a narrow column)
// and the listing form, whose terms fields follow the chosen board.
import { get, post, refreshSession, session } from "../api.js";
import { badge, field, h, loadInto, messageArea, newId, onSubmit, panel, table } from "../dom.js";
import { t } from "../i18n.js";
import { parseCount, parseHundredths, parseYuan, yuan } from "../money.js";
import { boardRules, exchangeNowMs } from "../venue.js";
import { cashSummary } from "./account.js";
import { BOARD_KEYS, boardLabel, progressBar, timelineEl } from "./funding.js";

// BOARDS.md's defaults, used only if the venue did not say (GET /v1/venue gives the live ones).
const DURATION = { equity: [21, 60], debt: [7, 60], ip: [21, 60], operating_rights: [21, 60], product: [1, 60] };
const LOCKUP_DEFAULT = { equity: 365, debt: 0, ip: 365, operating_rights: 90 };

function durationOf(board) {
  const rules = boardRules(board);
  return rules ? [rules.duration_days_min, rules.duration_days_max] : DURATION[board];
}

function lockupDefault(board) {
  const rules = boardRules(board);
  return rules ? rules.lockup_days : LOCKUP_DEFAULT[board];
}

/** datetime-local value (read as UTC) -> "YYYY-MM-DDTHH:MM:00Z". */
function deadlineIso(value) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) throw new RangeError(t("issuer.pick_deadline"));
  return `${value.slice(0, 16)}:00Z`;
}

/** A week past the board's shortest duration, from the exchange's time (not the browser's). */
function defaultDeadline(board) {
  const [min, max] = durationOf(board);
  const days = Math.min(min + 7, max);
  const d = new Date(exchangeNowMs() + days * 86_400_000);
  d.setUTCMinutes(0, 0, 0);
  return d.toISOString().slice(0, 16);
}

const val = (form, name) => form.querySelector(`[name="${name}"]`).value;
const num = { inputmode: "numeric", autocomplete: "off" };
const dec = { inputmode: "decimal", autocomplete: "off" };

function tierRow(index, remove) {
  const row = h("fieldset", { class: "tier-row", dataset: { tier: String(index) } },
    h("legend", { class: "sr-only" }, t("issuer.tier_n", { n: index + 1 })),
    field(t("issuer.tier_id"), { name: "tier_id", required: true, value: ["early", "standard", "deluxe"][index] || `tier${index + 1}`, maxlength: "40" }),
    field(t("issuer.tier_price"), { name: "tier_price", required: true, ...dec }),
    field(t("issuer.tier_quantity"), { name: "tier_quantity", placeholder: t("tiers.unlimited"), ...num }),
    field(t("issuer.tier_reward"), { name: "tier_reward", maxlength: "500" }),
    field(t("issuer.tier_delivery"), { name: "tier_delivery", type: "month" }),
    h("button", { type: "button", class: "small ghost", "aria-label": t("issuer.remove_tier", { n: index + 1 }), onclick: () => remove(row) }, t("issuer.remove")));
  return row;
}

function lockupField(board) {
  const days = lockupDefault(board);
  return field(t("issuer.lockup"), { name: "lockup_days", placeholder: String(days), ...num }, { hint: t("issuer.lockup_hint", { n: days }) });
}

function debtFields() {
  const rateMode = h("fieldset", { class: "radio-group" }, h("legend", {}, t("issuer.rate_mode")),
    ...[["fixed", t("issuer.rate_fixed")], ["auction", t("issuer.rate_auction")]].map(([v, label], i) => {
      const id = newId("rate");
      return h("div", { class: "radio" }, h("input", { type: "radio", name: "rate_mode", id, value: v, checked: i === 0 ? true : null }),
        h("label", { for: id }, label));
    }));
  return [
    field(t("issuer.face_value"), { name: "face_value", required: true, ...dec }),
    field(t("issuer.min_notes"), { name: "min_quantity", required: true, ...num }),
    field(t("issuer.max_notes"), { name: "max_quantity", required: true, ...num }),
    field(t("issuer.term"), { name: "term_months", required: true, value: "12", ...num }, { hint: t("issuer.term_hint") }),
    field(t("terms.repayment"), { name: "repayment" }, { options: [["amortizing", t("repayment.amortizing")], ["bullet", t("repayment.bullet")]] }),
    rateMode,
    field(t("issuer.rate"), { name: "rate", required: true, ...dec }, { hint: t("issuer.rate_hint") }),
    lockupField("debt"),
  ];
}

/** Operating rights (BOARDS.md): units of monthly revenue for a term, bought back at its end. */
function operatingRightsFields() {
  return [
    field(t("issuer.price_unit"), { name: "price", required: true, ...dec }),
    field(t("issuer.target"), { name: "min_quantity", required: true, ...num }, { hint: t("issuer.target_hint") }),
    field(t("issuer.cap"), { name: "max_quantity", required: true, ...num }, { hint: t("issuer.cap_hint") }),
    field(t("issuer.term"), { name: "term_months", required: true, value: "12", ...num }, { hint: t("issuer.or_term_hint") }),
    field(t("issuer.revenue_share"), { name: "revenue_share", required: true, ...dec }, { hint: t("issuer.revenue_share_hint") }),
    field(t("issuer.buyback_price"), { name: "buyback_price", required: true, value: "0", ...dec }, { hint: t("issuer.buyback_price_hint") }),
    lockupField("operating_rights"),
  ];
}

function termsFields(board) {
  if (board === "equity" || board === "ip") {
    return [
      field(t(board === "ip" ? "issuer.price_unit" : "issuer.price_share"), { name: "price", required: true, ...dec }),
      field(t("issuer.target"), { name: "min_quantity", required: true, ...num }, { hint: t("issuer.target_hint") }),
      field(t("issuer.cap"), { name: "max_quantity", required: true, ...num }, { hint: t("issuer.cap_hint") }),
      board === "ip" ? field(t("issuer.royalty"), { name: "royalty_share", required: true, ...dec }) : null,
      lockupField(board),
    ];
  }
  if (board === "debt") return debtFields();
  if (board === "operating_rights") return operatingRightsFields();
  const tiers = h("div", { class: "tiers-editor", id: "tiers-editor" });
  const remove = (row) => { if (tiers.children.length > 1) row.remove(); };
  tiers.append(tierRow(0, remove));
  return [
    field(t("issuer.goal"), { name: "goal", required: true, ...dec }, { hint: t("issuer.goal_hint") }),
    h("div", { class: "field" }, h("span", { class: "label" }, t("terms.tiers")), tiers,
      h("button", { type: "button", class: "small ghost", id: "add-tier", onclick: () => tiers.append(tierRow(tiers.children.length, remove)) }, t("issuer.add_tier"))),
  ];
}

function readLockup(form) {
  const text = val(form, "lockup_days").trim();
  return text === "" ? {} : { lockup_days: parseCount(text, { what: t("issuer.lockup"), allowZero: true }) };
}

function readTiers(form) {
  return [...form.querySelectorAll(".tier-row")].map((row, i) => {
    const q = row.querySelector('[name="tier_quantity"]').value.trim();
    const id = row.querySelector('[name="tier_id"]').value.trim();
    if (!id) throw new RangeError(t("issuer.tier_needs_id", { n: i + 1 }));
    const reward = row.querySelector('[name="tier_reward"]').value.trim();
    const delivery = row.querySelector('[name="tier_delivery"]').value.trim();
    return {
      tier_id: id,
      price: parseYuan(row.querySelector('[name="tier_price"]').value, t("issuer.tier_price_of", { tier: id })),
      quantity: q === "" ? null : parseCount(q, { what: t("issuer.tier_quantity_of", { tier: id }) }),
      ...(reward ? { reward } : {}),
      ...(delivery ? { estimated_delivery: delivery } : {}),
    };
  });
}

function readTerms(form, board) {
  if (board === "equity" || board === "ip") {
    const terms = {
      price: parseYuan(val(form, "price"), t("field.price")),
      min_quantity: parseCount(val(form, "min_quantity"), { what: t("issuer.target") }),
      max_quantity: parseCount(val(form, "max_quantity"), { what: t("issuer.cap") }),
      ...readLockup(form),
    };
    if (board === "ip") terms.royalty_share_bps = parseHundredths(val(form, "royalty_share"), { what: t("issuer.royalty") });
    return terms;
  }
  if (board === "operating_rights") {
    return {
      price: parseYuan(val(form, "price"), t("field.price")),
      min_quantity: parseCount(val(form, "min_quantity"), { what: t("issuer.target") }),
      max_quantity: parseCount(val(form, "max_quantity"), { what: t("issuer.cap") }),
      term_months: parseCount(val(form, "term_months"), { what: t("issuer.term") }),
      revenue_share_bps: parseHundredths(val(form, "revenue_share"), { what: t("issuer.revenue_share") }),
      buyback_price: parseHundredths(val(form, "buyback_price"), { allowZero: true, what: t("issuer.buyback_price") }),
      ...readLockup(form),
    };
  }
  if (board === "debt") {
    const rateBps = parseHundredths(val(form, "rate"), { what: t("field.rate") });
    const mode = form.querySelector('[name="rate_mode"]:checked').value;
    return {
      face_value: parseYuan(val(form, "face_value"), t("issuer.face_value")),
      min_quantity: parseCount(val(form, "min_quantity"), { what: t("issuer.min_notes") }),
      max_quantity: parseCount(val(form, "max_quantity"), { what: t("issuer.max_notes") }),
      term_months: parseCount(val(form, "term_months"), { what: t("issuer.term") }),
      repayment: val(form, "repayment"),
      ...(mode === "auction" ? { auction: { max_rate_bps: rateBps } } : { rate_bps: rateBps }),
      ...readLockup(form),
    };
  }
  return { goal: parseYuan(val(form, "goal"), t("issuer.goal")), tiers: readTiers(form) };
}

function ownProjects(me) {
  const box = h("div", { id: "my-projects" });
  const load = () => loadInto(box, async () => {
    const rows = (await get("/v1/projects")).filter((p) => p.issuer_id === me.account_id)
      .sort((a, b) => b.project_id - a.project_id);
    return table([
      { label: t("issuer.project"), name: true, cell: (p) => [h("a", { href: `#/projects/${p.project_id}` }, p.title),
        h("div", { class: "muted small" }, `#${p.project_id} · ${boardLabel(p.board)}`)] },
      { label: t("subs.status"), cell: (p) => badge(p.status) },
      { label: t("funding.progress"), cell: (p) => progressBar(p) },
      { label: t("funding.raised"), num: true, cell: (p) => yuan(p.raised) },
      { label: t("funding.when"), cell: (p) => timelineEl(p) },
    ], rows.map((p) => ({ ...p, __data: { projectId: p.project_id } })),
    { empty: t("issuer.none_yet"), id: "my-projects-table", caption: t("issuer.my_projects"), cards: true });
  });
  return { el: box, load };
}

function createForm(onCreated) {
  const m = messageArea();
  m.el.id = "create-message";
  const termsBox = h("div", { class: "terms-fields", id: "terms-fields" });
  const boardField = field(t("review.board"), { id: "new-board", name: "board" }, { options: BOARD_KEYS.map((b) => [b, boardLabel(b)]) });
  const deadlineField = field(t("issuer.deadline"), { id: "new-deadline", name: "deadline", type: "datetime-local", required: true },
    { hint: t("issuer.deadline_hint_generic") });
  const form = h("form", { id: "create-project-form", class: "stack" },
    boardField,
    field(t("issuer.title_field"), { id: "new-title", name: "title", required: true, maxlength: "200" }),
    field(t("issuer.description"), { id: "new-description", name: "description", type: "textarea", rows: "4" }),
    deadlineField,
    h("fieldset", { class: "terms" }, h("legend", {}, t("detail.terms")), termsBox),
    h("button", { type: "submit", class: "primary" }, t("issuer.submit")));
  const boardSelect = boardField.querySelector("select");
  const deadlineInput = deadlineField.querySelector("input");
  let deadlineTouched = false;
  deadlineInput.addEventListener("input", () => { deadlineTouched = true; });
  const showBoard = () => {
    const board = boardSelect.value;
    termsBox.replaceChildren(...termsFields(board).filter(Boolean));
    const [min, max] = durationOf(board);
    deadlineField.querySelector(".hint").textContent = t("issuer.deadline_hint", { min, max });
    if (!deadlineTouched) deadlineInput.value = defaultDeadline(board);
  };
  boardSelect.addEventListener("change", showBoard);
  showBoard();
  onSubmit(form, m, async () => {
    const board = boardSelect.value;
    const body = {
      board, title: form.querySelector("#new-title").value.trim(),
      description: form.querySelector("#new-description").value,
      deadline: deadlineIso(deadlineInput.value), terms: readTerms(form, board),
    };
    const result = await post("/v1/projects", body);
    m.ok(h("span", { dataset: { projectId: result.project_id } }, t("issuer.submitted", { id: result.project_id }), " "),
      badge(result.status), " ", h("a", { href: `#/projects/${result.project_id}` }, t("issuer.open_it")));
    form.querySelector("#new-title").value = "";
    form.querySelector("#new-description").value = "";
    await onCreated();
  });
  return panel(t("issuer.list_new"), form, m.el);
}

export async function issuerView(container) {
  await refreshSession();
  const me = session.me;
  container.append(h("div", { class: "page-head" }, h("h1", {}, t("issuer.title")),
    h("p", { class: "muted" }, t("issuer.lead"))));
  container.append(cashSummary(me));
  const own = ownProjects(me);
  container.append(h("div", { class: "stack issuer-stack" },
    panel(t("issuer.my_projects"), h("p", { class: "muted small" }, t("issuer.my_projects_hint")), own.el),
    createForm(own.load)));
  await own.load();
}
