import { get, post, refreshSession, session } from "../api.js";
import { badge, field, h, messageArea, newId, onSubmit, panel, table, when } from "../dom.js";
import { count, parseCount, parseHundredths, parseYuan, yuan } from "../money.js";
import { cashSummary } from "./account.js";
import { BOARDS, BOARD_LABEL } from "./projects.js";

// Durations from BOARDS.md (the server checks them against exchange time; this is a hint).
const DURATION = { equity: [21, 60], debt: [7, 60], ip: [21, 60], product: [1, 60] };
const LOCKUP_DEFAULT = { equity: 365, debt: 0, ip: 365 };

/** datetime-local value (read as UTC) -> "YYYY-MM-DDTHH:MM:00Z". */
function deadlineIso(value) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) throw new RangeError("deadline: pick a date and time");
  return `${value.slice(0, 16)}:00Z`;
}

function defaultDeadline(board) {
  const [min, max] = DURATION[board];
  const days = Math.min(min + 7, max);
  const d = new Date(Date.now() + days * 86_400_000);
  d.setUTCMinutes(0, 0, 0);
  return d.toISOString().slice(0, 16);
}

const val = (form, name) => form.querySelector(`[name="${name}"]`).value;

function tierRow(index, remove) {
  const row = h("fieldset", { class: "tier-row", dataset: { tier: String(index) } },
    h("legend", { class: "sr-only" }, `Tier ${index + 1}`),
    field("Tier id", { name: "tier_id", required: true, value: ["early", "standard", "deluxe"][index] || `tier${index + 1}`, maxlength: "40" }),
    field("Price (¥)", { name: "tier_price", required: true, inputmode: "decimal", autocomplete: "off" }),
    field("Quantity", { name: "tier_quantity", inputmode: "numeric", placeholder: "unlimited", autocomplete: "off" }),
    h("button", { type: "button", class: "small ghost", "aria-label": `Remove tier ${index + 1}`, onclick: () => remove(row) }, "Remove"));
  return row;
}

function termsFields(board) {
  const lockup = (b) => field("Lock-up (days)", { name: "lockup_days", inputmode: "numeric", placeholder: String(LOCKUP_DEFAULT[b]), autocomplete: "off" },
    { hint: `Optional; the board default is ${LOCKUP_DEFAULT[b]} days.` });
  if (board === "equity" || board === "ip") {
    return [
      field(`Price per ${board === "ip" ? "unit" : "share"} (¥)`, { name: "price", required: true, inputmode: "decimal", autocomplete: "off" }),
      field("Target quantity (minimum)", { name: "min_quantity", required: true, inputmode: "numeric", autocomplete: "off" }, { hint: "All or nothing: below this the offering fails." }),
      field("Cap (maximum quantity)", { name: "max_quantity", required: true, inputmode: "numeric", autocomplete: "off" }, { hint: "Oversubscription is allocated pro rata." }),
      board === "ip" ? field("Royalty share to holders (%)", { name: "royalty_share", required: true, inputmode: "decimal", autocomplete: "off" }) : null,
      lockup(board),
    ];
  }
  if (board === "debt") {
    const rateMode = h("fieldset", { class: "radio-group" }, h("legend", {}, "Interest rate"),
      ...[["fixed", "Fixed rate"], ["auction", "Rate auction (uniform clearing rate)"]].map(([v, label], i) => {
        const id = newId("rate");
        return h("div", { class: "radio" }, h("input", { type: "radio", name: "rate_mode", id, value: v, checked: i === 0 ? true : null }),
          h("label", { for: id }, label));
      }));
    return [
      field("Face value per note (¥)", { name: "face_value", required: true, inputmode: "decimal", autocomplete: "off" }),
      field("Minimum notes to fund", { name: "min_quantity", required: true, inputmode: "numeric", autocomplete: "off" }),
      field("Maximum notes", { name: "max_quantity", required: true, inputmode: "numeric", autocomplete: "off" }),
      field("Term (months)", { name: "term_months", required: true, inputmode: "numeric", value: "12", autocomplete: "off" }, { hint: "6 to 60 months." }),
      field("Repayment", { name: "repayment" }, { options: [["amortizing", "Amortizing (equal monthly instalments)"], ["bullet", "Bullet (interest monthly, principal at maturity)"]] }),
      rateMode,
      field("Rate (% p.a.)", { name: "rate", required: true, inputmode: "decimal", autocomplete: "off" }, { hint: "Fixed: the loan's rate. Auction: the highest rate you will pay." }),
      lockup(board),
    ];
  }
  // product
  const tiers = h("div", { class: "tiers-editor", id: "tiers-editor" });
  const remove = (row) => { if (tiers.children.length > 1) row.remove(); };
  tiers.append(tierRow(0, remove));
  return [
    field("Goal (¥)", { name: "goal", required: true, inputmode: "decimal", autocomplete: "off" }, { hint: "All or nothing; overfunding is welcome." }),
    h("div", { class: "field" }, h("span", { class: "label" }, "Reward tiers"), tiers,
      h("button", { type: "button", class: "small ghost", id: "add-tier", onclick: () => tiers.append(tierRow(tiers.children.length, remove)) }, "Add a tier")),
  ];
}

function readTerms(form, board) {
  const lockup = () => {
    const text = val(form, "lockup_days").trim();
    return text === "" ? {} : { lockup_days: parseCount(text, { what: "lock-up days", allowZero: true }) };
  };
  if (board === "equity" || board === "ip") {
    const terms = {
      price: parseYuan(val(form, "price"), "price"),
      min_quantity: parseCount(val(form, "min_quantity"), { what: "target quantity" }),
      max_quantity: parseCount(val(form, "max_quantity"), { what: "cap" }),
      ...lockup(),
    };
    if (board === "ip") terms.royalty_share_bps = parseHundredths(val(form, "royalty_share"), { what: "royalty share" });
    return terms;
  }
  if (board === "debt") {
    const rateBps = parseHundredths(val(form, "rate"), { what: "rate" });
    const mode = form.querySelector('[name="rate_mode"]:checked').value;
    return {
      face_value: parseYuan(val(form, "face_value"), "face value"),
      min_quantity: parseCount(val(form, "min_quantity"), { what: "minimum notes" }),
      max_quantity: parseCount(val(form, "max_quantity"), { what: "maximum notes" }),
      term_months: parseCount(val(form, "term_months"), { what: "term" }),
      repayment: val(form, "repayment"),
      ...(mode === "auction" ? { auction: { max_rate_bps: rateBps } } : { rate_bps: rateBps }),
      ...lockup(),
    };
  }
  const tiers = [...form.querySelectorAll(".tier-row")].map((row, i) => {
    const q = row.querySelector('[name="tier_quantity"]').value.trim();
    const id = row.querySelector('[name="tier_id"]').value.trim();
    if (!id) throw new RangeError(`tier ${i + 1}: give it an id`);
    return {
      tier_id: id,
      price: parseYuan(row.querySelector('[name="tier_price"]').value, `tier ${id} price`),
      quantity: q === "" ? null : parseCount(q, { what: `tier ${id} quantity` }),
    };
  });
  return { goal: parseYuan(val(form, "goal"), "goal"), tiers };
}

export async function issuerView(container) {
  await refreshSession();
  const me = session.me;
  container.append(h("div", { class: "page-head" }, h("h1", {}, "Issuer desk"),
    h("p", { class: "muted" }, "List a project, follow your offerings, publish disclosures and pay holders.")));
  container.append(cashSummary(me));

  const columns = h("div", { class: "two-col wide-left" });
  const left = h("div", { class: "stack" });
  const right = h("div", { class: "stack" });
  columns.append(left, right);
  container.append(columns);

  // ---- own projects ----
  const ownBox = h("div", { id: "my-projects" });
  const loadOwn = async () => {
    const rows = (await get("/v1/projects")).filter((p) => p.issuer_id === me.account_id)
      .sort((a, b) => b.project_id - a.project_id);
    ownBox.replaceChildren(table([
      { label: "#", cell: (p) => String(p.project_id) },
      { label: "Project", cell: (p) => h("a", { href: `#/projects/${p.project_id}` }, p.title) },
      { label: "Board", cell: (p) => BOARD_LABEL[p.board] || p.board },
      { label: "Status", cell: (p) => badge(p.status) },
      { label: "Raised", num: true, cell: (p) => yuan(p.raised) },
      { label: "Investors", num: true, cell: (p) => count(p.investor_count) },
      { label: "Deadline", cell: (p) => when(p.deadline).slice(0, 10) },
    ], rows.map((p) => ({ ...p, __data: { projectId: p.project_id } })),
    { empty: "You have not listed a project yet.", id: "my-projects-table" }));
  };
  await loadOwn();
  right.append(panel("My projects", h("p", { class: "muted small" },
    "Open a project to post a disclosure or pay a distribution."), ownBox));

  // ---- create a project ----
  const m = messageArea();
  m.el.id = "create-message";
  const termsBox = h("div", { class: "terms-fields", id: "terms-fields" });
  const boardField = field("Board", { id: "new-board", name: "board" }, { options: BOARDS });
  const deadlineField = field("Deadline (UTC)", { id: "new-deadline", name: "deadline", type: "datetime-local", required: true },
    { hint: "Within the board's duration range." });
  const form = h("form", { id: "create-project-form", class: "stack" },
    boardField,
    field("Title", { id: "new-title", name: "title", required: true, maxlength: "200" }),
    field("Description", { id: "new-description", name: "description", type: "textarea", rows: "4" }),
    deadlineField,
    h("fieldset", { class: "terms" }, h("legend", {}, "Terms"), termsBox),
    h("button", { type: "submit", class: "primary" }, "Submit for review"));
  const boardSelect = boardField.querySelector("select");
  const deadlineInput = deadlineField.querySelector("input");
  let deadlineTouched = false;
  deadlineInput.addEventListener("input", () => { deadlineTouched = true; });
  const showBoard = () => {
    const board = boardSelect.value;
    termsBox.replaceChildren(...termsFields(board).filter(Boolean));
    const [min, max] = DURATION[board];
    deadlineField.querySelector(".hint").textContent = `${min} to ${max} days after listing and after approval (exchange time).`;
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
    m.ok(h("span", { dataset: { projectId: result.project_id } }, `Project #${result.project_id} submitted; status `),
      badge(result.status), ". ", h("a", { href: `#/projects/${result.project_id}` }, "Open it"));
    form.querySelector("#new-title").value = "";
    form.querySelector("#new-description").value = "";
    await loadOwn();
  });
  left.append(panel("List a new project", form, m.el));
}
