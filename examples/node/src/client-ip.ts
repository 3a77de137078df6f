// Which address is the client's. By default the socket's remote address: X-Forwarded-For is
// written by whoever sends the request, so a client could put any address there and get a
// fresh quota with each one. Only behind your own proxies (TRUSTED_PROXY_HOPS = how many
// proxies, each appending the address it received the request from) is the header used, and
// then only the entry `hops` places from the RIGHT: the address the outermost trusted proxy
// saw. Entries left of it were written by the client and are ignored.

// TRUSTED_PROXY_HOPS: unset or "" -> 0 (no proxy: ignore X-Forwarded-For); else an integer >= 0.
export function parseTrustedHops(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 0;
  if (!/^\s*\d+\s*$/.test(value)) throw new Error(`TRUSTED_PROXY_HOPS must be an integer >= 0, not ${JSON.stringify(value)}`);
  return Number(value);
}

// Not validated here: the caller sends it to PostgreSQL as $1::inet (a malformed one is 22P02).
export function clientAddress(remote: string | undefined, xff: string | string[] | undefined, hops: number): string {
  const socket = remote ?? '';
  if (hops <= 0 || xff === undefined) return socket;
  // Node joins repeated X-Forwarded-For headers with ", "; join an array the same way.
  const entries = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((s) => s.trim());
  // Fewer entries than hops: the leftmost was still appended by a trusted proxy.
  return entries[Math.max(0, entries.length - hops)];
}
