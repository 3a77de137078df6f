// Seed 002 over HTTP: 5 uses a day per IP, bonuses (+5 questionnaire, +5 payment, +2 referral),
// at most 3 bonuses a day, a payment id once, a questionnaire once per IP, malformed IP -> 400.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANON, MIDNIGHT, call, retryAfterMatches } from './helpers.js';

const IP = '203.0.113.7';
const OTHER = '198.51.100.9';
// test.sh runs the app with TRUSTED_PROXY_HOPS=1, as if behind one proxy of ours: the
// rightmost X-Forwarded-For entry (the one that proxy appends) is the client's address.
const as = (ip: string) => ({ headers: { 'X-Forwarded-For': ip } });

test('a new IP can use: canUse true, reason null, remaining 5, resetTime next UTC midnight', async () => {
  const r = await call('GET', `${ANON}/usage`, as(IP));
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { ip: IP, canUse: true, reason: null, remaining: 5, resetTime: MIDNIGHT, used: 0, limit: 5 });
});

test('five uses go through: remaining 4, 3, 2, 1, 0', async () => {
  const remaining = [];
  for (let i = 0; i < 5; i++) {
    const r = await call('POST', `${ANON}/usage`, as(IP));
    assert.equal(r.status, 200);
    remaining.push(r.body.remaining);
  }
  assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
});

test('the sixth is refused: 429, Retry-After, canUse false, "Daily limit exceeded"', async () => {
  const r = await call('POST', `${ANON}/usage`, as(IP));
  assert.equal(r.status, 429);
  assert.deepEqual(r.body, {
    ip: IP, canUse: false, reason: 'Daily limit exceeded', remaining: 0, resetTime: MIDNIGHT, used: 5, limit: 5,
  });
  assert.ok(retryAfterMatches(r.headers.get('retry-after')), `Retry-After: ${r.headers.get('retry-after')}`);
  const check = await call('GET', `${ANON}/usage`, as(IP));
  assert.deepEqual([check.body.canUse, check.body.reason, check.body.remaining], [false, 'Daily limit exceeded', 0]);
});

test('events: five UsageRecorded, then one UsageLimitExceeded (written in the same transaction)', async () => {
  const r = await call('GET', `${ANON}/events`, as(IP));
  assert.deepEqual(r.body.events.map((e: any) => e.type),
    ['UsageRecorded', 'UsageRecorded', 'UsageRecorded', 'UsageRecorded', 'UsageRecorded', 'UsageLimitExceeded']);
  assert.deepEqual(r.body.events[4].payload, { newUsageCount: 5, remainingQuota: 0 });
  assert.deepEqual(r.body.events[5].payload, { currentUsage: 5, limit: 5, resetTime: MIDNIGHT });
});

test('questionnaire bonus: +5, new limit 10, remaining 5', async () => {
  const r = await call('POST', `${ANON}/bonus/questionnaire`, { ...as(IP), body: { reference: 'survey-2026-q4' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { applied: true, bonusType: 'questionnaire', bonusAmount: 5, newLimit: 10, bonusesToday: 1, remaining: 5 });
});

test('the same questionnaire is not rewarded twice: 409 reference_already_used', async () => {
  const r = await call('POST', `${ANON}/bonus/questionnaire`, { ...as(IP), body: { reference: 'survey-2026-q4' } });
  assert.equal(r.status, 409);
  assert.deepEqual(r.body, { applied: false, reason: 'reference_already_used', bonusType: 'questionnaire', bonusesToday: 1 });
});

test('payment bonus: +5, new limit 15', async () => {
  const r = await call('POST', `${ANON}/bonus/payment`, { ...as(IP), body: { reference: 'pay_0001' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { applied: true, bonusType: 'payment', bonusAmount: 5, newLimit: 15, bonusesToday: 2, remaining: 10 });
});

test('a payment id is usable only once, even from another IP', async () => {
  const r = await call('POST', `${ANON}/bonus/payment`, { ...as(OTHER), body: { reference: 'pay_0001' } });
  assert.equal(r.status, 409);
  assert.deepEqual(r.body, { applied: false, reason: 'reference_already_used', bonusType: 'payment', bonusesToday: 0 });
  const other = await call('GET', `${ANON}/usage`, as(OTHER));
  assert.equal(other.body.limit, 5);
});

test('referral bonus: +2, new limit 17, the third bonus of the day', async () => {
  const r = await call('POST', `${ANON}/bonus/referral`, { ...as(IP), body: { reference: 'ref-friend-42' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { applied: true, bonusType: 'referral', bonusAmount: 2, newLimit: 17, bonusesToday: 3, remaining: 12 });
});

test('a fourth bonus the same day is refused: 409 daily_cap_reached, limit stays 17', async () => {
  const r = await call('POST', `${ANON}/bonus/questionnaire`, { ...as(IP), body: { reference: 'survey-2026-q5' } });
  assert.equal(r.status, 409);
  assert.deepEqual(r.body, { applied: false, reason: 'daily_cap_reached', bonusType: 'questionnaire', bonusesToday: 3 });
  const check = await call('GET', `${ANON}/usage`, as(IP));
  assert.deepEqual(check.body, { ip: IP, canUse: true, reason: null, remaining: 12, resetTime: MIDNIGHT, used: 5, limit: 17 });
});

test('an unsupported bonus type is 400; a questionnaire without a reference is 400 (22004)', async () => {
  const r = await call('POST', `${ANON}/bonus/lottery`, { ...as(OTHER), body: { reference: 'x' } });
  assert.deepEqual([r.status, r.body], [400, { error: 'unsupported_bonus_type', bonusType: 'lottery' }]);
  const noRef = await call('POST', `${ANON}/bonus/questionnaire`, as(OTHER));
  assert.equal(noRef.status, 400);
  assert.equal(noRef.body.sqlstate, '22004');
});

test('the address is normalised by the inet cast: "203.0.113.7/32" and a proxy chain are the same IP', async () => {
  for (const header of [`${IP}/32`, `10.0.0.1, ${IP}`, ` 198.18.0.1 ,${IP} `]) {
    const r = await call('GET', `${ANON}/usage`, as(header));
    assert.equal(r.status, 200);
    assert.equal(r.body.ip, IP);
    assert.equal(r.body.remaining, 12);
  }
});

test('a malformed IP is 400 invalid_ip with SQLSTATE 22P02 from PostgreSQL, and nothing is counted', async () => {
  for (const bad of ['invalid-ip', '256.1.1.1', '1.2.3', '']) {
    for (const [method, path] of [['GET', '/usage'], ['POST', '/usage'], ['POST', '/bonus/referral']]) {
      const r = await call(method, `${ANON}${path}`, { ...as(bad), body: method === 'POST' ? { reference: 'r' } : undefined });
      assert.equal(r.status, 400, `${method} ${path} with ${JSON.stringify(bad)}`);
      assert.deepEqual(r.body, { error: 'invalid_ip', ip: bad, sqlstate: '22P02' });
    }
  }
});

test('X-Forwarded-For "10.0.0.1, 192.0.2.7": the counted subject is the rightmost, 192.0.2.7', async () => {
  const r = await call('POST', `${ANON}/usage`, as('10.0.0.1, 192.0.2.7'));
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { ip: '192.0.2.7', canUse: true, reason: null, remaining: 4, resetTime: MIDNIGHT, used: 1, limit: 5 });
  const forged = await call('GET', `${ANON}/usage`, as('10.0.0.1'));
  assert.deepEqual([forged.body.ip, forged.body.used, forged.body.remaining], ['10.0.0.1', 0, 5]);
  const events = await call('GET', `${ANON}/events`, as('192.0.2.7'));
  assert.deepEqual(events.body.events, [{ type: 'UsageRecorded', payload: { newUsageCount: 1, remainingQuota: 4 } }]);
});

test('prepending forged entries gets no fresh quota: one subject, refused after 5 uses', async () => {
  const remaining = [];
  for (const forged of ['10.0.0.2', '10.0.0.3, 10.0.0.4', 'unknown', '8.8.8.8, 1.1.1.1, 10.0.0.5']) {
    const r = await call('POST', `${ANON}/usage`, as(`${forged}, 192.0.2.7`));
    assert.equal(r.status, 200, `forged ${forged}`);
    assert.equal(r.body.ip, '192.0.2.7');
    remaining.push(r.body.remaining);
  }
  assert.deepEqual(remaining, [3, 2, 1, 0]);
  for (const forged of ['10.0.0.6', '10.0.0.7, 10.0.0.8']) {
    const r = await call('POST', `${ANON}/usage`, as(`${forged}, 192.0.2.7`));
    assert.equal(r.status, 429, `forged ${forged}`);
    assert.deepEqual([r.body.ip, r.body.canUse, r.body.used, r.body.remaining], ['192.0.2.7', false, 5, 0]);
  }
  // the forged addresses were never counted
  for (const forged of ['10.0.0.2', '10.0.0.6']) {
    const r = await call('GET', `${ANON}/usage`, as(forged));
    assert.deepEqual([r.body.ip, r.body.used], [forged, 0]);
  }
});

test('without X-Forwarded-For the address is the socket\'s (127.0.0.1)', async () => {
  const r = await call('GET', `${ANON}/usage`);
  assert.equal(r.status, 200);
  assert.deepEqual([r.body.ip, r.body.used, r.body.limit], ['127.0.0.1', 0, 5]);
});
