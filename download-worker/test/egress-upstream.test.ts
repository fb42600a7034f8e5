import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEgressProxy } from '@media-jobs/libs';
import { startFixtureServer, type FixtureServer } from '@media-jobs/libs/testing';
import { startLoopbackProxy, type LoopbackProxy } from './loopback-proxy.js';

let fixtures: FixtureServer;
let upstream: LoopbackProxy;
let denying: Server;

beforeAll(async () => {
  fixtures = await startFixtureServer();
  upstream = await startLoopbackProxy();
  // An upstream that wants credentials it never gets.
  denying = createServer();
  denying.on('connect', (_req, socket) =>
    socket.end('HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n'),
  );
  await new Promise<void>((resolve) => denying.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await fixtures?.close();
  await upstream?.close();
  await new Promise((resolve) => denying?.close(resolve));
});

/** Sends CONNECT to the proxy, then (when the tunnel opens) a GET through it; returns both answers' first lines. */
async function tunnelGet(proxyUrl: string, authority: string, host: string): Promise<string[]> {
  const { hostname, port } = new URL(proxyUrl);
  const socket = connect({ host: hostname, port: Number(port) });
  let data = '';
  socket.on('data', (c: Buffer) => {
    data += c.toString('latin1');
    if (data.startsWith('HTTP/1.1 200') && data.indexOf('\r\n\r\n') === data.length - 4)
      socket.write(`GET /nothing HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  await new Promise((resolve) => socket.once('close', resolve));
  return data
    .split('\r\n')
    .filter((l) => l.startsWith('HTTP/1.1'))
    .map((l) => l.trim());
}

describe('egress proxy with an upstream proxy', () => {
  it('when a name passes the policy, then the upstream is asked for a tunnel to the checked address, not the name', async () => {
    const port = new URL(fixtures.origin).port;
    const egress = await startEgressProxy({
      upstream: upstream.url,
      resolve: async () => ['127.0.0.1'],
      allowAddress: (a) => a === '127.0.0.1',
    });
    try {
      const before = upstream.seen.length;
      const lines = await tunnelGet(egress.url, `site.example:${port}`, 'site.example');
      expect(lines).toEqual(['HTTP/1.1 200 Connection Established', 'HTTP/1.1 404 Not Found']);
      expect(upstream.seen.slice(before)).toEqual([
        { method: 'CONNECT', target: `127.0.0.1:${port}`, proxyAuthorization: undefined },
      ]);
    } finally {
      await egress.close();
    }
  });

  it('when a name resolves to a refused address, then the upstream never hears of it', async () => {
    const egress = await startEgressProxy({ upstream: upstream.url, resolve: async () => ['10.1.2.3'] });
    try {
      const before = upstream.seen.length;
      const lines = await tunnelGet(egress.url, 'intranet.example:443', 'intranet.example');
      expect(lines).toEqual(['HTTP/1.1 403 Forbidden']);
      expect(upstream.seen.slice(before)).toEqual([]);
      expect(egress.refusals).toMatchObject([{ host: 'intranet.example', address: '10.1.2.3' }]);
    } finally {
      await egress.close();
    }
  });

  it('when the upstream refuses the tunnel, then yt-dlp gets a 502 that names the upstream answer', async () => {
    const { port } = denying.address() as AddressInfo;
    const egress = await startEgressProxy({
      upstream: `http://127.0.0.1:${port}`,
      resolve: async () => ['93.184.215.14'],
    });
    try {
      const { hostname, port: egressPort } = new URL(egress.url);
      const socket = connect({ host: hostname, port: Number(egressPort) });
      let data = '';
      socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
      socket.write('CONNECT site.example:443 HTTP/1.1\r\nHost: site.example:443\r\n\r\n');
      await new Promise((resolve) => socket.once('close', resolve));
      expect(data).toMatch(/^HTTP\/1\.1 502 Bad Gateway/);
      expect(data).toContain('upstream proxy answered 407 Proxy Authentication Required');
    } finally {
      await egress.close();
    }
  });
});
