// Seed 000: an AI generation service. Reserve the estimated tokens (atomically: parallel
// generations cannot all pass a check and then overspend), call the model outside any
// transaction, then commit the tokens really used, or release the hold when the model fails.
// A GenerationCompleted event is written to an outbox table in the commit's transaction.
import { timingSafeEqual } from 'node:crypto';
import {
  HttpError, type Json, inTransaction, installInt8Parser, makePool, readJson, serve, stopOn,
} from './common.js';

installInt8Parser();
const pool = makePool();                                      // PGUSER: a quota_app role
const adminPool = makePool(process.env.ADMIN_PGUSER ?? 'example_node_admin'); // EXECUTE on quota_reset only
const adminToken = process.env.ADMIN_TOKEN ?? '';
const port = Number(process.env.EXAMPLE_PORT ?? 55731);

class GenerationFailedError extends Error {}

// A fake model. The request can steer it: fail (throws), delayMs (takes that long),
// fakeTokens (tokens it reports as used; never more than maxTokens, like max_tokens).
async function fakeModel(prompt: string, maxTokens: number, body: Json): Promise<{ completion: string; tokensUsed: number }> {
  const delay = Math.min(Number(body.delayMs ?? 0) || 0, 5000);
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  if (body.fail === true) throw new GenerationFailedError('model backend unavailable (simulated)');
  const tokensUsed = Math.min(Number(body.fakeTokens ?? 42) || 1, maxTokens);
  return { completion: `Echo: ${prompt}`, tokensUsed };
}

function requireString(body: Json, key: string): string {
  const v = body[key];
  if (typeof v !== 'string' || v === '') throw new HttpError(400, { error: 'invalid_request', field: key });
  return v;
}

async function generate(body: Json) {
  const userId = requireString(body, 'userId');
  const prompt = requireString(body, 'prompt');
  const conversationId = typeof body.conversationId === 'string' ? body.conversationId : null;
  const maxTokens = body.maxTokens ?? 1000; // the estimate; quota_ext checks it (>= 1, cap, limit)

  // 1. Hold the estimate (its own short transaction). QT429/QT413/QT404 -> 429/413/404.
  const { rows: [hold] } = await pool.query(
    `SELECT reservation, expires_at FROM quota.quota_reserve($1, 'tokens', $2,
            ttl => interval '5 minutes', metadata => $3::jsonb)`,
    [userId, maxTokens, JSON.stringify({ conversationId })],
  );
  const reservation: string = hold.reservation;
  const held = Number(maxTokens);

  // 2. The model call, outside any transaction. If this process dies here, the hold
  //    lapses after its ttl (quota.maintenance() or the next access frees it).
  let result: { completion: string; tokensUsed: number };
  try {
    result = await fakeModel(prompt, held, body);
  } catch (err) {
    if (!(err instanceof GenerationFailedError)) throw err;
    // 3b. Failure: give the quota back (seed 000) and record it, in one transaction.
    const released = await inTransaction(pool, async (c) => {
      const { rows: [r] } = await c.query('SELECT quota.quota_release($1::uuid, $2) AS released', [reservation, err.message]);
      await c.query(
        `INSERT INTO generations (user_id, conversation_id, prompt, tokens_reserved, tokens_used, status, reservation)
         VALUES ($1, $2, $3, $4, 0, 'failed', $5)`, [userId, conversationId, prompt, held, reservation]);
      await c.query(`INSERT INTO domain_events (type, subject, payload) VALUES ('GenerationFailed', $1, $2::jsonb)`,
        [userId, JSON.stringify({ conversationId, reservation, tokensReserved: held, error: err.message })]);
      return r.released as boolean;
    });
    throw new HttpError(502, { error: 'generation_failed', message: err.message, released, tokensReserved: held });
  }

  // 3a. Success: settle the hold with the tokens really used, store the generation and its
  //     GenerationCompleted event, all in one transaction (a transactional outbox).
  try {
    return await inTransaction(pool, async (c) => {
      const { rows: [d] } = await c.query(
        'SELECT used, remaining, reset_at FROM quota.quota_commit($1::uuid, $2, $3::jsonb)',
        [reservation, result.tokensUsed, JSON.stringify({ conversationId })]);
      const { rows: [g] } = await c.query(
        `INSERT INTO generations (user_id, conversation_id, prompt, completion, tokens_reserved, tokens_used, status, reservation)
         VALUES ($1, $2, $3, $4, $5, $6, 'completed', $7) RETURNING id`,
        [userId, conversationId, prompt, result.completion, held, result.tokensUsed, reservation]);
      const { rows: [e] } = await c.query(
        `INSERT INTO domain_events (type, subject, payload) VALUES ('GenerationCompleted', $1, $2::jsonb) RETURNING id`,
        [userId, JSON.stringify({ generationId: g.id, conversationId, tokensUsed: result.tokensUsed, tokensReserved: held, reservation })]);
      await c.query(`SELECT pg_notify('domain_events', $1)`, [String(e.id)]); // delivered at COMMIT
      return {
        generationId: g.id, conversationId, completion: result.completion,
        tokensReserved: held, tokensUsed: result.tokensUsed, eventId: e.id,
        quota: { used: d.used, remaining: d.remaining, resetAt: d.reset_at.toISOString() },
      };
    });
  } catch (err) {
    await pool.query('SELECT quota.quota_release($1::uuid, $2)', [reservation, 'commit failed']).catch(() => undefined);
    throw err;
  }
}

function isAdmin(header: string | string[] | undefined): boolean {
  if (adminToken === '' || typeof header !== 'string') return false;
  const a = Buffer.from(header), b = Buffer.from(adminToken);
  return a.length === b.length && timingSafeEqual(a, b);
}

const server = serve('generation', port, async (req, url) => {
  const path = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (req.method === 'GET' && url.pathname === '/health') return { status: 200, body: { ok: true, pid: process.pid } };

  if (req.method === 'POST' && url.pathname === '/generations') {
    return { status: 201, body: await generate(await readJson(req)) };
  }
  // GET /users/:id/quota: checkQuota, one row per limit of the user's plan, then one per limit
  // of each pool the user draws from (quota_ext 0.8.0: level 1 and up; `pool` names it).
  if (req.method === 'GET' && path.length === 3 && path[0] === 'users' && path[2] === 'quota') {
    const { rows } = await pool.query(
      'SELECT metric, period, limit_value, bonus, used, reserved, remaining, reset_at, pool, level FROM quota.quota_status($1) ORDER BY level',
      [path[1]]);
    return { status: 200, body: { userId: path[1], limits: rows.map((r) => ({
      metric: r.metric, period: r.period, limit: r.limit_value + r.bonus, used: r.used,
      reserved: r.reserved, remaining: r.remaining, resetAt: r.reset_at?.toISOString() ?? null,
      ...(r.level > 0 ? { pool: r.pool } : {}) })) } };
  }
  // GET /users/:id/events: the outbox rows (a real app would relay them to a bus).
  if (req.method === 'GET' && path.length === 3 && path[0] === 'users' && path[2] === 'events') {
    const { rows } = await pool.query('SELECT id, type, payload FROM domain_events WHERE subject = $1 ORDER BY id', [path[1]]);
    return { status: 200, body: { events: rows } };
  }
  // POST /admin/users/:id/reset {metric?}: manual reset, on the admin connection (a role granted
  // EXECUTE on quota.quota_reset, not the quota_admin role).
  if (req.method === 'POST' && path.length === 4 && path[0] === 'admin' && path[1] === 'users' && path[3] === 'reset') {
    if (!isAdmin(req.headers['x-admin-token'])) return { status: 403, body: { error: 'forbidden' } };
    const body = await readJson(req);
    const metric = typeof body.metric === 'string' ? body.metric : null;
    const { rows: [r] } = await adminPool.query('SELECT quota.quota_reset($1, $2::text) AS emptied', [path[2], metric]);
    return { status: 200, body: { userId: path[2], metric, windowsEmptied: r.emptied } };
  }
  return undefined;
});
stopOn(server, [pool, adminPool]);
