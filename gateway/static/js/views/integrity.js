// The monthly integrity list: issuers late, in default or silent (black), and for operators
// those with six clean months (red).
import { get, session } from "../api.js";
import { field, h, listSep, panel, table } from "../dom.js";
import { t, tMaybe } from "../i18n.js";

function reasonsText(row) {
  return (row.reasons || []).map((x) => {
    if (typeof x === "string") return tMaybe(`reason.${x}`, x.replaceAll("_", " "));
    const kind = x.kind || x.reason || "";
    return [tMaybe(`reason.${kind}`, kind.replaceAll("_", " ")), x.project_id ? t("common.project_n", { id: x.project_id }) : "",
      x.detail || ""].filter(Boolean).join(" · ");
  }).join(listSep());
}

export async function integrityView(container, _params, query) {
  const month = query.get("month") || "";
  const data = await get(`/v1/integrity${month ? `?month=${encodeURIComponent(month)}` : ""}`);
  const monthField = field(t("integrity.month"), { id: "integrity-month", type: "month", value: data.month });
  monthField.querySelector("input").addEventListener("change", (e) => {
    if (e.target.value) location.hash = `#/integrity?month=${e.target.value}`;
  });
  const issuer = (r) => `${r.name || "—"} (#${r.account_id})`;
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, t("integrity.title")), h("p", { class: "muted" }, t("integrity.lead"))),
    h("div", { class: "toolbar" }, monthField),
    panel(t("integrity.black", { month: data.month }), table([
      { label: t("integrity.issuer"), name: true, cell: issuer },
      { label: t("integrity.reasons"), cell: reasonsText },
    ], data.black, { id: "black-list", caption: t("integrity.black", { month: data.month }), empty: t("integrity.black_empty") })));
  if (session.me && session.me.role === "operator" && data.red) {
    container.append(panel(t("integrity.red", { month: data.month }), table([
      { label: t("integrity.issuer"), name: true, cell: issuer },
    ], data.red, { id: "red-list", caption: t("integrity.red", { month: data.month }), empty: t("integrity.red_empty") })));
  }
}
