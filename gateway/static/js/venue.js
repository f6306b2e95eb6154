// What the UI knows of the venue itself: its profile, clock and exchange time (GET /v1/venue)
// and the boards' rules in force for new listings (GET /v1/boards).
// Deadlines and cancel windows run on the exchange clock, which under --clock manual is not
// the browser's, so "time left" is counted from the exchange time the server reports: a manual
// clock stands still between advances, a wall clock moves with the browser's.

import { get } from "./api.js";

export const venue = {
  profile: "intl",
  clock: "wall",
  boards: {},
  nowMs: null, // the exchange time when it was read
  readAtMs: 0, // the browser's time then
};

export async function loadVenue() {
  const [data, boards] = await Promise.all([get("/v1/venue", { anonymous: true }),
    get("/v1/boards", { anonymous: true }).catch(() => ({ boards: [] }))]);
  venue.profile = data.profile;
  venue.clock = data.clock;
  venue.boards = Object.fromEntries((boards.boards || []).map((b) => [b.board, b]));
  venue.nowMs = Date.parse(data.now);
  venue.readAtMs = Date.now();
  document.documentElement.dataset.colors = data.profile === "cn2015" ? "cn" : "intl";
  return venue;
}

/** The exchange time now, in ms since the epoch. */
export function exchangeNowMs() {
  if (venue.nowMs === null) return Date.now();
  return venue.clock === "manual" ? venue.nowMs : venue.nowMs + (Date.now() - venue.readAtMs);
}

/** A board's rules for a project listed now (durations, lock-up, fees), or null if unknown. */
export function boardRules(board) {
  return venue.boards[board] || null;
}
