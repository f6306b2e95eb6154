// Money is integer fen end to end. Nothing here does float arithmetic on amounts: formatting
// and parsing go through BigInt and strings, so every fen shown is the fen the API sent.
import { t } from "./i18n.js";

export const MAX_SAFE = 2n ** 53n;

function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Fixed-point with two decimals: 123456 -> "1,234.56" (hundredths of anything). */
function fixed2(value) {
  let n = BigInt(value);
  const sign = n < 0n ? "-" : "";
  if (n < 0n) n = -n;
  return `${sign}${groupThousands((n / 100n).toString())}.${(n % 100n).toString().padStart(2, "0")}`;
}

/** Integer fen -> "¥1,234.56". */
export function yuan(fen) {
  if (fen === null || fen === undefined) return "—";
  const text = fixed2(fen);
  return text.startsWith("-") ? `-¥${text.slice(1)}` : `¥${text}`;
}

/** Basis points -> "8.25%". */
export function percent(bps) {
  if (bps === null || bps === undefined) return "—";
  return `${fixed2(bps)}%`;
}

/** Integer -> "12,345". */
export function count(n) {
  if (n === null || n === undefined) return "—";
  const big = BigInt(n);
  return big < 0n ? `-${groupThousands((-big).toString())}` : groupThousands(big.toString());
}

/**
 * A decimal string with at most two decimals -> integer hundredths (fen from yuan, bps from
 * percent): "12.3" -> 1230, "1,000" -> 100000. Throws a RangeError with a readable message for
 * anything else (negative, three decimals, letters, zero unless allowZero, beyond 2^53).
 */
export function parseHundredths(text, { allowZero = false, what = t("field.amount") } = {}) {
  const raw = String(text).trim().replace(/[,\s_]/g, "").replace(/^¥/, "");
  const match = /^(\d*)(?:\.(\d*))?$/.exec(raw);
  if (!raw || !match || (match[1] === "" && !match[2])) {
    throw new RangeError(t("parse.number", { what }));
  }
  const decimals = match[2] || "";
  if (decimals.length > 2) throw new RangeError(t("parse.decimals", { what }));
  const value = BigInt(match[1] || "0") * 100n + BigInt(decimals.padEnd(2, "0") || "0");
  if (value === 0n && !allowZero) throw new RangeError(t("parse.positive", { what }));
  if (value > MAX_SAFE) throw new RangeError(t("parse.too_large", { what }));
  return Number(value);
}

/** Yuan text -> integer fen. */
export function parseYuan(text, what = t("field.amount")) {
  return parseHundredths(text, { what });
}

/** A positive whole number (quantities, ids, days). */
export function parseCount(text, { what = t("field.quantity"), allowZero = false } = {}) {
  const raw = String(text).trim().replace(/[,\s_]/g, "");
  if (!/^\d+$/.test(raw)) throw new RangeError(t("parse.whole", { what }));
  const value = BigInt(raw);
  if (value === 0n && !allowZero) throw new RangeError(t("parse.at_least_one", { what }));
  if (value > MAX_SAFE) throw new RangeError(t("parse.too_large", { what }));
  return Number(value);
}

/** price × quantity in fen, exactly. */
export function times(priceFen, quantity) {
  return BigInt(priceFen) * BigInt(quantity);
}

/** floor(part * 100 / whole), capped for display; integer only. */
export function percentOf(part, whole) {
  if (!whole) return 0;
  return Number((BigInt(part) * 100n) / BigInt(whole));
}
