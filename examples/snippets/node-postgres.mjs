// node-postgres: consume quota, catch QT429 and read its JSON DETAIL. Env: PGHOST, PGPORT, PGDATABASE, PGUSER.
import pg from 'pg';
pg.types.setTypeParser(20, Number); // bigint (int8) columns arrive as strings otherwise

const client = new pg.Client();
await client.connect();
for (let i = 1; i <= 3; i++) {
  try { // SELECT * FROM: typed columns ("SELECT quota.quota_consume(...)" gives one composite string).
    const { rows: [d] } = await client.query('SELECT * FROM quota.quota_consume($1, $2, $3)', ['snippet-user', 'messages', 1]);
    console.log(`consume ${i}: used ${d.used} of ${d.limit_value}, remaining ${d.remaining}`);
  } catch (err) {
    if (err.code !== 'QT429') throw err;    // no driver has a class for SQLSTATE class QT: compare err.code
    const detail = JSON.parse(err.detail);  // {code, subject, metric, limit, used, remaining, reset_at, ...}
    console.log(`consume ${i}: refused (${detail.code}), ${detail.used} of ${detail.limit} used, resets at ${detail.reset_at}`);
    await client.end();
    process.exit(i === 3 ? 0 : 1);
  }
}
console.error('the third consume was not refused');
process.exit(1);
