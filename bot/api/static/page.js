// The status page's script: reads /api/status and /api/alerts every few seconds and fills the
// page. Values from the chain (token symbols) are inserted as text, never as HTML. Rounding is
// done on the decimal strings with BigInt: exact, never through binary floating point.
"use strict";

const REFRESH_MS = 3000;
const IN_FLIGHT = new Set(["PENDING", "SUBMITTED"]);

// "-1.23456" rounded to `places` decimals, halves away from zero; "-0" never appears.
function roundDecimal(text, places) {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  let units = BigInt((whole || "0") + fraction.padEnd(places, "0").slice(0, places));
  if (fraction.length > places && fraction.charCodeAt(places) >= 53) units += 1n; // "5"..."9"
  const digits = units.toString().padStart(places + 1, "0");
  const shown = places ? digits.slice(0, -places) + "." + digits.slice(-places) : digits;
  return (negative && units !== 0n ? "-" : "") + shown;
}

function shares(text) {
  if (text === null || text === undefined) return "–";
  const rounded = roundDecimal(String(text), 4);
  return rounded.includes(".") ? rounded.replace(/0+$/, "").replace(/\.$/, "") : rounded;
}

function price(text) {
  return text === null || text === undefined ? "–" : "$" + roundDecimal(String(text), 2);
}

function when(text) {
  if (!text) return "–";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? String(text) : date.toLocaleString();
}

function cell(row, text, field) {
  const td = document.createElement("td");
  td.textContent = text;
  if (field) td.dataset.field = field;
  row.appendChild(td);
}

function fill(tableId, items, render, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  const rows = items.map(render);
  if (!rows.length) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    td.className = "muted";
    td.textContent = empty;
    row.appendChild(td);
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function list(id, items, empty) {
  const ul = document.getElementById(id);
  const lis = items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  });
  if (!lis.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = empty;
    lis.push(li);
  }
  ul.replaceChildren(...lis);
}

function text(id, value) {
  document.getElementById(id).textContent = value === null || value === undefined ? "–" : value;
}

function positionRow(p) {
  const row = document.createElement("tr");
  row.dataset.ticker = p.ticker;
  if (p.parked || (p.drift_shares && p.drift_shares !== "0")) row.className = "attention";
  cell(row, p.ticker, "ticker");
  cell(row, shares(p.onchain_net_shares), "onchain_net_shares");
  cell(row, shares(p.hedged_shares), "hedged_shares");
  cell(row, shares(p.in_flight_shares), "in_flight_shares");
  cell(row, shares(p.unhedged_shares), "unhedged_shares");
  cell(row, p.parked ? "parked" : "no", "parked");
  cell(row, shares(p.broker_position_shares), "broker_position_shares");
  cell(row, shares(p.drift_shares), "drift_shares");
  return row;
}

function executionRow(e) {
  const row = document.createElement("tr");
  row.dataset.execution = String(e.id);
  cell(row, String(e.id), "id");
  cell(row, e.ticker, "ticker");
  cell(row, e.direction, "direction");
  cell(row, shares(e.shares), "shares");
  cell(row, shares(e.filled_shares), "filled_shares");
  cell(row, e.status + (e.reason ? ` (${e.reason})` : ""), "status");
  cell(row, price(e.avg_price), "avg_price");
  cell(row, when(e.updated_at), "updated_at");
  return row;
}

function market(s) {
  if (s.market_open === null || s.market_open === undefined) return "unknown";
  if (s.market_open) return "open";
  return s.next_open ? `closed (opens ${when(s.next_open)})` : "closed";
}

function render(s, alerts) {
  const badge = document.getElementById("idle");
  badge.textContent = s.idle ? "idle: all hedged" : "working";
  badge.className = "badge " + (s.idle ? "ok" : "busy");
  text("head", s.head_block);
  text("checkpoint", s.checkpoint_block);
  const lag = s.head_block === null || s.checkpoint_block === null
    ? null : `${Math.max(0, s.head_block - s.checkpoint_block)} blocks`;
  text("lag", lag);
  text("market", market(s));
  for (const key of ["pending", "processed", "failed", "removed", "skipped"]) {
    text(`queue-${key}`, s.queue[key] ?? 0);
  }
  const paused = [
    ...(s.paused_reasons || []),
    ...(s.hedging_blocked || []).map((b) =>
      typeof b === "string" ? b : `${b.ticker}: ${b.reason}${b.since ? ` (since ${when(b.since)})` : ""}`),
  ];
  list("paused", paused, "nothing is paused");
  fill("positions", s.positions, positionRow, "no positions yet");
  const executions = s.executions || [];
  fill("executions-in-flight", executions.filter((e) => IN_FLIGHT.has(e.status)), executionRow, "none");
  const latest = executions.filter((e) => !IN_FLIGHT.has(e.status)).reverse();
  fill("executions-latest", latest, executionRow, "none");
  list("alerts", alerts.map((a) => `${when(a.at)} ${a.kind}: ${a.message}`), "no alerts");
  text("updated", "updated " + new Date().toLocaleTimeString());
  document.body.dataset.loaded = "true";
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const [status, alerts] = await Promise.all([getJson("/api/status"), getJson("/api/alerts")]);
    render(status, alerts.alerts || []);
    problem.hidden = true;
  } catch (error) {
    problem.textContent = `cannot read the bot's status: ${error.message}`;
    problem.hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
