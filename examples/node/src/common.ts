// Shared by both apps: node-postgres set-up, a tiny JSON-over-http server, and the mapping
// of quota_ext's SQLSTATEs to HTTP answers.
import http from 'node:http';
import pg from 'pg';

// Pitfall: node-postgres returns bigint (int8) columns as strings ("used": "3"), because a
// JS number cannot hold every int8. Quota amounts are far below 2^53: parse them, and
// refuse a value that would lose precision instead of rounding it silently.
export function installInt8Parser(): void {
  pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} does not fit a JS number`);
    return n;
  });
}

// Connection settings come from the libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER);
// `user` overrides PGUSER (the generation app's admin pool).
export function makePool(user?: string): pg.Pool {
  return new pg.Pool({ max: 10, application_name: 'quota_ext node example', ...(user ? { user } : {}) });
}

// Runs fn inside BEGIN ... COMMIT on one pooled client (ROLLBACK on any error).
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export type Json = Record<string, unknown>;

export class HttpError extends Error {
  constructor(public status: number, public body: Json, public headers: Record<string, string> = {}) {
    super(String(body.error ?? status));
  }
}

export interface Reply { status: number; body: Json; headers?: Record<string, string> }

// Seconds until an ISO timestamp, at least 1 (for Retry-After).
export function secondsUntil(iso: string): number {
  return Math.max(1, Math.ceil((Date.parse(iso) - Date.now()) / 1000));
}

// quota_ext refusals carry a SQLSTATE of class QT (no driver has an exception class for it:
// read err.code) and a DETAIL that is one JSON object (err.detail).
export function httpErrorFromPg(err: unknown): HttpError | undefined {
  if (!(err instanceof pg.DatabaseError)) return undefined;
  const detail = (): Json => {
    try { return JSON.parse(err.detail ?? '{}') as Json; } catch { return {}; }
  };
  switch (err.code) {
    case 'QT429': {
      const d = detail();
      const headers: Record<string, string> = {};
      if (typeof d.reset_at === 'string') headers['Retry-After'] = String(secondsUntil(d.reset_at));
      return new HttpError(429, { error: 'quota_exceeded', ...d }, headers);
    }
    case 'QT413':
      return new HttpError(413, { error: 'per_request_cap_exceeded', ...detail() });
    case 'QT404':
      return new HttpError(404, { error: 'unknown_subject', subject: detail().subject ?? null });
    case '22P02': // malformed input of a parameter's type (an inet, a uuid, a bigint)
      return new HttpError(400, { error: 'invalid_input', sqlstate: err.code, message: err.message });
    case '22023': // a bad value (amount < 1, ...)
    case '22004': // a required argument is NULL
      return new HttpError(400, { error: 'invalid_argument', sqlstate: err.code, ...detail() });
    default:
      return undefined;
  }
}

export async function readJson(req: http.IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new HttpError(413, { error: 'body_too_large' });
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
    return body as Json;
  } catch {
    throw new HttpError(400, { error: 'invalid_json' });
  }
}

export type Handler = (req: http.IncomingMessage, url: URL) => Promise<Reply | undefined>;

// A JSON server: the handler answers, or returns undefined for 404. Errors become JSON.
export function serve(name: string, port: number, handler: Handler): http.Server {
  const server = http.createServer(async (req, res) => {
    let reply: Reply;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      reply = (await handler(req, url)) ?? { status: 404, body: { error: 'not_found' } };
    } catch (err) {
      const httpErr = err instanceof HttpError ? err : httpErrorFromPg(err);
      if (httpErr) {
        reply = { status: httpErr.status, body: httpErr.body, headers: httpErr.headers };
      } else {
        console.error(`${name}: ${req.method} ${req.url}:`, err);
        reply = { status: 500, body: { error: 'internal_error' } };
      }
    }
    res.writeHead(reply.status, { 'Content-Type': 'application/json', ...reply.headers });
    res.end(JSON.stringify(reply.body));
  });
  server.listen(port, '127.0.0.1', () => console.log(`${name} listening on http://127.0.0.1:${port}`));
  return server;
}

// Stop cleanly on SIGTERM/SIGINT (test.sh's trap): close the server, then the pools.
export function stopOn(server: http.Server, pools: pg.Pool[]): void {
  const stop = () => {
    server.close();
    server.closeAllConnections();
    Promise.all(pools.map((p) => p.end())).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
