import { del, get, post, refreshSession, session } from "../api.js";
import {
  actionButton, badge, facts, field, h, messageArea, newReference, onSubmit, panel, table,
} from "../dom.js";
import { count, parseYuan, percent, yuan } from "../money.js";

export function cashSummary(me) {
  return h("div", { class: "stat-cards", id: "account" },
    [["available", "Available", me.cash_available, "Free to invest or withdraw once settled"],
      ["reserved", "Reserved", me.cash_reserved, "Held for open subscriptions"],
      ["withdrawable", "Withdrawable", me.cash_withdrawable, "Settled cash you can take out"]]
      .map(([key, label, value, hint]) => h("div", { class: "stat" },
        h("div", { class: "stat-label" }, label),
        h("div", { class: "stat-value", dataset: { field: key } }, yuan(value)),
        h("div", { class: "stat-hint" }, hint))));
}

export async function accountView(container) {
  await refreshSession();
  const me = session.me;
  const titles = new Map((await get("/v1/projects").catch(() => [])).map((p) => [p.project_id, p]));
  const projectLink = (id) => h("a", { href: `#/projects/${id}` },
    titles.has(id) ? titles.get(id).title : `Project #${id}`);

  container.append(h("div", { class: "page-head" }, h("h1", {}, "My account"),
    h("div", { class: "muted" }, facts([
      ["name", "Name", me.name || "—"], ["account_id", "Account", `#${me.account_id}`],
      ["role", "Role", me.role],
      me.investor_class ? ["class", "Investor class", me.investor_class] : null,
    ], { class: "facts inline" }))));
  container.append(cashSummary(me));

  const columns = h("div", { class: "two-col" });
  container.append(columns);
  const left = h("div", { class: "stack" });
  const right = h("div", { class: "stack" });
  columns.append(left, right);

  left.append(panel("Holdings", table([
    { label: "Instrument", cell: (r) => projectLink(r.instrument_id) },
    { label: "Available", num: true, cell: (r) => count(r.quantity_available) },
    { label: "Reserved", num: true, cell: (r) => count(r.quantity_reserved) },
  ], me.holdings, { id: "holdings", empty: "No holdings yet. Securities arrive when an offering you joined succeeds." })));

  if (me.role === "investor") {
    const subsMessages = messageArea();
    subsMessages.el.id = "subscriptions-message";
    const box = h("div", {});
    const load = async () => {
      const subs = (await get("/v1/me/subscriptions")).slice().reverse();
      box.replaceChildren(table([
        { label: "#", cell: (s) => String(s.subscription_id) },
        { label: "Project", cell: (s) => projectLink(s.project_id) },
        { label: "Quantity", num: true, cell: (s) => count(s.quantity) },
        { label: "Detail", cell: (s) => [s.tier_id !== undefined ? `tier ${s.tier_id}` : "",
          s.rate_bps !== undefined ? `bid ${percent(s.rate_bps)}` : ""].filter(Boolean).join(" · ") || "—" },
        { label: "Reserved", num: true, cell: (s) => yuan(s.reserved_amount) },
        { label: "Status", cell: (s) => badge(s.status) },
        { label: "Action", cell: (s) => (s.status === "accepted"
          ? actionButton("Cancel", subsMessages, async () => {
            await del(`/v1/subscriptions/${s.subscription_id}`);
            await refreshSession();
            container.querySelector("#account").replaceWith(cashSummary(session.me));
            await load();
            subsMessages.ok(`Subscription #${s.subscription_id} cancelled; its cash is released.`);
          }, { class: "small danger", "aria-label": `Cancel subscription ${s.subscription_id}` })
          : "") },
      ], subs.map((s) => ({ ...s, __data: { subscriptionId: s.subscription_id, status: s.status } })),
      { id: "subscriptions", empty: "No subscriptions yet. Browse open projects to invest." }));
    };
    await load();
    left.append(panel("My subscriptions", subsMessages.el, box));
  }

  // Withdrawals dedupe on their reference: one reference per form, so a double submit is safe.
  const m = messageArea();
  m.el.id = "withdraw-message";
  const form = h("form", { id: "withdraw-form", class: "stack" },
    field("Amount (¥)", { id: "withdraw-amount", name: "amount", inputmode: "decimal", required: true,
      autocomplete: "off", placeholder: "0.00" }, { hint: `Up to ${yuan(me.cash_withdrawable)} (settled cash).` }),
    field("Reference", { id: "withdraw-reference", name: "reference", required: true, maxlength: "100",
      value: newReference("wd") }, { hint: "Unique per withdrawal; resubmitting the same one does nothing twice." }),
    h("button", { type: "submit", class: "primary" }, "Withdraw"));
  onSubmit(form, m, async () => {
    const amount = parseYuan(form.querySelector("#withdraw-amount").value);
    const reference = form.querySelector("#withdraw-reference").value.trim();
    const result = await post("/v1/me/withdrawals", { amount, reference });
    await refreshSession();
    container.querySelector("#account").replaceWith(cashSummary(session.me));
    form.querySelector("#withdraw-amount").value = "";
    form.querySelector("#withdraw-reference").value = newReference("wd");
    form.querySelector("#withdraw-amount").closest(".field").querySelector(".hint").textContent = `Up to ${yuan(session.me.cash_withdrawable)} (settled cash).`;
    m.ok(`Withdrew ${yuan(amount)} (ref ${reference}). Cash available now ${yuan(result.cash_available)}.`);
  });
  right.append(panel("Withdraw to your bank", form, m.el));
}
