// Secondary markets: an instrument's live order book with its depth and trades (WebSocket), a
// candle chart with volume and a crosshair (TradingView's Lightweight Charts, vendored as one
// file with its licence in static/vendor/), the last 24 hours' figures, an order ticket, the
// investor's open orders (live over the private `orders` channel) and, for IP instruments, the
// call auction's indicative uncross. Prices are integer fen throughout; the chart draws numbers
// but every price it labels goes through yuan(), so no amount shown is a float's.
import { LiveChannel, del, get, patch, post, session } from "../api.js";
import { actionButton, facts, h, loadInto, messageArea, newId, onSubmit, panel, table, when } from "../dom.js";
import { getLang, t } from "../i18n.js";
import { count, parseCount, parseYuan, percent, percentOf, times, yuan } from "../money.js";
import { exchangeNowMs, venue } from "../venue.js";
import { TRADABLE, boardLabel, units } from "./funding.js";

const DEPTH = 12; // levels shown per side
const TRADES_SHOWN = 25;
const CANDLES = 120;
const INTERVALS = ["1m", "1h", "1d"];
const OPEN = new Set(["open", "partially_filled"]);
const DAY_MS = 86_400_000;

/** Run `fn` now, or once more after the current run if called while it runs (no pile-ups). */
function coalesced(fn) {
  let running = null;
  let again = false;
  return async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      do { again = false; await fn(); } while (again);
    })();
    try { await running; } finally { running = null; }
    return undefined;
  };
}

const orderBadge = (status) => h("span", { class: `badge badge-${status}` }, t(`order_status.${status}`));
const clockText = (iso) => (iso ? iso.slice(11, 19) : "—"); // "2026-01-01T09:30:05Z" -> "09:30:05"
const sideText = (side) => h("span", { class: `side side-${side}` }, t(`side.${side}`));

/** The colours of up and down as this venue's investors read them (cn2015: red is up). */
function priceColours() {
  const style = getComputedStyle(document.documentElement);
  return { up: style.getPropertyValue("--up").trim() || "#1a7a43", down: style.getPropertyValue("--down").trim() || "#b3261e" };
}

// ---- the book ---------------------------------------------------------------------------------

function ladder(side, rows) {
  const tableId = side === "buy" ? "bids" : "asks";
  const headingId = newId("h");
  let total = 0;
  const cumulative = rows.map(([price, qty]) => { total += qty; return [price, qty, total]; });
  const max = Math.max(total, 1);
  const body = rows.length
    ? h("table", { id: tableId, class: `ladder ladder-${side}`, "aria-labelledby": headingId },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, t("book.price")),
        h("th", { scope: "col", class: "num" }, t("book.quantity")), h("th", { scope: "col", class: "num" }, t("book.total")))),
      h("tbody", {}, cumulative.map(([price, qty, sum]) => h("tr", {
        style: `--depth:${percentOf(sum, max)}%`, dataset: { price: String(price) },
      }, h("td", { class: "num price" }, yuan(price)), h("td", { class: "num" }, count(qty)),
      h("td", { class: "num cum" }, count(sum))))))
    : h("p", { class: "empty", id: tableId }, t(side === "buy" ? "book.no_bids" : "book.no_asks"));
  return h("div", { class: "ladder-side" }, h("h3", { id: headingId }, t(side === "buy" ? "book.bids" : "book.asks")), body);
}

function spreadText(bestBid, bestAsk, ip) {
  if (bestBid !== null && bestAsk !== null) {
    if (bestAsk > bestBid) {
      const spread = yuan(BigInt(bestAsk) - BigInt(bestBid));
      return [spread, t("book.spread_line", { spread, bid: yuan(bestBid), ask: yuan(bestAsk) })];
    }
    return [t("book.crossed_short"), t(ip ? "book.crossed_ip" : "book.crossed")];
  }
  if (bestBid === null && bestAsk === null) return ["—", t("book.empty")];
  return ["—", t(bestBid === null ? "book.no_bids_side" : "book.no_asks_side")];
}

// ---- 24 hours ---------------------------------------------------------------------------------

/** Change, high, low and volume over the last 24 h of exchange time, from hourly candles. */
export function dayFigures(candles, nowMs) {
  const since = nowMs - DAY_MS;
  const day = candles.filter((c) => Date.parse(c.time) >= since - 3_600_000 + 1);
  if (!day.length) return null;
  const open = day[0].open;
  const close = day[day.length - 1].close;
  const changeBps = Number(((BigInt(close) - BigInt(open)) * 10000n) / BigInt(open));
  return {
    change: BigInt(close) - BigInt(open), changeBps, close,
    high: day.reduce((m, c) => Math.max(m, c.high), -Infinity),
    low: day.reduce((m, c) => Math.min(m, c.low), Infinity),
    volume: day.reduce((s, c) => s + BigInt(c.volume), 0n),
  };
}

function dayPanelContent(figures) {
  if (!figures) return h("p", { class: "empty", id: "day-empty" }, t("day.none"));
  const dir = figures.change > 0n ? "up" : figures.change < 0n ? "down" : "flat";
  const sign = figures.change > 0n ? "+" : "";
  return facts([
    ["change", t("day.change"), h("span", { class: `move move-${dir}` }, `${sign}${yuan(figures.change)} (${sign}${percent(figures.changeBps)})`)],
    ["high", t("day.high"), yuan(figures.high)],
    ["low", t("day.low"), yuan(figures.low)],
    ["volume", t("day.volume"), count(figures.volume)],
  ], { class: "facts day-facts", id: "day-figures" });
}

// ---- the chart --------------------------------------------------------------------------------

/**
 * The candle chart: candles above, volume below, a crosshair whose candle is written out in
 * the legend (also the text alternative for screen readers). Returns { el, update, destroy }.
 */
async function candleChart() {
  const box = h("div", { class: "chart-canvas", id: "chart-canvas" });
  const legend = h("div", { class: "chart-legend", id: "chart-legend", "aria-live": "off" });
  const empty = h("p", { class: "empty", id: "chart-empty" }, t("chart.empty"));
  const el = h("figure", { class: "chart-figure", id: "chart", role: "group", "aria-label": t("chart.label") }, legend, box, empty);
  let lib = null;
  try { lib = await import("../../vendor/lightweight-charts.js"); } catch { lib = null; }
  if (!lib) {
    empty.textContent = t("chart.unavailable");
    return { el, update() {}, destroy() {} };
  }
  const colours = priceColours();
  const chart = lib.createChart(box, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#4a5568", fontSize: 12, attributionLogo: true,
      fontFamily: getComputedStyle(document.body).fontFamily },
    grid: { vertLines: { color: "#eef1f5" }, horzLines: { color: "#eef1f5" } },
    crosshair: { mode: lib.CrosshairMode.Normal },
    localization: { locale: getLang() === "zh" ? "zh-CN" : "en-US", priceFormatter: (p) => yuan(Math.round(p)) },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#d5dbe5" },
    rightPriceScale: { borderColor: "#d5dbe5" },
  });
  const candles = chart.addSeries(lib.CandlestickSeries, {
    upColor: colours.up, downColor: colours.down, borderUpColor: colours.up, borderDownColor: colours.down,
    wickUpColor: colours.up, wickDownColor: colours.down,
    priceFormat: { type: "custom", minMove: 1, formatter: (p) => yuan(Math.round(p)) },
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.3 } });
  const volume = chart.addSeries(lib.HistogramSeries, { priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.75, bottom: 0 } });
  let byTime = new Map();
  let last = null;
  const showLegend = (c) => {
    if (!c) { legend.replaceChildren(); return; }
    legend.replaceChildren(h("span", { class: "legend-time", dataset: { field: "time" } }, `${when(c.time)}`),
      ...[["open", "chart.o"], ["high", "chart.h"], ["low", "chart.l"], ["close", "chart.c"]].map(([k, key]) => h("span", { dataset: { field: k } }, `${t(key)} ${yuan(c[k])}`)),
      h("span", { dataset: { field: "volume" } }, `${t("chart.v")} ${count(c.volume)}`));
  };
  chart.subscribeCrosshairMove((param) => {
    const c = param && param.time !== undefined ? byTime.get(param.time) : null;
    legend.dataset.hover = c ? "true" : "false";
    showLegend(c || last);
  });
  const update = (data, fit) => {
    const colourOf = (c) => (c.close >= c.open ? colours.up : colours.down);
    byTime = new Map(data.map((c) => [Date.parse(c.time) / 1000, c]));
    candles.setData(data.map((c) => ({ time: Date.parse(c.time) / 1000, open: c.open, high: c.high, low: c.low, close: c.close })));
    volume.setData(data.map((c) => ({ time: Date.parse(c.time) / 1000, value: c.volume, color: `${colourOf(c)}66` })));
    last = data.length ? data[data.length - 1] : null;
    empty.hidden = data.length > 0;
    box.hidden = data.length === 0;
    el.dataset.candles = String(data.length);
    showLegend(last);
    if (fit) chart.timeScale().fitContent();
  };
  return { el, update, destroy: () => chart.remove() };
}

// ---- open orders ------------------------------------------------------------------------------

/** Integer fen as the yuan text an input starts with ("1234" -> "12.34"): exact, no float. */
function yuanInput(fen) {
  return `${Math.floor(fen / 100)}.${String(fen % 100).padStart(2, "0")}`;
}

/**
 * The edit form of one open order (API.md's amend): a new price and/or total quantity; only
 * what changed is sent. Hidden until its Edit button opens it.
 */
function amendForm(o, onAmend, messages) {
  const priceId = newId("amend-price");
  const quantityId = newId("amend-quantity");
  const form = h("form", { class: "amend-form", hidden: true, "aria-label": t("orders.edit_label", { id: o.order_id }) },
    h("p", { class: "muted small" }, t("orders.amend_rule")),
    h("div", { class: "field" }, h("label", { for: priceId }, t("orders.new_price")),
      h("input", { id: priceId, name: "price", inputmode: "decimal", value: yuanInput(o.price) })),
    h("div", { class: "field" }, h("label", { for: quantityId }, t("orders.new_quantity")),
      h("input", { id: quantityId, name: "quantity", inputmode: "numeric", value: String(o.quantity) })),
    h("button", { type: "submit", class: "small" }, t("orders.save")));
  onSubmit(form, messages, async () => {
    const body = {};
    const price = parseYuan(form.elements.price.value, t("orders.new_price"));
    const quantity = parseCount(form.elements.quantity.value, { what: t("orders.new_quantity") });
    if (price !== o.price) body.price = price;
    if (quantity !== o.quantity) body.quantity = quantity;
    if (!Object.keys(body).length) throw new RangeError(t("orders.unchanged"));
    await onAmend(o, body);
  });
  return form;
}

/** The investor's open orders as cards: every Cancel and Edit button stays inside its panel at any width. */
function orderCards(rows, id, onCancel, onAmend, messages) {
  if (!rows.length) return h("p", { class: "empty", id: "open-orders-table" }, t("orders.none_open"));
  return h("ul", { class: "order-cards", id: "open-orders-table", "aria-label": t("orders.open_title") }, rows.map((o) => {
    const form = o.price === null ? null : amendForm(o, onAmend, messages);
    const edit = form ? h("button", { type: "button", class: "small", "aria-expanded": "false",
      "aria-label": t("orders.edit_label", { id: o.order_id }) }, t("orders.edit")) : null;
    if (edit) {
      edit.addEventListener("click", () => {
        form.hidden = !form.hidden;
        edit.setAttribute("aria-expanded", String(!form.hidden));
      });
    }
    return h("li", { class: "order-card", dataset: { orderId: String(o.order_id) } },
      orderCardBody(o, id, onCancel, messages, edit), form);
  }));
}

function orderCardBody(o, id, onCancel, messages, edit) {
  return h("div", { class: "order-card-row" }, h("div", { class: "order-card-main" },
    h("div", { class: "order-card-line" }, h("strong", {}, `#${o.order_id}`), " ", sideText(o.side), " ",
      h("span", { class: "num" }, o.price === null ? t("orders.market") : yuan(o.price)),
      o.instrument_id !== id ? h("a", { class: "small other-market", href: `#/markets/${o.instrument_id}` }, ` ${t("orders.on", { id: o.instrument_id })}`) : null),
    h("div", { class: "order-card-line muted small" },
      h("span", { "data-field": "filled" }, t("orders.filled_of", { filled: count(o.filled_quantity), quantity: count(o.quantity) })), " · ",
      t("orders.left"), " ", h("span", { "data-field": "remaining" }, count(o.remaining_quantity)))),
  h("div", { class: "order-card-actions" }, edit,
    actionButton(t("common.cancel"), messages, () => onCancel(o), { class: "small danger", "aria-label": t("orders.cancel_label", { id: o.order_id }) })));
}

// ---- the view ---------------------------------------------------------------------------------

function marketHeader(instruments, current, wanted, liveDot) {
  const selectId = "market-instrument";
  const select = h("select", { id: selectId },
    instruments.map((p) => h("option", { value: String(p.project_id) }, `#${p.project_id} ${p.title} · ${boardLabel(p.board)}`)));
  select.value = String(current.project_id);
  select.addEventListener("change", () => { location.hash = `#/markets/${select.value}`; });
  const stats = {};
  const stat = (key) => {
    stats[key] = h("dd", { dataset: { field: key } }, "—");
    return h("div", { class: "market-stat" }, h("dt", {}, t(`market.${key}`)), stats[key]);
  };
  const parts = [h("div", { class: "toolbar market-toolbar" },
    h("div", { class: "field" }, h("label", { for: selectId }, t("market.instrument")), select),
    h("dl", { class: "market-stats", id: "market-stats" },
      h("div", { class: "market-stat" }, h("dt", {}, t("market.board")),
        h("dd", {}, h("span", { class: `chip chip-${current.board}` }, boardLabel(current.board)))),
      stat("last"), stat("best_bid"), stat("best_ask"), stat("spread")))];
  if (wanted !== null && wanted !== current.project_id) {
    parts.push(h("p", { class: "message error", role: "alert" }, t("market.not_trading", { wanted, id: current.project_id })));
  }
  return { parts, stats, liveDot };
}

export async function marketsView(container, params) {
  const instruments = (await get("/v1/projects?status=trading"))
    .filter((p) => TRADABLE.has(p.board)).sort((a, b) => a.project_id - b.project_id);
  const liveDot = h("span", { id: "live", class: "live", role: "status", dataset: { state: "connecting" } }, t("live.connecting"));
  container.append(h("div", { class: "page-head market-head" },
    h("div", {}, h("h1", {}, t("market.title")), h("p", { class: "muted" }, t("market.lead"))),
    instruments.length ? liveDot : null));
  if (!instruments.length) {
    container.append(panel(t("market.none_title"), h("p", { class: "empty", id: "no-markets" }, t("market.none"))));
    return undefined;
  }
  const wanted = params[0] ? Number(params[0]) : null;
  const current = instruments.find((p) => p.project_id === wanted) || instruments[0];
  const header = marketHeader(instruments, current, wanted, liveDot);
  container.append(...header.parts);
  return marketBody(container, current, header.stats, liveDot);
}

async function marketBody(container, current, stats, liveDot) {
  const id = current.project_id;
  const ip = current.board === "ip";
  const role = session.me && session.me.role;
  const investor = role === "investor";
  const cleanups = [];

  // ---- book ----
  const book = { bids: new Map(), asks: new Map() };
  const bookBox = h("div", { id: "book", class: "book" });
  const spreadLine = h("p", { id: "spread", class: "spread" });
  const levels = (map, descending) => [...map.entries()].sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0])).slice(0, DEPTH);
  const renderBook = () => {
    const bids = levels(book.bids, true);
    const asks = levels(book.asks, false);
    const bestBid = bids.length ? bids[0][0] : null;
    const bestAsk = asks.length ? asks[0][0] : null;
    stats.best_bid.textContent = yuan(bestBid);
    stats.best_ask.textContent = yuan(bestAsk);
    const [short, line] = spreadText(bestBid, bestAsk, ip);
    stats.spread.textContent = short;
    spreadLine.textContent = line;
    bookBox.replaceChildren(ladder("buy", bids), ladder("sell", asks));
  };

  // ---- trades ----
  const trades = [];
  const fresh = new Set();
  const tradesBox = h("div", { id: "trades" });
  const renderTrades = () => {
    stats.last.textContent = trades.length ? yuan(trades[0].price) : "—";
    if (!trades.length) {
      tradesBox.replaceChildren(h("p", { class: "empty", id: "trades-table" }, t("trades.none")));
      return;
    }
    tradesBox.replaceChildren(h("div", { class: "table-wrap trades-wrap", tabindex: "0", role: "region", "aria-label": t("trades.caption") },
      h("table", { id: "trades-table" },
        h("caption", { class: "sr-only" }, t("trades.caption")),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("trades.time")), h("th", { scope: "col", class: "num" }, t("book.price")),
          h("th", { scope: "col", class: "num" }, t("book.quantity")), h("th", { scope: "col" }, t("trades.taker")))),
        h("tbody", {}, trades.slice(0, TRADES_SHOWN).map((x) => h("tr", {
          class: fresh.has(x.trade_id) ? "fresh" : null, dataset: { tradeId: String(x.trade_id) },
        }, h("td", { title: when(x.time) }, clockText(x.time)),
        h("td", { class: `num price taker-${x.taker_side}` }, yuan(x.price)),
        h("td", { class: "num" }, count(x.quantity)),
        h("td", {}, sideText(x.taker_side))))))));
    fresh.clear();
  };

  // ---- chart and 24 h ----
  let interval = "1m";
  const chart = await candleChart();
  cleanups.push(() => chart.destroy());
  const dayBox = h("div", { id: "day" });
  const intervalButtons = INTERVALS.map((value) => h("button", {
    type: "button", class: "small", "aria-pressed": String(value === interval), dataset: { interval: value },
    onclick: () => {
      interval = value;
      intervalButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.interval === value)));
      refreshCandles(true);
    },
  }, t(`interval.${value}`)));
  let fitNext = true;
  const refreshCandlesNow = coalesced(async () => {
    try {
      const [candles, hourly] = await Promise.all([
        get(`/v1/instruments/${id}/candles?interval=${interval}&limit=${CANDLES}`),
        get(`/v1/instruments/${id}/candles?interval=1h&limit=25`)]);
      chart.update(candles, fitNext);
      fitNext = false;
      dayBox.replaceChildren(dayPanelContent(dayFigures(hourly, exchangeNowMs())));
    } catch (err) {
      dayBox.replaceChildren(h("p", { class: "empty" }, t("chart.unavailable")));
    }
  });
  const refreshCandles = (fit = false) => { if (fit) fitNext = true; return refreshCandlesNow(); };

  // ---- the investor's balances, shown on the ticket ----
  const available = h("p", { id: "available", class: "hint available" });
  const refreshMe = coalesced(async () => {
    if (!investor) return;
    try {
      const me = await get("/v1/me");
      const holding = (me.holdings || []).find((x) => x.instrument_id === id);
      available.textContent = t("ticket.available", { cash: yuan(me.cash_available), units: units(current.board, holding ? holding.quantity_available : 0) });
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
    ordersBox.replaceChildren(ordersMessages.el, orderCards(rows, id, async (o) => {
      mergeOrder(await del(`/v1/orders/${o.order_id}`));
      renderOrders();
      refreshMe();
    }, async (o, body) => {
      mergeOrder(await patch(`/v1/orders/${o.order_id}`, body));
      renderOrders();
      ordersMessages.ok(t("orders.amended", { id: o.order_id }));
      refreshMe();
    }, ordersMessages));
  };

  // ---- auction (IP) ----
  const indicativeEl = h("dd", { id: "indicative-price", dataset: { field: "indicative_price" } }, "—");
  const indicativeQtyEl = h("dd", { id: "indicative-quantity", dataset: { field: "indicative_quantity" } }, "—");
  const refreshIndicative = coalesced(async () => {
    if (!ip) return;
    try {
      const a = await get(`/v1/instruments/${id}/auction`);
      indicativeEl.textContent = a.quantity ? yuan(a.price) : t("auction.no_cross");
      indicativeQtyEl.textContent = a.quantity ? units(current.board, a.quantity) : "—";
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
    liveDot.textContent = t(`live.${state}`);
  });
  cleanups.push(() => bookLive.close());
  let offersRefresh = null; // cn2015: the bulletin board's, once laid out
  const tradesLive = new LiveChannel(`trades:${id}`, (data, message) => {
    if (message.type === "snapshot") trades.splice(0, trades.length, ...data);
    else { trades.unshift(data); trades.length = Math.min(trades.length, 200); fresh.add(data.trade_id); }
    renderTrades();
    if (message.type !== "update") return;
    refreshCandles();
    if (offersRefresh) offersRefresh();
    // An uncross fills resting orders away from their limit prices, and the server's book
    // update for it carries only the levels at the uncross price: take a fresh snapshot.
    if (ip && !bookResync) { bookResync = true; bookLive.resync(); }
  });
  cleanups.push(() => tradesLive.close());
  if (investor) {
    const ordersLive = new LiveChannel("orders", (data, message) => {
      if (message.type === "snapshot") { myOrders.clear(); data.forEach(mergeOrder); } else { mergeOrder(data); refreshMe(); }
      renderOrders();
    }, () => {}, { auth: true, onError: (m) => { if (m.code === "unauthorized") ordersMessages.error(m); } });
    cleanups.push(() => ordersLive.close());
  }

  // ---- layout ----
  const chartPanel = panel(t("chart.title"), h("div", { class: "segmented", role: "group", "aria-label": t("chart.interval") },
    intervalButtons), chart.el);
  chartPanel.classList.add("chart-panel");
  const side = [panel(t("day.title"), dayBox)];
  if (ip) side.push(auctionPanel(id, current.board, indicativeEl, indicativeQtyEl, refreshIndicative, role));
  if (investor && venue.profile === "cn2015") {
    const board = offersPanel(current, refreshMe);
    side.push(board.el);
    offersRefresh = board.refresh; // an accepted offer is a trade on the tape: read the board again
  } else if (investor) {
    side.push(orderTicket(current, { ip, available, mergeOrder, renderOrders, refreshMe }));
    side.push(panel(t("orders.open_title"), ordersBox));
  } else {
    side.push(panel(t("ticket.trade"), role
      ? h("p", { class: "muted" }, t("ticket.investors_only"))
      : h("p", {}, h("a", { href: `#/signin?next=${encodeURIComponent(`/markets/${id}`)}` }, t("shell.sign_in")), " ",
        t("ticket.sign_in_rest"))));
  }
  container.append(h("div", { class: "market-layout" },
    h("div", { class: "market-main" }, chartPanel,
      h("div", { class: "market-pair" },
        panel(t("book.title"), spreadLine, bookBox),
        panel(t("trades.title"), tradesBox))),
    h("div", { class: "market-side" }, side)));
  renderBook();
  renderTrades();
  renderOrders();
  await Promise.all([refreshCandles(true), refreshMe(), refreshIndicative()]);
  return () => cleanups.forEach((fn) => fn());
}

// ---- the bulletin board (cn2015) ------------------------------------------------------------

/**
 * Under cn2015 there is no central order book (BOARDS.md): a holder posts an offer and another
 * qualified investor accepts it, at its price. The panel lists the instrument's open offers
 * (yours to cancel, the others to accept, in part if you like) and posts new ones.
 */
function offersPanel(instrument, refreshMe) {
  const messages = messageArea();
  const list = h("div", { id: "offers-list" });
  const refresh = () => loadInto(list, async () => {
    const offers = await get(`/v1/offers?instrument_id=${instrument.project_id}`);
    return table([
      { label: t("offers.side"), cell: (o) => sideText(o.side) },
      { label: t("offers.price"), num: true, cell: (o) => yuan(o.price) },
      { label: t("offers.remaining"), num: true, cell: (o) => count(o.remaining) },
      { label: t("offers.action"), cell: (o) => (o.mine
        ? actionButton(t("offers.withdraw"), messages, async () => {
          await del(`/v1/offers/${o.offer_id}`);
          messages.ok(t("offers.cancelled", { id: o.offer_id }));
          await refresh();
          refreshMe();
        }, { class: "small danger", "aria-label": t("offers.cancel_label", { id: o.offer_id }) })
        : acceptForm(o, messages, async () => { await refresh(); refreshMe(); })) },
    ], offers.map((o) => ({ ...o, __data: { offerId: String(o.offer_id), mine: String(Boolean(o.mine)) } })),
    { caption: t("offers.title"), empty: t("offers.none"), id: "offers-table", cards: true });
  });
  const form = postOfferForm(instrument, messages, async () => { await refresh(); refreshMe(); });
  refresh();
  return { el: panel(t("offers.title"), h("p", { class: "hint", id: "cn2015-note" }, t("offers.note")),
    list, form, messages.el), refresh };
}

function acceptForm(o, messages, after) {
  const quantityId = newId("accept-qty");
  const input = h("input", { id: quantityId, name: "quantity", inputmode: "numeric", value: String(o.remaining), class: "small-input" });
  const form = h("form", { class: "accept-form", "aria-label": t("offers.accept_label", { id: o.offer_id }) },
    h("label", { for: quantityId, class: "sr-only" }, t("offers.quantity")), input,
    h("button", { type: "submit", class: "small" }, t(o.side === "sell" ? "offers.buy" : "offers.sell")));
  onSubmit(form, messages, async () => {
    const quantity = parseCount(input.value, { what: t("offers.quantity") });
    const trade = await post(`/v1/offers/${o.offer_id}/accept`, { quantity });
    messages.ok(t("offers.accepted", { quantity: count(trade.quantity), price: yuan(trade.price) }));
    await after();
  });
  return form;
}

function postOfferForm(instrument, messages, after) {
  const priceId = newId("offer-price");
  const quantityId = newId("offer-quantity");
  const form = h("form", { id: "post-offer", class: "stack" },
    segmented("offer-side", t("offers.side"), [["sell", t("side.sell")], ["buy", t("side.buy")]], "sell"),
    h("div", { class: "ticket-row" },
      h("div", { class: "field" }, h("label", { for: priceId }, t("ticket.price")),
        h("input", { id: priceId, name: "price", inputmode: "decimal", autocomplete: "off", placeholder: "0.00" })),
      h("div", { class: "field" }, h("label", { for: quantityId }, t("ticket.quantity", { unit: t(`unitname.${instrument.board}`) })),
        h("input", { id: quantityId, name: "quantity", inputmode: "numeric", autocomplete: "off", placeholder: "0" }))),
    h("button", { type: "submit", class: "primary", id: "post-offer-submit" }, t("offers.post")));
  onSubmit(form, messages, async () => {
    const side = form.querySelector("input[name=offer-side]:checked").value;
    const offer = await post("/v1/offers", {
      instrument_id: instrument.project_id, side,
      price: parseYuan(form.elements.price.value, t("field.price")),
      quantity: parseCount(form.elements.quantity.value, { what: t("field.quantity") }),
    });
    messages.ok(t("offers.posted", { id: offer.offer_id }));
    form.elements.quantity.value = "";
    await after();
  });
  return form;
}

// ---- the order ticket ------------------------------------------------------------------------

function segmented(name, legend, options, checked) {
  return h("fieldset", { class: `segmented-field seg-${name}` }, h("legend", {}, legend),
    h("div", { class: "segmented" }, options.map(([value, label]) => {
      const inputId = `${name}-${value}`;
      return [h("input", { type: "radio", name, value, id: inputId, class: "seg-input", checked: value === checked }),
        h("label", { for: inputId, class: `seg-label seg-${value}` }, label)];
    })));
}

function ticketFields(instrument, ip, available) {
  const f = {
    price: h("input", { id: "order-price", name: "price", inputmode: "decimal", autocomplete: "off", placeholder: "0.00", "aria-describedby": "order-price-hint" }),
    quantity: h("input", { id: "order-quantity", name: "quantity", inputmode: "numeric", autocomplete: "off", placeholder: "0", "aria-describedby": "available" }),
    tif: h("select", { id: "order-tif", name: "tif" }, ["gtc", "ioc", "fok"].map((v) => h("option", { value: v }, t(`tif.${v}`)))),
    postOnly: h("input", { type: "checkbox", id: "order-post-only", name: "post_only" }),
    estimate: h("p", { id: "order-estimate", class: "cost", "aria-live": "polite" }),
    submit: h("button", { type: "submit", class: "primary", id: "order-submit" }, t("ticket.place_buy")),
  };
  f.rows = [
    segmented("side", t("ticket.side"), [["buy", t("side.buy")], ["sell", t("side.sell")]], "buy"),
    ip ? null : segmented("type", t("ticket.type"), [["limit", t("ticket.limit")], ["market", t("ticket.market")]], "limit"),
    h("div", { class: "ticket-row" },
      h("div", { class: "field" }, h("label", { for: "order-price" }, t("ticket.price")), f.price,
        h("small", { class: "hint", id: "order-price-hint" }, t("ticket.price_hint"))),
      h("div", { class: "field" }, h("label", { for: "order-quantity" }, t("ticket.quantity", { unit: t(`unitname.${instrument.board}`) })), f.quantity)),
    available,
    ip ? h("p", { class: "hint" }, t("ticket.ip_note"))
      : [h("div", { class: "field" }, h("label", { for: "order-tif" }, t("ticket.tif")), f.tif),
        h("div", { class: "check" }, f.postOnly, h("label", { for: "order-post-only" }, t("ticket.post_only")),
          h("small", { class: "hint" }, t("ticket.post_only_hint")))],
    f.estimate, f.submit,
  ];
  return f;
}

function orderTicket(instrument, { ip, available, mergeOrder, renderOrders, refreshMe }) {
  const messages = messageArea();
  const result = h("div", { id: "order-result", class: "order-result", role: "status", "aria-live": "polite" });
  result.hidden = true;
  const f = ticketFields(instrument, ip, available);
  const form = h("form", { id: "order-ticket", class: "stack ticket", novalidate: true }, f.rows, messages.el, result);
  const value = (name) => {
    const checked = form.querySelector(`input[name=${name}]:checked`);
    return checked ? checked.value : null;
  };
  const sync = () => {
    const side = value("side");
    const market = !ip && value("type") === "market";
    f.price.disabled = market;
    f.price.closest(".field").classList.toggle("disabled", market);
    if (!ip) {
      f.postOnly.disabled = market || f.tif.value !== "gtc";
      if (f.postOnly.disabled) f.postOnly.checked = false;
    }
    f.submit.textContent = t(side === "buy" ? "ticket.place_buy" : "ticket.place_sell");
    f.submit.className = `primary submit-${side}`;
    // A live estimate, exact in fen; nothing when the fields do not parse yet.
    let text = "";
    try {
      const q = parseCount(f.quantity.value);
      if (!market) text = t(side === "buy" ? "ticket.cost" : "ticket.proceeds", { amount: yuan(times(parseYuan(f.price.value, t("field.price")), q)) });
    } catch { text = ""; }
    f.estimate.textContent = text;
    f.estimate.hidden = !text;
  };
  form.addEventListener("input", sync);
  form.addEventListener("change", sync);
  sync();
  onSubmit(form, messages, async () => {
    result.hidden = true;
    const type = ip ? "limit" : value("type");
    const body = { instrument_id: instrument.project_id, side: value("side"), type,
      quantity: parseCount(f.quantity.value, { what: t("field.quantity") }) };
    if (type === "limit") body.price = parseYuan(f.price.value, t("field.price"));
    if (!ip) {
      body.time_in_force = f.tif.value;
      if (f.postOnly.checked && type === "limit") body.post_only = true;
    }
    let order;
    try {
      order = await post("/v1/orders", body);
    } catch (err) {
      // The order book's refusal names no amount; a limit buy's cost is known here, exactly.
      if (err.code === "insufficient_funds" && body.side === "buy" && body.price) {
        err.detail = `${times(body.price, body.quantity)} fen needed`;
      }
      throw err;
    }
    showResult(result, order, instrument.board);
    mergeOrder(order);
    renderOrders();
    refreshMe();
  });
  return panel(t("ticket.title"), form);
}

function showResult(box, order, board) {
  const parts = [h("p", { class: "order-line" }, h("strong", {}, t("ticket.order_n", { id: order.order_id })), " ", orderBadge(order.status),
    " ", h("span", {}, t("ticket.filled", { filled: count(order.filled_quantity), quantity: count(order.quantity) })))];
  if (!order.fills.length) {
    parts.push(h("p", { class: "muted small" }, OPEN.has(order.status) ? t("ticket.resting", { price: yuan(order.price) }) : t("ticket.nothing_traded")));
  } else {
    if (OPEN.has(order.status)) parts.push(h("p", { class: "muted small" }, t("ticket.rest", { units: units(board, order.remaining_quantity) })));
    parts.push(h("table", { class: "fills", id: "order-fills" },
      h("caption", { class: "sr-only" }, t("ticket.fills_of", { id: order.order_id })),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("history.trade")), h("th", { scope: "col", class: "num" }, t("book.price")),
        h("th", { scope: "col", class: "num" }, t("book.quantity")))),
      h("tbody", {}, order.fills.map((x) => h("tr", {}, h("td", {}, `#${x.trade_id}`),
        h("td", { class: "num" }, yuan(x.price)), h("td", { class: "num" }, count(x.quantity)))))));
  }
  // Only elements: a null handed to replaceChildren would be drawn as the text "null".
  box.replaceChildren(...parts);
  box.hidden = false;
}

// ---- the call auction (IP) -------------------------------------------------------------------

function auctionPanel(id, board, priceEl, quantityEl, refresh, role) {
  const messages = messageArea();
  const children = [
    h("p", { class: "muted small" }, t("auction.lead")),
    h("dl", { class: "facts", id: "auction" }, h("dt", {}, t("auction.price")), priceEl, h("dt", {}, t("auction.volume")), quantityEl),
  ];
  if (role === "operator") {
    children.push(h("div", { class: "button-row" }, actionButton(t("auction.run"), messages, async () => {
      const r = await post(`/v1/instruments/${id}/auction`);
      messages.ok(r.quantity ? t("auction.uncrossed", { units: units(board, r.quantity), price: yuan(r.price), n: r.trade_count, trades: count(r.trade_count) })
        : t("auction.nothing"));
      await refresh();
    }, { id: "run-auction", class: "primary" })));
  }
  children.push(messages.el);
  return panel(t("auction.title"), ...children);
}
