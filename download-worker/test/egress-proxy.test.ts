import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLogger,
  createStorage,
  ensureStorage,
  loadConfig,
  makeWorkDir,
  type JobRecord,
  type Storage,
} from '@media-jobs/libs';
import { makeMp4 } from '@media-jobs/libs/testing';
import { createDownloadHandler } from '../src/download-job.js';
import { startEgressProxy, type EgressProxy } from '../src/egress-proxy.js';
import { buildYtDlpArgs } from '../src/yt-dlp.js';

// Two loopback servers: "allowed" plays a public site (the injected policy lets it through),
// "internal" plays an intranet host that must never be reached.
interface Fixture {
  server: Server;
  port: number;
  hits: string[];
}

let allowed: Fixture;
let internal: Fixture;
let video: string;
let root: string;
let storage: Storage;
const logger = createLogger('egress-test', { logLevel: 'silent' });

async function fixture(handle: (path: string, res: ServerResponse) => void): Promise<Fixture> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handle(req.url ?? '/', res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, hits };
}

beforeAll(async () => {
  video = await makeMp4({ width: 320, height: 180, seconds: 1 });
  const bytes = await readFile(video);
  internal = await fixture((_path, res) =>
    res.writeHead(200, { 'content-type': 'text/plain' }).end('secret'),
  );
  allowed = await fixture((path, res) => {
    if (path.startsWith('/to-internal')) {
      res.writeHead(302, { location: `http://127.0.0.1:${internal.port}/video.mp4` }).end();
    } else if (path === '/video.mp4') {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length }).end(bytes);
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-seen-host': 'yes' }).end(`hello ${path}`);
    }
  });
  root = await mkdtemp(join(tmpdir(), 'mj-egress-'));
  storage = createStorage(root);
  await ensureStorage(storage);
});

afterAll(async () => {
  for (const f of [allowed, internal]) {
    f?.server.closeAllConnections();
    await new Promise((r) => f?.server.close(r));
  }
  if (root) await rm(root, { recursive: true, force: true });
});

/** Only the "allowed" fixture's port on loopback; every other private address stays refused. */
const onlyAllowedFixture = (address: string, port: number) =>
  (address === '127.0.0.1' && port === allowed.port) || !/^(127\.|10\.|::1$|192\.168\.)/.test(address);

/** A plain-HTTP request through the proxy (absolute-form request target, as yt-dlp sends). */
function viaProxy(
  proxy: EgressProxy,
  url: string,
): Promise<{ status: number; body: string; refused: string | undefined }> {
  const { port } = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: url, method: 'GET', headers: { host: new URL(url).host } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            refused: res.headers['x-egress-refused'] as string | undefined,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A CONNECT through the proxy; on 200 the tunnel carries one plain HTTP request to prove it reaches the target. */
function connectVia(proxy: EgressProxy, authority: string): Promise<{ status: number; tunnelled?: string }> {
  const { port } = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'CONNECT', path: authority });
    req.on('connect', (res, socket: Socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return resolve({ status: res.statusCode ?? 0 });
      }
      let data = '';
      socket.on('data', (d: Buffer) => (data += d.toString()));
      socket.on('end', () => resolve({ status: 200, tunnelled: data }));
      socket.write(`GET /through-tunnel HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('egress proxy with the default policy', () => {
  it('when a plain request targets 127.0.0.1, then it is refused with 403 and never reaches the target', async () => {
    const proxy = await startEgressProxy();
    try {
      const res = await viaProxy(proxy, `http://127.0.0.1:${internal.port}/secret`);
      expect(res.status).toBe(403);
      expect(res.refused).toBe('1');
      expect(proxy.refusals).toEqual([{ host: '127.0.0.1', port: internal.port, address: '127.0.0.1' }]);
      expect(internal.hits).not.toContain('/secret');
    } finally {
      await proxy.close();
    }
  });

  it.each(['10.0.0.1:443', '169.254.169.254:443', '[::1]:443', 'localhost:8080', '[::ffff:7f00:1]:443'])(
    'when a CONNECT targets the private %s, then it is refused with 403',
    async (authority) => {
      const proxy = await startEgressProxy();
      try {
        expect((await connectVia(proxy, authority)).status).toBe(403);
        expect(proxy.refusals).toHaveLength(1);
      } finally {
        await proxy.close();
      }
    },
  );

  it('when a name resolves to a public and a private address (DNS rebinding), then it is refused', async () => {
    const proxy = await startEgressProxy({ resolve: async () => ['93.184.216.34', '127.0.0.1'] });
    try {
      const res = await viaProxy(proxy, 'http://rebind.example/video.mp4');
      expect(res.status).toBe(403);
      expect((await connectVia(proxy, 'rebind.example:443')).status).toBe(403);
      expect(proxy.refusals.map((r) => r.address)).toEqual(['127.0.0.1', '127.0.0.1']);
    } finally {
      await proxy.close();
    }
  });

  it('when a name resolves to the checked address, then the proxy connects to that address and keeps the Host header', async () => {
    // "site.example" resolves (by injection) to the allowed fixture: the connection uses the checked address.
    const proxy = await startEgressProxy({
      allowAddress: onlyAllowedFixture,
      resolve: async () => ['127.0.0.1'],
    });
    try {
      const res = await viaProxy(proxy, `http://site.example:${allowed.port}/named`);
      expect(res).toMatchObject({ status: 200, body: 'hello /named' });
    } finally {
      await proxy.close();
    }
  });
});

describe('egress proxy with a policy that allows one loopback fixture', () => {
  it('when a request targets the allowed fixture, then it is forwarded; a redirect from it to another loopback port is refused', async () => {
    const proxy = await startEgressProxy({ allowAddress: onlyAllowedFixture });
    try {
      const ok = await viaProxy(proxy, `http://127.0.0.1:${allowed.port}/page?q=1`);
      expect(ok).toMatchObject({ status: 200, body: 'hello /page?q=1' });

      const hop = await new Promise<{ status: number; location: string }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: new URL(proxy.url).port,
            path: `http://127.0.0.1:${allowed.port}/to-internal`,
          },
          (res) => {
            res.resume();
            resolve({ status: res.statusCode ?? 0, location: String(res.headers.location) });
          },
        );
        req.on('error', reject).end();
      });
      // The proxy passes the redirect back rather than following it; the follow-up is checked again.
      expect(hop.status).toBe(302);
      const followed = await viaProxy(proxy, hop.location);
      expect(followed.status).toBe(403);
      expect(internal.hits).toHaveLength(0);
    } finally {
      await proxy.close();
    }
  });

  it('when a CONNECT targets the allowed fixture, then the tunnel carries bytes both ways', async () => {
    const proxy = await startEgressProxy({ allowAddress: onlyAllowedFixture });
    try {
      const res = await connectVia(proxy, `127.0.0.1:${allowed.port}`);
      expect(res.status).toBe(200);
      expect(res.tunnelled).toMatch(/^HTTP\/1\.1 200[\s\S]*hello \/through-tunnel/);
    } finally {
      await proxy.close();
    }
  });
});

describe('download handler behind the egress proxy (ALLOW_PRIVATE_URLS=false)', () => {
  const handler = () =>
    createDownloadHandler({
      config: loadConfig({ DATA_DIR: root, ALLOW_PRIVATE_URLS: 'false' }),
      storage,
      logger,
      egress: { allowAddress: onlyAllowedFixture },
    });
  const runFor = async (id: string, url: string) => ({
    job: { id, kind: 'download', request: { url, quality: 'best' } } as unknown as JobRecord,
    attempt: 1,
    signal: new AbortController().signal,
    workDir: await makeWorkDir(storage, id),
    progress: () => undefined,
  });

  it('when yt-dlp is given the proxy, then the argument array carries --proxy before the URL', () => {
    const args = buildYtDlpArgs({
      url: 'https://example.com/v',
      quality: 'best',
      workDir: '/w',
      ffmpegPath: 'ffmpeg',
      proxy: 'http://127.0.0.1:9',
    });
    expect(args.slice(-4)).toEqual(['--proxy', 'http://127.0.0.1:9', '--', 'https://example.com/v']);
  });

  it('when the allowed source serves the file, then yt-dlp downloads it through the proxy', async () => {
    const out = await handler()(await runFor('egress_ok_best', `http://127.0.0.1:${allowed.port}/video.mp4`));
    expect(out.result).toMatchObject({ file: 'egress_ok_best.mp4' });
    expect(allowed.hits).toContain('/video.mp4');
  }, 60_000);

  it('when the source redirects yt-dlp to an internal address, then the job fails with a final download.private_url and the internal host is never reached', async () => {
    const err = await handler()(
      await runFor('egress_redirect_best', `http://127.0.0.1:${allowed.port}/to-internal`),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'download.private_url', retryable: false });
    expect((err as Error).message).toContain('127.0.0.1');
    expect(internal.hits).toHaveLength(0);
    // Nothing of the refused run reaches downloads/.
    expect((await readdir(storage.downloads)).filter((n) => n.startsWith('egress_redirect'))).toEqual([]);
  }, 60_000);
});
