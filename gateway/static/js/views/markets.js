// Secondary markets: an instrument's live order book and trades (WebSocket), a candle chart,
// an order ticket and the investor's open orders (live over the private `orders` channel), and
// for IP instruments the call auction's indicative uncross. Prices are integer fen throughout;
// only chart coordinates are computed in floating point, never an amount that is shown.
import { LiveChannel, del, get, post, session } from "../api.js";
import { actionButton, h, messageArea, newId, onSubmit, panel, when } from "../dom.js";
import { count, parseCount, parseYuan, percentOf, times, yuan } from "../money.js";

const DEPTH = 12; // levels shown per side
const TRADES_SHOWN = 25;
const CANDLES = 60;
const BOARD_LABEL = { equity: "Equity", debt: "Debt", ip: "IP" };
const UNIT = { equity: "shares", debt: "notes", ip: "units" };
const SIDE_LABEL = { buy: "Buy", sell: "Sell" };
const ORDER_STATUS = {
  open: "Open", partially_filled: "Partly filled", filled: "Filled", cancelled: "Cancelled",
  rejected: "Rejected",
};
const OPEN = new Set(["open", "partially_filled"]);
const INTERVALS = [["1m", "1 min"], ["1h", "1 hour"], ["1d", "1 day"]];
const LIVE_TEXT = { live: "live", connecting: "connecting…", offline: "reconnecting…" };

/** Run `fn` now, or once more after the current run if called while it runs (no pile-ups). */
function coalesced(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      do { again = false; await fn(); } while (again);
    })();
    try { await running; } finally { running = null; }
    return undefined;
  };
  return run;
}

const orderBadge = (status) => h("span", { class: `badge badge-${status}` }, ORDER_STATUS[status] || status);
const clock = (iso) => (iso ? iso.slice(11, 19) : "—"); // "2026-01-01T09:30:05Z" -> "09:30:05"

export async function marketsView(container, params) {
  const instruments = (await get("/v1/projects?status=trading"))
    .filter((p) => p.board in BOARD_LABEL)
    .sort((a, b) => a.project_id - b.project_id);
  const liveDot = h("span", { id: "live", class: "live", role: "status", dataset: { state: "connecting" } },
    LIVE_TEXT.connecting);
  container.append(h("div", { class: "page-head market-head" },
    h("div", {}, h("h1", {}, "Markets"),
      h("p", { class: "muted" }, "Secondary trading in listed projects. Equity and debt trade continuously; "
        + "IP units rest until a call auction uncrosses them at one price.")),
    instruments.length ? liveDot : null));
  if (!instruments.length) {
    container.append(panel("No market yet", h("p", { class: "empty", id: "no-markets" },
      "No instrument is trading yet. Projects list here once their offering closes and any lock-up ends.")));
    return undefined;
  }
  const wanted = params[0] ? Number(params[0]) : null;
  const current = instruments.find((p) => p.project_id === wanted) || instruments[0];
  const id = current.project_id;
  const ip = current.board === "ip";
  const unit = UNIT[current.board];
  const role = session.me && session.me.role;
  const investor = role === "investor";

  // ---- toolbar: picker and headline figures ----
  const selectId = "market-instrument";
  const select = h("select", { id: selectId },
    instruments.map((p) => h("option", { value: String(p.project_id) },
      `#${p.project_id} ${p.title} · ${BOARD_LABEL[p.board]}`)));
  select.value = String(id);
  select.addEventListener("change", () => { location.hash = `#/markets/${select.value}`; });
  const stat = (key, label) => {
    const value = h("dd", { dataset: { field: key } }, "—");
    return [value, h("div", { class: "market-stat" }, h("dt", {}, label), value)];
  };
  const [lastEl, lastBox] = stat("last", "Last");
  const [bidEl, bidBox] = stat("best_bid", "Best bid");
  const [askEl, askBox] = stat("best_ask", "Best ask");
  const [spreadEl, spreadBox] = stat("spread", "Spread");
  container.append(h("div", { class: "toolbar market-toolbar" },
    h("div", { class: "field" }, h("label", { for: selectId }, "Instrument"), select),
    h("dl", { class: "market-stats", id: "market-stats" },
      h("div", { class: "market-stat" }, h("dt", {}, "Board"),
        h("dd", {}, h("span", { class: `chip chip-${current.board}` }, BOARD_LABEL[current.board]))),
      lastBox, bidBox, askBox, spreadBox)));
  if (wanted !== null && wanted !== id) {
    container.append(h("p", { class: "message error", role: "alert" },
      `Instrument #${wanted} is not trading; showing #${id} instead.`));
  }

  const cleanups = [];

  // ---- order book ----
  const book = { bids: new Map(), asks: new Map() };
  const bookBox = h("div", { id: "book", class: "book" });
  const spreadLine = h("p", { id: "spread", class: "spread" });
  const levels = (map, descending) => [...map.entries()]
    .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0])).slice(0, DEPTH);
  const ladder = (side, rows, max) => {
    const tableId = side === "buy" ? "bids" : "asks";
    const title = side === "buy" ? "Bids (buy)" : "Asks (sell)";
    const headingId = newId("h");
    const body = rows.length
      ? h("table", { id: tableId, class: `ladder ladder-${side}`, "aria-labelledby": headingId },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Price"),
          h("th", { scope: "col", class: "num" }, "Quantity"))),
        h("tbody", {}, rows.map(([price, qty]) => h("tr", {
          style: `--depth:${percentOf(qty, max)}%`, dataset: { price: String(price) },
        }, h("td", { class: "num price" }, yuan(price)), h("td", { class: "num" }, count(qty))))))
      : h("p", { class: "empty", id: tableId }, side === "buy" ? "No bids." : "No asks.");
    return h("div", { class: "ladder-side" }, h("h3", { id: headingId }, title), body);
  };
  const renderBook = () => {
    const bids = levels(book.bids, true);
    const asks = levels(book.asks, false);
    const max = [...bids, ...asks].reduce((m, [, q]) => (q > m ? q : m), 1);
    const bestBid = bids.length ? bids[0][0] : null;
    const bestAsk = asks.length ? asks[0][0] : null;
    bidEl.textContent = yuan(bestBid);
    askEl.textContent = yuan(bestAsk);
    if (bestBid !== null && bestAsk !== null) {
      if (bestAsk > bestBid) {
        const spread = BigInt(bestAsk) - BigInt(bestBid);
        spreadEl.textContent = yuan(spread);
        spreadLine.textContent = `Spread ${yuan(spread)} between the best bid ${yuan(bestBid)} and the best ask ${yuan(bestAsk)}`;
      } else {
        spreadEl.textContent = "crossed";
        spreadLine.textContent = ip ? "Bids and asks cross: the next call auction will match them."
          : "The book is crossed.";
      }
    } else {
      spreadEl.textContent = "—";
      spreadLine.textContent = bestBid === null && bestAsk === null ? "The book is empty."
        : `One-sided book: no ${bestBid === null ? "bids" : "asks"}.`;
    }
    bookBox.replaceChildren(ladder("buy", bids, max), ladder("sell", asks, max));
  };

  // ---- trades ----
  const trades = [];
  const fresh = new Set();
  const tradesBox = h("div", { id: "trades" });
  const renderTrades = () => {
    lastEl.textContent = trades.length ? yuan(trades[0].price) : "—";
    if (!trades.length) {
      tradesBox.replaceChildren(h("p", { class: "empty", id: "trades-table" }, "No trades yet."));
      return;
    }
    tradesBox.replaceChildren(h("div", { class: "table-wrap trades-wrap" }, h("table", { id: "trades-table" },
      h("caption", { class: "sr-only" }, "Recent trades, newest first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col", class: "num" }, "Price"),
        h("th", { scope: "col", class: "num" }, "Quantity"), h("th", { scope: "col" }, "Taker"))),
      h("tbody", {}, trades.slice(0, TRADES_SHOWN).map((t) => h("tr", {
        class: fresh.has(t.trade_id) ? "fresh" : null, dataset: { tradeId: String(t.trade_id) },
      }, h("td", { title: when(t.time) }, clock(t.time)),
      h("td", { class: `num price taker-${t.taker_side}` }, yuan(t.price)),
      h("td", { class: "num" }, count(t.quantity)),
      h("td", {}, h("span", { class: `side side-${t.taker_side}` }, SIDE_LABEL[t.taker_side] || t.taker_side))))))));
    fresh.clear();
  };

  // ---- chart ----
  let interval = "1m";
  const chartBox = h("div", { id: "chart", class: "chart" });
  const intervalButtons = INTERVALS.map(([value, label]) => h("button", {
    type: "button", class: "small", "aria-pressed": String(value === interval), dataset: { interval: value },
    onclick: () => {
      interval = value;
      intervalButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.interval === value)));
      refreshCandles();
    },
  }, label));
  const refreshCandles = coalesced(async () => {
    try {
      const candles = await get(`/v1/instruments/${id}/candles?interval=${interval}&limit=${CANDLES}`);
      chartBox.replaceChildren(priceChart(candles, interval));
    } catch (err) {
      chartBox.replaceChildren(h("p", { class: "empty" }, `Chart unavailable (${err.code || err.message}).`));
    }
  });

  // ---- the investor's balances, shown on the ticket ----
  const available = h("p", { id: "available", class: "hint available" });
  const refreshMe = coalesced(async () => {
    if (!investor) return;
    try {
      const me = await get("/v1/me");
      const holding = (me.holdings || []).find((x) => x.instrument_id === id);
      available.textContent = `Available: ${yuan(me.cash_available)} cash · `
        + `${count(holding ? holding.quantity_available : 0)} ${unit}`;
    } catch { /* the figure just stays stale */ }
  });

  // ---- open orders (live over the private orders channel) ----
  const myOrders = new Map();
  const done = new Set(); // ids seen finished: a late, older copy must not bring them back
  const ordersBox = h("div", { id: "open-orders" });
  const ordersMessages = messageArea();
  const mergeOrder = (order) => {
    if (done.has(order.order_id)) return;
    const known = myOrders.get(order.order_id);
    if (known && known.filled_quantity > order.filled_quantity) return;
    if (OPEN.has(order.status)) myOrders.set(order.order_id, order);
    else { myOrders.delete(order.order_id); done.add(order.order_id); }
  };
  const renderOrders = () => {
    const rows = [...myOrders.values()].sort((a, b) => a.order_id - b.order_id);
    if (!rows.length) {
      ordersBox.replaceChildren(ordersMessages.el, h("p", { class: "empty", id: "open-orders-table" }, "No open orders."));
      return;
    }
    ordersBox.replaceChildren(ordersMessages.el, h("div", { class: "table-wrap" }, h("table", { id: "open-orders-table" },
      h("caption", { class: "sr-only" }, "My open orders"),
      h("thead", {}, h("tr", {}, ["Order", "Side", "Price", "Filled", "Left", ""].map((label, i) =>
        h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : null }, label)))),
      h("tbody", {}, rows.map((o) => h("tr", { dataset: { orderId: String(o.order_id) } },
        h("td", {}, `#${o.order_id}`, o.instrument_id !== id
          ? h("a", { class: "small other-market", href: `#/markets/${o.instrument_id}` }, ` on #${o.instrument_id}`) : null),
        h("td", {}, h("span", { class: `side side-${o.side}` }, SIDE_LABEL[o.side] || o.side)),
        h("td", { class: "num" }, o.price === null ? "market" : yuan(o.price)),
        h("td", { class: "num", "data-field": "filled" }, `${count(o.filled_quantity)}/${count(o.quantity)}`),
        h("td", { class: "num", "data-field": "remaining" }, count(o.remaining_quantity)),
        h("td", { class: "actions" }, actionButton("Cancel", ordersMessages, async () => {
          mergeOrder(await del(`/v1/orders/${o.order_id}`));
          renderOrders();
          refreshMe();
        }, { class: "small danger", "aria-label": `Cancel order #${o.order_id}` }))))))));
  };

  // ---- auction (IP) ----
  const indicativeEl = h("dd", { id: "indicative-price", dataset: { field: "indicative_price" } }, "—");
  const indicativeQtyEl = h("dd", { id: "indicative-quantity", dataset: { field: "indicative_quantity" } }, "—");
  const refreshIndicative = coalesced(async () => {
    if (!ip) return;
    try {
      const a = await get(`/v1/instruments/${id}/auction`);
      indicativeEl.textContent = a.quantity ? yuan(a.price) : "no cross";
      indicativeQtyEl.textContent = a.quantity ? `${count(a.quantity)} ${unit}` : "—";
    } catch { /* stays as it was */ }
  });

  // ---- live channels ----
  let bookResync = false;
  const bookLive = new LiveChannel(`book:${id}`, (data, message) => {
    if (message.type === "snapshot") {
      bookResync = false;
      book.bids = new Map(data.bids);
      book.asks = new Map(data.asks);
    } else {
      for (const [side, price, qty] of data.changes) {
        const map = side === "buy" ? book.bids : book.asks;
        if (qty) map.set(price, qty); else map.delete(price);
      }
    }
    renderBook();
    refreshIndicative();
  }, (state) => {
    liveDot.dataset.state = state;
    liveDot.textContent = LIVE_TEXT[state];
  });
  cleanups.push(() => bookLive.close());
  const tradesLive = new LiveChannel(`trades:${id}`, (data, message) => {
    if (message.type === "snapshot") trades.splice(0, trades.length, ...data);
    else { trades.unshift(data); trades.length = Math.min(trades.length, 200); fresh.add(data.trade_id); }
    renderTrades();
    if (message.type !== "update") return;
    refreshCandles();
    // An uncross fills resting orders away from their limit prices, and the server's book
    // update for it carries only the levels at the uncross price: take a fresh snapshot.
    if (ip && !bookResync) { bookResync = true; bookLive.resync(); }
  });
  cleanups.push(() => tradesLive.close());
  if (investor) {
    const ordersLive = new LiveChannel("orders", (data, message) => {
      if (message.type === "snapshot") {
        myOrders.clear();
        data.forEach(mergeOrder);
      } else {
        mergeOrder(data);
        refreshMe();
      }
      renderOrders();
    }, () => {}, {
      auth: true,
      onError: (m) => { if (m.code === "unauthorized") ordersMessages.error(m); },
    });
    cleanups.push(() => ordersLive.close());
  }

  // ---- layout ----
  const chartPanel = panel("Price", h("div", { class: "segmented", role: "group", "aria-label": "Candle interval" },
    intervalButtons), chartBox);
  chartPanel.classList.add("chart-panel");
  const side = [];
  if (ip) side.push(auctionPanel(id, unit, indicativeEl, indicativeQtyEl, refreshIndicative, role));
  if (investor) {
    side.push(orderTicket(current, { unit, ip, available, mergeOrder, renderOrders, refreshMe }));
    side.push(panel("My open orders", ordersBox));
  } else {
    side.push(panel("Trade", role
      ? h("p", { class: "muted" }, "Only investor accounts place orders.")
      : h("p", {}, h("a", { href: `#/signin?next=${encodeURIComponent(`/markets/${id}`)}` }, "Sign in"),
        " with an investor API key to place orders.")));
  }
  container.append(h("div", { class: "market-layout" },
    h("div", { class: "market-main" }, chartPanel,
      h("div", { class: "market-pair" },
        panel("Order book", spreadLine, bookBox),
        panel("Recent trades", tradesBox))),
    h("div", { class: "market-side" }, side)));
  renderBook();
  renderTrades();
  renderOrders();
  await Promise.all([refreshCandles(), refreshMe(), refreshIndicative()]);
  return () => cleanups.forEach((fn) => fn());
}

// ---- the order ticket ----------------------------------------------------------------------

function segmented(name, legend, options, checked) {
  return h("fieldset", { class: `segmented-field seg-${name}` }, h("legend", {}, legend),
    h("div", { class: "segmented" }, options.map(([value, label]) => {
      const inputId = `${name}-${value}`;
      return [h("input", { type: "radio", name, value, id: inputId, class: "seg-input", checked: value === checked }),
        h("label", { for: inputId, class: `seg-label seg-${value}` }, label)];
    })));
}

function orderTicket(instrument, { unit, ip, available, mergeOrder, renderOrders, refreshMe }) {
  const messages = messageArea();
  const result = h("div", { id: "order-result", class: "order-result", role: "status", "aria-live": "polite" });
  result.hidden = true;
  const price = h("input", { id: "order-price", name: "price", inputmode: "decimal", autocomplete: "off",
    placeholder: "0.00", "aria-describedby": "order-price-hint" });
  const quantity = h("input", { id: "order-quantity", name: "quantity", inputmode: "numeric", autocomplete: "off",
    placeholder: "0", "aria-describedby": "available" });
  const tif = h("select", { id: "order-tif", name: "tif" },
    [["gtc", "Good till cancelled"], ["ioc", "Immediate or cancel"], ["fok", "Fill or kill"]]
      .map(([value, label]) => h("option", { value }, label)));
  const postOnly = h("input", { type: "checkbox", id: "order-post-only", name: "post_only" });
  const estimate = h("p", { id: "order-estimate", class: "cost", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary", id: "order-submit" }, "Place buy order");
  const form = h("form", { id: "order-ticket", class: "stack ticket", novalidate: true },
    segmented("side", "Side", [["buy", "Buy"], ["sell", "Sell"]], "buy"),
    ip ? null : segmented("type", "Order type", [["limit", "Limit"], ["market", "Market"]], "limit"),
    h("div", { class: "ticket-row" },
      h("div", { class: "field" }, h("label", { for: "order-price" }, "Price (¥ per unit)"), price,
        h("small", { class: "hint", id: "order-price-hint" }, "Up to 2 decimals.")),
      h("div", { class: "field" }, h("label", { for: "order-quantity" }, `Quantity (${unit})`), quantity)),
    available,
    ip ? h("p", { class: "hint" }, "IP orders are limit, good till cancelled; they rest until the call auction.")
      : [h("div", { class: "field" }, h("label", { for: "order-tif" }, "Time in force"), tif),
        h("div", { class: "check" }, postOnly, h("label", { for: "order-post-only" }, "Post only"),
          h("small", { class: "hint" }, "Only rests on the book: refused if it would trade at once (limit, GTC)."))],
    estimate, submit, messages.el, result);

  const value = (name) => {
    const checked = form.querySelector(`input[name=${name}]:checked`);
    return checked ? checked.value : null;
  };
  const sync = () => {
    const side = value("side");
    const market = !ip && value("type") === "market";
    price.disabled = market;
    price.closest(".field").classList.toggle("disabled", market);
    if (!ip) {
      postOnly.disabled = market || tif.value !== "gtc";
      if (postOnly.disabled) postOnly.checked = false;
    }
    submit.textContent = `Place ${side} order`;
    submit.className = `primary submit-${side}`;
    // A live estimate, exact in fen; nothing when the fields do not parse yet.
    let text = "";
    try {
      const q = parseCount(quantity.value);
      if (!market) {
        const notional = times(parseYuan(price.value, "price"), q);
        text = `${side === "buy" ? "Cost" : "Proceeds before fees"}: ${yuan(notional)}`;
      }
    } catch { text = ""; }
    estimate.textContent = text;
    estimate.hidden = !text;
  };
  form.addEventListener("input", sync);
  form.addEventListener("change", sync);
  sync();

  onSubmit(form, messages, async () => {
    result.hidden = true;
    const type = ip ? "limit" : value("type");
    const body = {
      instrument_id: instrument.project_id,
      side: value("side"),
      type,
      quantity: parseCount(quantity.value, { what: "quantity" }),
    };
    if (type === "limit") body.price = parseYuan(price.value, "price");
    if (!ip) {
      body.time_in_force = tif.value;
      if (postOnly.checked && type === "limit") body.post_only = true;
    }
    const order = await post("/v1/orders", body);
    showResult(result, order, unit);
    mergeOrder(order);
    renderOrders();
    refreshMe();
  });
  return panel("Order ticket", form);
}

function showResult(box, order, unit) {
  const filled = `filled ${count(order.filled_quantity)} of ${count(order.quantity)}`;
  let note = null;
  if (!order.fills.length) {
    note = h("p", { class: "muted small" }, OPEN.has(order.status)
      ? `Resting on the book at ${yuan(order.price)}.` : "Nothing traded.");
  } else if (OPEN.has(order.status)) {
    note = h("p", { class: "muted small" }, `${count(order.remaining_quantity)} ${unit} rest on the book.`);
  }
  const fills = order.fills.length ? h("table", { class: "fills", id: "order-fills" },
    h("caption", { class: "sr-only" }, `Fills of order #${order.order_id}`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Trade"), h("th", { scope: "col", class: "num" }, "Price"),
      h("th", { scope: "col", class: "num" }, "Quantity"))),
    h("tbody", {}, order.fills.map((f) => h("tr", {}, h("td", {}, `#${f.trade_id}`),
      h("td", { class: "num" }, yuan(f.price)), h("td", { class: "num" }, count(f.quantity)))))) : null;
  box.replaceChildren(
    h("p", { class: "order-line" }, h("strong", {}, `Order #${order.order_id}`), " ", orderBadge(order.status),
      " ", h("span", {}, filled)),
    note, fills);
  box.hidden = false;
}

// ---- the call auction (IP) -------------------------------------------------------------------

function auctionPanel(id, unit, priceEl, quantityEl, refresh, role) {
  const messages = messageArea();
  const children = [
    h("p", { class: "muted small" }, "Orders rest until the daily uncross at 15:00 UTC; all matched orders trade at one price."),
    h("dl", { class: "facts", id: "auction" },
      h("dt", {}, "Indicative price"), priceEl,
      h("dt", {}, "Indicative volume"), quantityEl),
  ];
  if (role === "operator") {
    children.push(h("div", { class: "button-row" }, actionButton("Run auction now", messages, async () => {
      const r = await post(`/v1/instruments/${id}/auction`);
      messages.ok(r.quantity ? `Uncrossed ${count(r.quantity)} ${unit} at ${yuan(r.price)} in ${count(r.trade_count)} trade${r.trade_count === 1 ? "" : "s"}.`
        : "Nothing crossed; no trades.");
      await refresh();
    }, { id: "run-auction", class: "primary" })));
  }
  children.push(messages.el);
  return panel("Call auction", ...children);
}

// ---- the price chart: inline SVG candles -----------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function candleTime(iso, interval) {
  if (!iso) return "";
  return interval === "1d" ? iso.slice(0, 10) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function priceChart(candles, interval) {
  if (!candles.length) return h("p", { class: "empty", id: "chart-empty" }, "No trades yet: the chart starts with the first trade.");
  const W = 640;
  const H = 190;
  const left = 8;
  const right = W - 76;
  const top = 12;
  const bottom = H - 26;
  let lo = candles.reduce((m, c) => Math.min(m, c.low), Infinity);
  let hi = candles.reduce((m, c) => Math.max(m, c.high), -Infinity);
  const labelLo = lo;
  const labelHi = hi;
  const pad = Math.max(1, Math.round((hi - lo) * 0.08));
  lo -= pad; hi += pad;
  const y = (p) => bottom - ((p - lo) / (hi - lo)) * (bottom - top);
  const slot = (right - left) / Math.max(candles.length, 8);
  const bodyW = Math.max(2, Math.min(slot * 0.6, 16));
  const x = (i) => left + slot * (i + 0.5);
  const grid = [labelHi, labelLo].concat(labelHi > labelLo
    ? [Number((BigInt(labelHi) + BigInt(labelLo)) / 2n)] : []).map((p) => s("g", { class: "grid" },
    s("line", { x1: left, x2: right, y1: y(p), y2: y(p) }),
    s("text", { x: right + 6, y: y(p) + 4 }, yuan(p))));
  const line = s("polyline", { class: "close-line", points: candles.map((c, i) => `${x(i).toFixed(1)},${y(c.close).toFixed(1)}`).join(" ") });
  const bars = candles.map((c, i) => {
    const up = c.close >= c.open;
    const yTop = y(Math.max(c.open, c.close));
    const height = Math.max(1.5, Math.abs(y(c.open) - y(c.close)));
    return s("g", { class: up ? "candle up" : "candle down" },
      s("title", {}, `${candleTime(c.time, interval)} UTC: open ${yuan(c.open)}, high ${yuan(c.high)}, low ${yuan(c.low)}, close ${yuan(c.close)}, volume ${count(c.volume)}`),
      s("line", { x1: x(i), x2: x(i), y1: y(c.high), y2: y(c.low) }),
      s("rect", { x: x(i) - bodyW / 2, y: yTop, width: bodyW, height, rx: 1 }));
  });
  const first = candles[0];
  const last = candles[candles.length - 1];
  const axis = [s("text", { class: "axis", x: left, y: H - 6 }, candleTime(first.time, interval))];
  if (candles.length > 1) axis.push(s("text", { class: "axis", x: x(candles.length - 1), y: H - 6, "text-anchor": "end" }, candleTime(last.time, interval)));
  const volume = candles.reduce((sum, c) => sum + BigInt(c.volume), 0n);
  const summary = `${candles.length} candle${candles.length === 1 ? "" : "s"} from ${candleTime(first.time, interval)} to `
    + `${candleTime(last.time, interval)} UTC; last close ${yuan(last.close)}, low ${yuan(labelLo)}, high ${yuan(labelHi)}, `
    + `volume ${count(volume)}.`;
  const titleId = newId("chart");
  return h("figure", { class: "chart-figure" },
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": titleId, class: "chart-svg" },
      s("title", { id: titleId }, `Price chart: ${summary}`), grid, line, bars, axis),
    h("figcaption", { class: "hint" }, summary));
}
