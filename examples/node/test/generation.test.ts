// Seed 000 over HTTP: reserve -> generate -> commit or release, events, 429/413/404, admin reset.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, GEN, MIDNIGHT, call, connect, retryAfterMatches } from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function tokens(user: string) {
  const r = await call('GET', `${GEN}/users/${user}/quota`);
  assert.equal(r.status, 200);
  assert.equal(r.body.limits.length, 1);
  return r.body.limits[0];
}

test('status of a fresh user: 10000 tokens a day, none used, window ends at UTC midnight', async () => {
  assert.deepEqual(await tokens('alice'), {
    metric: 'tokens', period: 'day', limit: 10000, used: 0, reserved: 0, remaining: 10000, resetAt: MIDNIGHT,
  });
});

let firstGeneration: any;
test('a generation holds 3000 tokens, commits the 1234 used: used 1234, remaining 8766', async () => {
  const r = await call('POST', `${GEN}/generations`, {
    body: { userId: 'alice', prompt: 'Write a haiku', conversationId: 'conv-1', maxTokens: 3000, fakeTokens: 1234 },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  firstGeneration = r.body;
  assert.equal(r.body.completion, 'Echo: Write a haiku');
  assert.equal(r.body.tokensReserved, 3000);
  assert.equal(r.body.tokensUsed, 1234);
  assert.deepEqual(r.body.quota, { used: 1234, remaining: 8766, resetAt: MIDNIGHT });
  assert.deepEqual(await tokens('alice'), {
    metric: 'tokens', period: 'day', limit: 10000, used: 1234, reserved: 0, remaining: 8766, resetAt: MIDNIGHT,
  });
});

test('GenerationCompleted is in the outbox with generationId, conversationId, tokensUsed', async () => {
  const r = await call('GET', `${GEN}/users/alice/events`);
  assert.equal(r.status, 200);
  assert.equal(r.body.events.length, 1);
  const [e] = r.body.events;
  assert.equal(e.type, 'GenerationCompleted');
  assert.equal(e.id, firstGeneration.eventId);
  assert.match(e.payload.reservation, UUID);
  assert.deepEqual({ ...e.payload, reservation: 'x' }, {
    generationId: firstGeneration.generationId, conversationId: 'conv-1', tokensUsed: 1234, tokensReserved: 3000, reservation: 'x',
  });
});

test('a failed generation releases its hold: 502, used stays 1234, GenerationFailed recorded', async () => {
  const r = await call('POST', `${GEN}/generations`, {
    body: { userId: 'alice', prompt: 'Fail please', maxTokens: 3000, fail: true },
  });
  assert.equal(r.status, 502);
  assert.deepEqual(r.body, {
    error: 'generation_failed', message: 'model backend unavailable (simulated)', released: true, tokensReserved: 3000,
  });
  assert.deepEqual(await tokens('alice'), {
    metric: 'tokens', period: 'day', limit: 10000, used: 1234, reserved: 0, remaining: 8766, resetAt: MIDNIGHT,
  });
  const ev = await call('GET', `${GEN}/users/alice/events`);
  assert.deepEqual(ev.body.events.map((e: any) => e.type), ['GenerationCompleted', 'GenerationFailed']);
});

test('the ledger shows reserve 3000, commit 1234, reserve 3000, release 3000', async () => {
  const db = await connect(process.env.APP_PGUSER);
  try {
    const { rows } = await db.query(
      `SELECT kind, amount::int FROM quota.usage_events WHERE subject = 'alice' ORDER BY id`);
    assert.deepEqual(rows, [
      { kind: 'reserve', amount: 3000 }, { kind: 'commit', amount: 1234 },
      { kind: 'reserve', amount: 3000 }, { kind: 'release', amount: 3000 },
    ]);
  } finally {
    await db.end();
  }
});

test('over the per-request cap (4000): 413 with the DETAIL fields', async () => {
  const r = await call('POST', `${GEN}/generations`, { body: { userId: 'alice', prompt: 'Long essay', maxTokens: 5000 } });
  assert.equal(r.status, 413);
  assert.equal(r.body.error, 'per_request_cap_exceeded');
  assert.equal(r.body.code, 'per_request_cap_exceeded');
  assert.equal(r.body.per_request_max, 4000);
  assert.equal(r.body.requested, 5000);
  assert.equal(r.body.used, 1234);
});

let refused: any;
test('three parallel generations of 4000: holds count at once, so two pass and one gets 429', async () => {
  const send = () => call('POST', `${GEN}/generations`, {
    body: { userId: 'bob', prompt: 'Parallel', maxTokens: 4000, fakeTokens: 4000, delayMs: 400 },
  });
  const answers = await Promise.all([send(), send(), send()]);
  assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 429]);
  refused = answers.find((a) => a.status === 429);
  assert.equal(refused.body.error, 'quota_exceeded');
  assert.equal(refused.body.code, 'quota_exceeded');
  assert.equal(refused.body.subject, 'bob');
  assert.equal(refused.body.metric, 'tokens');
  assert.equal(refused.body.limit, 10000);
  assert.equal(refused.body.requested, 4000);
  assert.equal(refused.body.remaining, 2000);
  assert.equal(refused.body.used + refused.body.reserved, 8000);
  assert.equal(Date.parse(refused.body.reset_at), Date.parse(MIDNIGHT));
  assert.deepEqual(await tokens('bob'), {
    metric: 'tokens', period: 'day', limit: 10000, used: 8000, reserved: 0, remaining: 2000, resetAt: MIDNIGHT,
  });
});

test('the 429 carries Retry-After: the seconds until the window resets', () => {
  assert.ok(retryAfterMatches(refused.headers.get('retry-after')), `Retry-After: ${refused.headers.get('retry-after')}`);
});

test('a request over what is left (3000 > 2000) is refused with 429 too', async () => {
  const r = await call('POST', `${GEN}/generations`, { body: { userId: 'bob', prompt: 'More', maxTokens: 3000 } });
  assert.equal(r.status, 429);
  assert.equal(r.body.used, 8000);
  assert.equal(r.body.remaining, 2000);
  assert.ok(retryAfterMatches(r.headers.get('retry-after')));
});

test('admin reset needs the admin token: 403 without it or with a wrong one', async () => {
  assert.equal((await call('POST', `${GEN}/admin/users/bob/reset`)).status, 403);
  assert.equal((await call('POST', `${GEN}/admin/users/bob/reset`, { headers: { 'X-Admin-Token': 'wrong' } })).status, 403);
  assert.equal((await tokens('bob')).used, 8000);
});

test('admin reset (quota_reset on the admin connection) empties the window', async () => {
  const r = await call('POST', `${GEN}/admin/users/bob/reset`, { headers: { 'X-Admin-Token': ADMIN_TOKEN } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { userId: 'bob', metric: null, windowsEmptied: 1 });
  assert.deepEqual(await tokens('bob'), {
    metric: 'tokens', period: 'day', limit: 10000, used: 0, reserved: 0, remaining: 10000, resetAt: MIDNIGHT,
  });
  const again = await call('POST', `${GEN}/admin/users/bob/reset`, { headers: { 'X-Admin-Token': ADMIN_TOKEN }, body: { metric: 'tokens' } });
  assert.deepEqual(again.body, { userId: 'bob', metric: 'tokens', windowsEmptied: 0 });
  const g = await call('POST', `${GEN}/generations`, { body: { userId: 'bob', prompt: 'After reset', maxTokens: 3000, fakeTokens: 100 } });
  assert.equal(g.status, 201);
  assert.deepEqual(g.body.quota, { used: 100, remaining: 9900, resetAt: MIDNIGHT });
});

test('the admin role holds EXECUTE on quota_reset only: not quota_admin, no other admin function', async () => {
  const db = await connect(process.env.ADMIN_PGUSER);
  try {
    const { rows: [m] } = await db.query(`SELECT pg_has_role('quota_admin', 'MEMBER') AS member,
      has_function_privilege('quota.quota_reset(text, text)', 'EXECUTE') AS reset`);
    assert.deepEqual(m, { member: false, reset: true });
    await assert.rejects(db.query(`SELECT quota.set_limit('NOPE', 'tokens', 'day', 1)`),
      (err: any) => err.code === '42501');
    await assert.rejects(db.query(`SELECT * FROM quota.apply_bonus('bob', 'tokens', 'x', 'y')`),
      (err: any) => err.code === '42501');
  } finally {
    await db.end();
  }
});

test('an unknown user is 404 unknown_subject (QT404), for generation and status', async () => {
  const r = await call('POST', `${GEN}/generations`, { body: { userId: 'mallory', prompt: 'Hi', maxTokens: 10 } });
  assert.equal(r.status, 404);
  assert.deepEqual(r.body, { error: 'unknown_subject', subject: 'mallory' });
  assert.equal((await call('GET', `${GEN}/users/mallory/quota`)).status, 404);
});

test('bad input is 400: maxTokens 0 (22023), maxTokens "lots" (22P02), no prompt', async () => {
  const zero = await call('POST', `${GEN}/generations`, { body: { userId: 'carol', prompt: 'Hi', maxTokens: 0 } });
  assert.equal(zero.status, 400);
  assert.equal(zero.body.sqlstate, '22023');
  const text = await call('POST', `${GEN}/generations`, { body: { userId: 'carol', prompt: 'Hi', maxTokens: 'lots' } });
  assert.equal(text.status, 400);
  assert.equal(text.body.sqlstate, '22P02');
  const noPrompt = await call('POST', `${GEN}/generations`, { body: { userId: 'carol', maxTokens: 10 } });
  assert.deepEqual([noPrompt.status, noPrompt.body], [400, { error: 'invalid_request', field: 'prompt' }]);
  assert.equal((await tokens('carol')).used, 0);
});
