import { LiveChannel, del, get, post, session } from "../api.js";
import { actionButton, field, h, messageArea, onSubmit, panel, table, when } from "../dom.js";
import { count, parseCount, parseYuan, yuan } from "../money.js";

const DEPTH = 10;

/** Secondary markets: a live book and trades per instrument, an order ticket, open orders. */
export async function marketsView(container, params) {
  const instruments = (await get("/v1/projects?status=trading"))
    .filter((p) => p.board !== "product");
  container.append(h("div", { class: "page-head" }, h("h1", {}, "Markets"),
    h("p", { class: "muted" }, "Continuous order books for equity and debt; IP units trade in call auctions.")));
  if (!instruments.length) {
    container.append(panel("No market yet", h("p", { class: "empty" }, "No instrument is trading yet.")));
    return undefined;
  }
  const id = Number(params[0] || instruments[0].project_id);
  const current = instruments.find((p) => p.project_id === id) || instruments[0];
  const picker = field("Instrument", { id: "market-instrument" }, {
    options: instruments.map((p) => [String(p.project_id), `#${p.project_id} ${p.title} (${p.board})`]),
  });
  const select = picker.querySelector("select");
  select.value = String(current.project_id);
  select.addEventListener("change", () => { location.hash = `#/markets/${select.value}`; });
  container.append(h("div", { class: "toolbar" }, picker));

  const book = { bids: new Map(), asks: new Map() };
  const bookBox = h("div", { id: "book" });
  const tradesBox = h("div", { id: "trades" });
  const ordersBox = h("div", { id: "open-orders" });
  const renderBook = () => {
    const side = (levels, desc) => [...levels.entries()].sort((a, b) => (desc ? b[0] - a[0] : a[0] - b[0]))
      .slice(0, DEPTH).map(([price, qty]) => ({ price, qty }));
    const cols = [{ label: "Price", cell: (r) => yuan(r.price), num: true },
      { label: "Quantity", cell: (r) => count(r.qty), num: true }];
    bookBox.replaceChildren(
      h("h3", {}, "Asks (sell)"), table(cols, side(book.asks, false).reverse(), { id: "asks", empty: "No asks." }),
      h("h3", {}, "Bids (buy)"), table(cols, side(book.bids, true), { id: "bids", empty: "No bids." }));
  };
  const trades = [];
  const renderTrades = () => tradesBox.replaceChildren(table([
    { label: "Price", cell: (t) => yuan(t.price), num: true },
    { label: "Quantity", cell: (t) => count(t.quantity), num: true },
    { label: "Taker", cell: (t) => t.taker_side },
    { label: "Time", cell: (t) => when(t.time) },
  ], trades.slice(0, 20), { id: "trades-table", empty: "No trades yet." }));

  const bookLive = new LiveChannel(`book:${current.project_id}`, (data, message) => {
    if (message.type === "snapshot") {
      book.bids = new Map(data.bids);
      book.asks = new Map(data.asks);
    } else {
      for (const [sideName, price, qty] of data.changes) {
        const levels = sideName === "buy" ? book.bids : book.asks;
        if (qty) levels.set(price, qty); else levels.delete(price);
      }
    }
    renderBook();
  });
  const tradesLive = new LiveChannel(`trades:${current.project_id}`, (data, message) => {
    if (message.type === "snapshot") trades.splice(0, trades.length, ...data);
    else trades.unshift(data);
    renderTrades();
    refreshOrders();
  });

  const investor = session.me && session.me.role === "investor";
  const refreshOrders = async () => {
    if (!investor) return;
    const open = (await get("/v1/orders?status=open"))
      .filter((o) => o.instrument_id === current.project_id);
    const messages = messageArea();
    ordersBox.replaceChildren(messages.el, table([
      { label: "Order", cell: (o) => `#${o.order_id}` },
      { label: "Side", cell: (o) => o.side },
      { label: "Price", cell: (o) => (o.price === null ? "market" : yuan(o.price)), num: true },
      { label: "Remaining", cell: (o) => count(o.remaining_quantity), num: true },
      { label: "", cell: (o) => actionButton("Cancel", messages, async () => {
        await del(`/v1/orders/${o.order_id}`);
        await refreshOrders();
      }, { "data-order": String(o.order_id) }) },
    ], open, { id: "open-orders-table", empty: "No open orders." }));
  };

  const columns = [panel("Order book", bookBox), panel("Recent trades", tradesBox)];
  if (investor) columns.push(orderTicket(current, refreshOrders), panel("My open orders", ordersBox));
  else columns.push(panel("Trade", h("p", {}, "Sign in as an investor to place orders.")));
  if (current.board === "ip") columns.push(await auctionPanel(current));
  container.append(h("div", { class: "market-grid" }, columns));
  renderBook();
  renderTrades();
  await refreshOrders();
  return () => { bookLive.close(); tradesLive.close(); };
}

function orderTicket(instrument, refreshOrders) {
  const messages = messageArea();
  const result = h("p", { id: "order-result", role: "status" });
  const form = h("form", { id: "order-ticket", class: "form" },
    field("Side", { id: "order-side", name: "side" }, { options: [["buy", "Buy"], ["sell", "Sell"]] }),
    field("Type", { id: "order-type", name: "type" }, { options: [["limit", "Limit"], ["market", "Market"]] }),
    field("Price (¥ per unit)", { id: "order-price", name: "price", inputmode: "decimal" },
      { hint: "Limit orders only." }),
    field("Quantity", { id: "order-quantity", name: "quantity", inputmode: "numeric" }),
    field("Time in force", { id: "order-tif", name: "tif" },
      { options: [["gtc", "Good till cancelled"], ["ioc", "Immediate or cancel"], ["fok", "Fill or kill"]] }),
    h("button", { type: "submit" }, "Place order"), messages.el, result);
  onSubmit(form, messages, async () => {
    const body = {
      instrument_id: instrument.project_id,
      side: form.querySelector("#order-side").value,
      type: form.querySelector("#order-type").value,
      quantity: parseCount(form.querySelector("#order-quantity").value),
      time_in_force: form.querySelector("#order-tif").value,
    };
    if (body.type === "limit") body.price = parseYuan(form.querySelector("#order-price").value, "price");
    const order = await post("/v1/orders", body);
    result.textContent = `Order #${order.order_id}: ${order.status}, filled ${count(order.filled_quantity)}`
      + ` of ${count(order.quantity)}`;
    await refreshOrders();
  });
  return panel("Order ticket", form);
}

async function auctionPanel(instrument) {
  const messages = messageArea();
  const box = h("p", { id: "indicative" });
  const refresh = async () => {
    const a = await get(`/v1/instruments/${instrument.project_id}/auction`);
    box.textContent = a.quantity ? `Indicative uncross: ${count(a.quantity)} at ${yuan(a.price)}`
      : "No crossing orders yet.";
  };
  await refresh();
  const children = [box, messages.el];
  if (session.me && session.me.role === "operator") {
    children.push(actionButton("Run auction now", messages, async () => {
      await post(`/v1/instruments/${instrument.project_id}/auction`);
      await refresh();
    }, { id: "run-auction" }));
  }
  return panel("Call auction", ...children);
}
