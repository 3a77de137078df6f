// Unit tests of the client address choice (src/client-ip.ts), without a server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientAddress, parseTrustedHops } from '../src/client-ip.js';

const SOCKET = '198.51.100.1';

test('hops 0 (the default): X-Forwarded-For is ignored, the address is the socket\'s', () => {
  for (const xff of [undefined, '10.0.0.1', '10.0.0.1, 192.0.2.7', 'invalid-ip', '', ['1.2.3.4', '5.6.7.8']]) {
    assert.equal(clientAddress(SOCKET, xff, 0), SOCKET, JSON.stringify(xff));
  }
  assert.equal(clientAddress(undefined, '10.0.0.1', 0), '');
});

test('hops 1: the rightmost entry, whatever the client prepended', () => {
  assert.equal(clientAddress(SOCKET, '10.0.0.1, 192.0.2.7', 1), '192.0.2.7');
  assert.equal(clientAddress(SOCKET, '8.8.8.8,1.1.1.1 ,  192.0.2.7 ', 1), '192.0.2.7');
  assert.equal(clientAddress(SOCKET, ['10.0.0.1', '192.0.2.7'], 1), '192.0.2.7');
  assert.equal(clientAddress(SOCKET, 'invalid-ip', 1), 'invalid-ip'); // left to the ::inet cast (22P02)
  assert.equal(clientAddress(SOCKET, '', 1), '');
  assert.equal(clientAddress(SOCKET, undefined, 1), SOCKET);       // no header: the socket's
});

test('hops 2: the second entry from the right; a shorter chain gives its leftmost entry', () => {
  assert.equal(clientAddress(SOCKET, '10.0.0.1, 192.0.2.7, 203.0.113.5', 2), '192.0.2.7');
  assert.equal(clientAddress(SOCKET, '192.0.2.7', 2), '192.0.2.7');
});

test('TRUSTED_PROXY_HOPS: unset or empty is 0; an integer >= 0; anything else is refused', () => {
  assert.equal(parseTrustedHops(undefined), 0);
  assert.equal(parseTrustedHops(''), 0);
  assert.equal(parseTrustedHops('0'), 0);
  assert.equal(parseTrustedHops('1'), 1);
  assert.equal(parseTrustedHops(' 2 '), 2);
  for (const bad of ['-1', 'yes', '1.5', 'true']) assert.throws(() => parseTrustedHops(bad), /TRUSTED_PROXY_HOPS/, bad);
});
