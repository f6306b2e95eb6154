// Refusals as sentences. The API answers a code and an English message with amounts in fen
// ("insufficient_funds: 99999999000 fen needed"); people read words and yuan, in their own
// language. Each known code has its sentence in strings.js; the amounts in the server's message
// are picked out and shown as yuan; an unknown code falls back to the server's message with its
// fen turned into yuan, so nothing is lost and no raw code is shown.
import { t, tMaybe } from "./i18n.js";
import { yuan } from "./money.js";

// Messages whose figures the sentence uses, by code: a pattern and the names of its numbers.
const FIGURES = {
  insufficient_funds: [
    [/(\d+) fen needed, (\d+) available/, ["needed", "available"], "err.insufficient_funds_detail"],
    [/withdrawable cash is (\d+) fen/, ["withdrawable"], "err.insufficient_withdrawable"],
    [/(\d+) fen needed/, ["needed"], "err.insufficient_funds_needed"],
  ],
  limit_exceeded: [
    [/may commit (\d+) fen in 12 months; (\d+) is committed/, ["limit", "used"], "err.limit_exceeded_detail"],
  ],
  borrower_cap: [
    [/at most (\d+) fen on the venue; (\d+)/, ["cap", "owed"], "err.borrower_cap_detail"],
  ],
};

// Codes whose server message says which field or term is wrong: it is appended to the sentence.
const WITH_DETAIL = new Set(["invalid_field", "missing_field", "unknown_field", "invalid_terms",
  "invalid_json", "invalid_state", "not_permitted", "invalid_amend"]);

/** "… 1050 fen …" -> "… ¥10.50 …" (every amount the server wrote in fen). */
export function fenToYuan(text) {
  return String(text || "").replace(/(\d+) fen\b/g, (all, n) => yuan(n));
}

export function describeError(err) {
  if (!err) return t("err.unknown");
  if (!err.code) return String(err.message || err); // a form's own check, already in words
  const detail = err.detail || "";
  for (const [pattern, names, key] of FIGURES[err.code] || []) {
    const m = pattern.exec(detail);
    if (m) return t(key, Object.fromEntries(names.map((name, i) => [name, yuan(m[i + 1])])));
  }
  if (/^http_\d+$/.test(err.code)) return t("err.http", { status: err.status });
  const sentence = tMaybe(`err.${err.code}`, null);
  if (sentence === null) return fenToYuan(detail) || t("err.unknown");
  return WITH_DETAIL.has(err.code) && detail ? `${sentence} (${fenToYuan(detail)})` : sentence;
}
