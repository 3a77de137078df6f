// Does every positional call of every quota function resolve when a driver sends untyped
// parameters? node-postgres sends every parameter with type oid 0 (unknown) over the extended
// protocol, so PostgreSQL must pick the function from the argument count alone.
// The calls come from ../calls.sql (one row per function and argument count). Each is sent with
// NULL for every parameter, in one transaction, each under its own savepoint; the transaction
// is rolled back at the end. A call fails when PostgreSQL cannot choose a function:
// 42725 (not unique), 42883 (none matches) or 42P18 (could not determine a parameter's type).
// Any other outcome (a result, 22004 for the NULLs, 55000, ...) means the call resolved.
// Connects with the libpq environment: PGHOST, PGPORT, PGDATABASE, PGUSER.
import { readFileSync } from 'node:fs';
import pg from 'pg';

const UNRESOLVED = new Map([['42725', 'not unique'], ['42883', 'no function matches'], ['42P18', 'type not determined']]);
const callsSql = readFileSync(new URL('../calls.sql', import.meta.url), 'utf8');

const client = new pg.Client({ application_name: 'quota_ext driver test: node-postgres' });
await client.connect();
let failed = 0;
let total = 0;
try {
  const { rows: calls } = await client.query(callsSql);
  if (calls.length === 0) throw new Error('calls.sql returned no calls: is quota_ext installed in this database?');
  await client.query('BEGIN');
  for (const { call, args } of calls) {
    total++;
    const n = Number(args);
    await client.query('SAVEPOINT call');
    try {
      // queryMode 'extended': Parse/Bind/Execute even for 0 parameters, as with parameters.
      await client.query({ text: call, values: new Array(n).fill(null), queryMode: 'extended' });
      await client.query('RELEASE SAVEPOINT call');
    } catch (err) {
      if (!(err instanceof pg.DatabaseError)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT call');
      if (UNRESOLVED.has(err.code)) {
        failed++;
        console.log(`FAIL ${call} (${n} untyped parameters): ${err.code} ${UNRESOLVED.get(err.code)}: ${err.message}`);
      }
    }
  }
  await client.query('ROLLBACK');
} finally {
  await client.end();
}
console.log(`node-postgres: ${total - failed} of ${total} calls resolve`);
process.exit(failed === 0 ? 0 : 1);
