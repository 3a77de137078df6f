// node-postgres pitfalls, shown on a direct connection as the anonymous app's role
// (plan ANON, default_plan set, so an unknown subject is created on first consume).
// The tests run in order: the first one runs before the int8 parser is installed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import { installInt8Parser } from '../src/common.js';
import { connect } from './helpers.js';

let db: pg.Client;
before(async () => { db = await connect(process.env.ANON_PGUSER); });
after(async () => { await db.end(); });

const CHECK = `SELECT * FROM quota.quota_check($1::inet, 'uses', 0)`;

test('by default node-postgres returns bigint (int8) columns as strings', async () => {
  const { rows: [d] } = await db.query(CHECK, ['192.0.2.1']);
  assert.equal(d.limit_value, '5');
  assert.equal(d.used, '0');
  assert.equal(d.used + 1, '01'); // what goes wrong with arithmetic on them
});

test('with pg.types.setTypeParser(INT8, ...) they are numbers, and an unsafe one is refused', async () => {
  installInt8Parser();
  const { rows: [d] } = await db.query(CHECK, ['192.0.2.1']);
  assert.equal(d.limit_value, 5);
  assert.equal(d.used, 0);
  assert.equal(d.remaining, 5);
  await assert.rejects(db.query('SELECT 9007199254740993::bigint AS n'), RangeError);
  assert.deepEqual((await db.query('SELECT 9007199254740991::bigint AS n')).rows, [{ n: 9007199254740991 }]);
});

test('SELECT quota.fn(...) gives one unparsed composite column; SELECT * FROM gives typed columns', async () => {
  const composite = await db.query(`SELECT quota.quota_check($1::inet, 'uses', 0)`, ['192.0.2.1']);
  assert.deepEqual(composite.fields.map((f) => f.name), ['quota_check']);
  assert.equal(typeof composite.rows[0].quota_check, 'string');
  // The last attribute (0.8.0) is the level: 0, the subject's own window (1: its pool's).
  assert.match(composite.rows[0].quota_check, /^\(t,192\.0\.2\.1,uses,day,0,5,0,5,0,"[^"]+",hard,ok,0,0\)$/);
  const typed = await db.query(CHECK, ['192.0.2.1']);
  assert.deepEqual(typed.fields.map((f) => f.name), [
    'allowed', 'subject', 'metric', 'period', 'used', 'limit_value', 'bonus', 'remaining', 'requested',
    'reset_at', 'enforcement', 'reason', 'reserved', 'level']);
  assert.equal(typed.rows[0].allowed, true);
  assert.ok(typed.rows[0].reset_at instanceof Date);
});

test('a malformed IP sent as $1::inet fails in PostgreSQL with SQLSTATE 22P02 (err.code)', async () => {
  for (const bad of ['invalid-ip', '256.1.1.1', '1.2.3', '']) {
    await assert.rejects(db.query(`SELECT * FROM quota.quota_try_consume($1::inet, 'uses')`, [bad]), (err: any) => {
      assert.equal(err.code, '22P02');
      assert.equal(err.message, `invalid input syntax for type inet: "${bad}"`);
      return true;
    });
  }
});

test('without ::inet the untyped $1 picks the `subject text` form: no validation, no normalisation', async () => {
  await db.query('BEGIN');
  try {
    const sql = `SELECT subject, allowed, used FROM quota.quota_try_consume($1, 'uses')`;
    // A string that is no address at all gets its own quota (default_plan creates it) ...
    assert.deepEqual((await db.query(sql, ['invalid-ip'])).rows, [{ subject: 'invalid-ip', allowed: true, used: 1 }]);
    // ... and "192.0.2.1/32" is another subject than 192.0.2.1: one client, two quotas.
    assert.deepEqual((await db.query(sql, ['192.0.2.1/32'])).rows, [{ subject: '192.0.2.1/32', allowed: true, used: 1 }]);
    const typed = await db.query(`SELECT subject FROM quota.quota_try_consume($1::inet, 'uses')`, ['192.0.2.1/32']);
    assert.deepEqual(typed.rows, [{ subject: '192.0.2.1' }]);
  } finally {
    await db.query('ROLLBACK');
  }
});

test('the app counted no malformed address: no such subject exists', async () => {
  const { rows } = await db.query(
    `SELECT subject FROM quota.subjects WHERE subject = ANY($1::text[]) OR subject LIKE '%/%'`,
    [['invalid-ip', '256.1.1.1', '1.2.3', '']]);
  assert.deepEqual(rows, []);
});
