import { get, session } from "../api.js";
import { field, h, panel, table } from "../dom.js";

const REASON = {
  late_instalment: "Late instalment", defaulted_instalment: "Defaulted instalment",
  missed_disclosure: "Missed monthly disclosure",
};

export async function integrityView(container, _params, query) {
  const month = query.get("month") || "";
  const data = await get(`/v1/integrity${month ? `?month=${encodeURIComponent(month)}` : ""}`);
  const monthField = field("Month", { id: "integrity-month", type: "month", value: data.month });
  monthField.querySelector("input").addEventListener("change", (e) => {
    if (e.target.value) location.hash = `#/integrity?month=${e.target.value}`;
  });
  const reasons = (r) => (r.reasons || []).map((x) => (typeof x === "string" ? (REASON[x] || x.replaceAll("_", " "))
    : [x.kind || x.reason || "", x.project_id ? `project #${x.project_id}` : "", x.detail || ""].filter(Boolean).join(" · "))).join("; ");
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "Integrity list"),
      h("p", { class: "muted" }, "Issuers with a late or defaulted instalment, or a missed monthly disclosure, in the month shown. "
        + "Debt and IP issuers owe a disclosure every month.")),
    h("div", { class: "toolbar" }, monthField),
    panel(`Black list — ${data.month}`, table([
      { label: "Issuer", cell: (r) => `${r.name || "—"} (#${r.account_id})` },
      { label: "Reasons", cell: reasons },
    ], data.black, { id: "black-list", empty: "No issuer is on the black list this month." })));
  if (session.me && session.me.role === "operator" && data.red) {
    container.append(panel(`Red list (operators) — ${data.month}`, table([
      { label: "Issuer", cell: (r) => `${r.name || "—"} (#${r.account_id})` },
    ], data.red, { id: "red-list", empty: "No issuer has six clean months in a row yet." })));
  }
}
