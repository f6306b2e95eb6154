"use strict";
// Money arrives in integer fen; it is shown in yuan with exactly two decimals, computed with
// integer arithmetic so no float rounding ever shows.
function yuan(fen) {
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  return `${sign}¥${Math.trunc(abs / 100).toLocaleString("en")}.${String(abs % 100).padStart(2, "0")}`;
}

async function api(path, options = {}) {
  const key = sessionStorage.getItem("crowdex_key");
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body;
}

async function showHealth() {
  const pill = document.getElementById("health");
  try { await api("/healthz"); pill.textContent = "online"; pill.classList.add("ok"); }
  catch (e) { pill.textContent = "offline"; }
}

async function showAccount() {
  const me = await api("/v1/me");
  document.getElementById("login").hidden = true;
  document.getElementById("account").hidden = false;
  const fields = [["Account", me.account_id], ["Role", me.role], ["Name", me.name],
    ["Available", yuan(me.cash_available)], ["Reserved", yuan(me.cash_reserved)],
    ["Withdrawable", yuan(me.cash_withdrawable)]];
  const dl = document.getElementById("account-fields");
  dl.replaceChildren(...fields.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.field = k.toLowerCase();
    return [dt, dd];
  }));
  const tbody = document.querySelector("#holdings tbody");
  tbody.replaceChildren(...me.holdings.map((h) => {
    const tr = document.createElement("tr");
    for (const v of [h.instrument_id, h.quantity_available, h.quantity_reserved]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem("crowdex_key", document.getElementById("api-key").value.trim());
  const error = document.getElementById("login-error");
  try { await showAccount(); error.hidden = true; }
  catch (e) { sessionStorage.removeItem("crowdex_key"); error.textContent = e.message; error.hidden = false; }
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem("crowdex_key");
  document.getElementById("account").hidden = true;
  document.getElementById("login").hidden = false;
});

showHealth();
if (sessionStorage.getItem("crowdex_key")) showAccount().catch(() => sessionStorage.removeItem("crowdex_key"));
