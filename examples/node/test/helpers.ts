// Shared by the tests: the apps' URLs, a JSON fetch, and the expected window end.
import pg from 'pg';

export const GEN = process.env.GEN_URL ?? 'http://127.0.0.1:55731';
export const ANON = process.env.ANON_URL ?? 'http://127.0.0.1:55732';
export const ADMIN_TOKEN = process.env.ADMIN_TOKEN ?? '';

// Both plans have daily windows in UTC: they end at the next UTC midnight. test.sh does not
// start within a minute of midnight, so every request of the run falls in today's window.
const now = new Date();
export const MIDNIGHT = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)).toISOString();

export interface Answer { status: number; body: any; headers: Headers }

export async function call(method: string, url: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(url, {
    method,
    headers: { 'Content-Type': 'application/json', ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

// Retry-After must be the seconds until the window ends (give or take the test's own time).
export function retryAfterMatches(header: string | null): boolean {
  const expected = Math.ceil((Date.parse(MIDNIGHT) - Date.now()) / 1000);
  return header !== null && /^\d+$/.test(header) && Math.abs(Number(header) - expected) <= 5;
}

// A direct connection (libpq environment), as the given role.
export async function connect(user?: string): Promise<pg.Client> {
  const client = new pg.Client(user ? { user } : {});
  await client.connect();
  return client;
}
