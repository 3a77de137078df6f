// Seed 002: anonymous usage keyed by IPv4 address. 5 uses a day; bonuses questionnaire +5,
// payment +5, referral +2; at most 3 bonuses a day; a payment id once, a questionnaire once
// per IP. The plan (ANON) and its rules live in PostgreSQL (schema.sql); unknown IPs join it
// on first use (quota.default_plan, set for this app's role).
import type http from 'node:http';
import {
  HttpError, type Json, inTransaction, installInt8Parser, makePool, readJson, secondsUntil, serve, stopOn,
} from './common.js';
import { clientAddress, parseTrustedHops } from './client-ip.js';

installInt8Parser();
const pool = makePool();                       // PGUSER: a quota_app role, + EXECUTE on apply_bonus(inet, ...)
const port = Number(process.env.EXAMPLE_PORT_2 ?? 55732);
const METRIC = 'uses';
const LIMIT_REASON = 'Daily limit exceeded';

// The client's address (src/client-ip.ts): the socket's, or with TRUSTED_PROXY_HOPS=N the
// Nth X-Forwarded-For entry from the right (never the leftmost: the client writes that one).
// It is NOT validated here: it goes to PostgreSQL as $1::inet, whose cast rejects a malformed
// address with SQLSTATE 22P02 (-> HTTP 400). Without "::inet" the parameter is untyped and the
// call resolves to the `subject text` form, which accepts any string ("invalid-ip" would get
// its own quota) and does not normalise ("1.2.3.4/32").
const trustedHops = parseTrustedHops(process.env.TRUSTED_PROXY_HOPS);
function clientIp(req: http.IncomingMessage): string {
  return clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trustedHops);
}

// Maps a 22P02 on the address to the seed's "invalid IPv4" rejection.
async function withIp<T>(ip: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as { code?: string }).code === '22P02') {
      throw new HttpError(400, { error: 'invalid_ip', ip, sqlstate: '22P02' });
    }
    throw err;
  }
}

// UsageCheckResult: canUse, reason, remaining, resetTime (seed 002's names).
function checkResult(d: Json) {
  return {
    ip: d.subject, canUse: d.allowed, reason: d.allowed ? null : LIMIT_REASON,
    remaining: d.remaining, resetTime: (d.reset_at as Date).toISOString(),
    used: d.used, limit: (d.limit_value as number) + (d.bonus as number),
  };
}

async function check(ip: string) {
  const { rows: [d] } = await pool.query('SELECT * FROM quota.quota_check($1::inet, $2)', [ip, METRIC]);
  return { status: 200, body: checkResult(d) };
}

// enforceUsageLimit: quota_try_consume answers a refusal (allowed = false) instead of raising,
// so the same transaction can still record UsageLimitExceeded (quota_consume would abort it).
async function use(ip: string) {
  return inTransaction(pool, async (c) => {
    const { rows: [d] } = await c.query('SELECT * FROM quota.quota_try_consume($1::inet, $2)', [ip, METRIC]);
    const result = checkResult(d);
    const event = d.allowed
      ? { type: 'UsageRecorded', payload: { newUsageCount: d.used, remainingQuota: d.remaining } }
      : { type: 'UsageLimitExceeded', payload: { currentUsage: d.used, limit: result.limit, resetTime: result.resetTime } };
    await c.query('INSERT INTO domain_events (type, subject, payload) VALUES ($1, $2, $3::jsonb)',
      [event.type, d.subject, JSON.stringify(event.payload)]);
    if (d.allowed) return { status: 200, body: result };
    return { status: 429, body: result, headers: { 'Retry-After': String(secondsUntil(result.resetTime)) } };
  });
}

// applyIncentiveBonus: the plan's rule for the kind; `reference` is the questionnaire id,
// payment id or referral code. Not applied is an answer (reason), not an error.
async function bonus(ip: string, kind: string, body: Json) {
  const reference = typeof body.reference === 'string' ? body.reference : null;
  return inTransaction(pool, async (c) => {
    const { rows: [b] } = await c.query('SELECT * FROM quota.apply_bonus($1::inet, $2, $3, $4::text)',
      [ip, METRIC, kind, reference]);
    if (!b.applied) {
      if (b.reason === 'no_rule') return { status: 400, body: { error: 'unsupported_bonus_type', bonusType: kind } };
      return { status: 409, body: { applied: false, reason: b.reason, bonusType: kind, bonusesToday: b.bonuses_today } };
    }
    // A later statement sees the bonus (quota_check answers from its statement's snapshot).
    const { rows: [d] } = await c.query('SELECT * FROM quota.quota_check($1::inet, $2)', [ip, METRIC]);
    return { status: 200, body: {
      applied: true, bonusType: kind, bonusAmount: b.amount, newLimit: b.new_limit,
      bonusesToday: b.bonuses_today, remaining: d.remaining } };
  });
}

const server = serve('anonymous', port, async (req, url) => {
  if (req.method === 'GET' && url.pathname === '/health') return { status: 200, body: { ok: true, pid: process.pid } };
  const ip = clientIp(req);
  if (req.method === 'GET' && url.pathname === '/usage') return withIp(ip, () => check(ip));
  if (req.method === 'POST' && url.pathname === '/usage') return withIp(ip, () => use(ip));
  const m = /^\/bonus\/([a-z_]+)$/.exec(url.pathname);
  if (req.method === 'POST' && m) {
    const body = await readJson(req);
    return withIp(ip, () => bonus(ip, m[1], body));
  }
  if (req.method === 'GET' && url.pathname === '/events') {
    const { rows } = await withIp(ip, () => pool.query(
      'SELECT type, payload FROM domain_events WHERE subject = host($1::inet) ORDER BY id', [ip]));
    return { status: 200, body: { events: rows } };
  }
  return undefined;
});
stopOn(server, [pool]);
