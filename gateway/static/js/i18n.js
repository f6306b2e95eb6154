// The UI's two languages. The venue's first users are in Wuhan, so Chinese is a full language
// here, not an afterthought: every string a view shows goes through t(), the choice is kept in
// localStorage, and a venue under the cn2015 profile starts in Chinese. Data (project names,
// descriptions, people's names) is shown as entered and never translated.
import { STRINGS } from "./strings.js";

export const LANGS = [["en", "English"], ["zh", "中文"]];
const STORE = "crowdex_lang";
const INDEX = { en: 0, zh: 1 };

let lang = "en";

export function getLang() { return lang; }

/** The language stored by the user, else Chinese under cn2015 and English elsewhere. */
export function initLang(profile) {
  let stored = null;
  try { stored = localStorage.getItem(STORE); } catch { stored = null; }
  lang = stored in INDEX ? stored : (profile === "cn2015" ? "zh" : "en");
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** Switch and remember; views redraw on the `crowdex:lang` event. */
export function setLang(next) {
  if (!(next in INDEX) || next === lang) return;
  lang = next;
  try { localStorage.setItem(STORE, next); } catch { /* private mode: this tab only */ }
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  window.dispatchEvent(new Event("crowdex:lang"));
}

/**
 * The text of `key` in the current language with `{name}` placeholders filled from `params`.
 * When params.n is given and `key_one` exists, n === 1 picks it (English plurals). A missing
 * key shows itself, so a gap is visible rather than blank.
 */
export function t(key, params = {}) {
  const pick = (params.n === 1 || params.n === "1") && STRINGS[`${key}_one`] ? `${key}_one` : key;
  const entry = STRINGS[pick];
  const text = entry ? entry[INDEX[lang]] : key;
  return text.replace(/\{(\w+)\}/g, (all, name) => (name in params ? String(params[name]) : all));
}

/** t() for a key that may not exist (labels of values the server may extend): else fallback. */
export function tMaybe(key, fallback) {
  return STRINGS[key] ? t(key) : fallback;
}

/** Fill every element marked data-i18n (the static shell in index.html). */
export function applyStatic(root = document) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-label]").forEach((el) => {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  });
  document.title = t("app.title");
}

/** A duration in seconds as its two largest units: "12 days 3 hours" / "12天3小时". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const amounts = [["day", Math.floor(s / 86400)], ["hour", Math.floor(s / 3600) % 24],
    ["minute", Math.floor(s / 60) % 60]];
  const first = amounts.findIndex(([, n]) => n > 0);
  if (first < 0) return t("time.under_minute");
  const parts = amounts.slice(first, first + 2).filter(([, n]) => n > 0)
    .map(([unit, n]) => t(`unit.${unit}`, { n }));
  return parts.join(lang === "zh" ? "" : " ");
}
