// Recompute a lottery draw in the browser (PROTOCOL §3 "Lottery verifiability"), so a viewer
// need not trust the server: the seed must hash to the seed_hash published at open, the
// entrant list to entrants_hash, and the HMAC Fisher–Yates shuffle must give the same winners.

const enc = new TextEncoder();

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function bytesToHex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(bytes) {
  return bytesToHex(await crypto.subtle.digest("SHA-256", bytes));
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Entrants sorted by the UTF-8 bytes of their ids (not by JS string order). */
export function sortEntrants(ids) {
  return [...ids].map((id) => [enc.encode(id), id]).sort((x, y) => compareBytes(x[0], y[0])).map((x) => x[1]);
}

/** Winners for (seed, sorted entrants, k): partial Fisher–Yates driven by HMAC-SHA256(seed, str(i)). */
export async function drawWinners(seedHex, entrants, k) {
  const key = await crypto.subtle.importKey("raw", hexToBytes(seedHex), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const items = [...entrants];
  const n = items.length;
  k = Math.min(k, n);
  for (let i = 0; i < k; i++) {
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(String(i))));
    let r = 0n;
    for (let b = 0; b < 8; b++) r = (r << 8n) | BigInt(mac[b]);
    const j = i + Number(r % BigInt(n - i));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items.slice(0, k);
}

/**
 * Check a lottery record from `GET /v1/rooms/{room}/lotteries/{id}`.
 * @returns {Promise<{ok: boolean, checks: {key: string, name: string, ok: boolean, detail: string}[]}>}
 */
export async function verifyLottery(rec) {
  const checks = [];
  // `key` names the check for the pages' texts (lottery.check.<key>); `name` is its English.
  const add = (key, name, ok, detail) => checks.push({ key, name, ok, detail });
  if (!rec.seed) {
    add("seed", "seed revealed", false, "the seed is published only after the draw");
    return { ok: false, checks };
  }
  const seedHash = await sha256Hex(hexToBytes(rec.seed));
  add("seed_hash", "seed matches the hash published at open", seedHash === rec.seed_hash, `sha256(seed) = ${seedHash.slice(0, 16)}…`);
  const entrants = sortEntrants(rec.entrants || []);
  const sameOrder = entrants.every((e, i) => e === rec.entrants[i]);
  add("sorted", "entrants are sorted", sameOrder, `${entrants.length} entrants`);
  const entrantsHash = await sha256Hex(enc.encode(entrants.join("\n")));
  add("entrants_hash", "entrant list matches entrants_hash", entrantsHash === rec.entrants_hash, `${entrantsHash.slice(0, 16)}…`);
  const k = rec.max_winners ?? (Array.isArray(rec.winners) ? rec.winners.length : rec.winners);
  const winners = await drawWinners(rec.seed, entrants, k);
  const same = JSON.stringify(winners) === JSON.stringify(rec.winners);
  add("winners", "winners recomputed from the seed", same, winners.join(", ") || "no entrants");
  return { ok: checks.every((c) => c.ok), checks };
}
