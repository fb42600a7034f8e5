import { lookup } from 'node:dns/promises';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, isIP, type AddressInfo, type Socket } from 'node:net';
import { isLocalhostName, isPrivateAddress } from './address-policy.js';
import type { Logger } from './logger.js';

/**
 * A forward proxy for yt-dlp (`--proxy`) on 127.0.0.1, so the private-address policy holds at
 * every connection the download makes, not only for the submitted URL: a redirect to an
 * intranet host and a name that resolves to a public address at submission and to
 * 127.0.0.1 later (DNS rebinding) are both refused here. It resolves each target itself,
 * checks every address, and connects to the checked one, so nothing resolves twice.
 *
 * Plain HTTP requests are forwarded (GET, HEAD and whatever else yt-dlp sends, bodies
 * streamed); HTTPS goes through CONNECT, so TLS stays end to end between yt-dlp and the site.
 * Redirects are never followed here: each one comes back as a new request.
 */

export interface EgressRefusal {
  host: string;
  port: number;
  /** The refused address, or null when the name itself is refused (localhost). */
  address: string | null;
}

export interface EgressProxyOptions {
  /** Whether a resolved address may be reached. Default: not loopback, private or link-local. */
  allowAddress?: (address: string, port: number) => boolean;
  /** Name resolution; every address returned is checked. */
  resolve?: (host: string) => Promise<string[]>;
  /** Longest wait for a connection to the target. */
  connectTimeoutMs?: number;
  /**
   * An upstream HTTP proxy (`http://[user:pass@]host:port`, YTDLP_PROXY) to reach every target
   * through. The policy is checked here first, and a tunnel is asked for the checked address,
   * not the name, so the upstream cannot resolve it differently (see `upstreamConnect`).
   */
  upstream?: string;
  logger?: Logger;
}

export interface EgressProxy {
  /** `http://127.0.0.1:<port>`, for yt-dlp's `--proxy`. */
  readonly url: string;
  /** Every target refused so far: a download that failed after one failed because of it. */
  readonly refusals: readonly EgressRefusal[];
  /** Closes the listener and every connection through it. Safe to call twice. */
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const connectionTokens = String(headers.connection ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase());
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && !connectionTokens.includes(name)) out[name] = value;
  }
  return out;
}

async function defaultResolve(host: string): Promise<string[]> {
  const records = await lookup(host, { all: true, verbatim: true });
  return records.map((r) => r.address);
}

/** `host:port` of a CONNECT request, with `[v6]:port` support; null when malformed. */
function parseAuthority(authority: string): { host: string; port: number } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(authority);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

type Target = { ok: true; address: string } | { ok: false; refused: boolean; reason: string };

interface Upstream {
  host: string;
  port: number;
  /** `Proxy-Authorization` value, when the URL has credentials. */
  auth: string | null;
}

function parseUpstream(url: string): Upstream {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error('the upstream proxy must be an http:// URL');
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 80),
    auth: user || pass ? `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` : null,
  };
}

const authority = (address: string, port: number): string =>
  `${isIP(address) === 6 ? `[${address}]` : address}:${port}`;

/**
 * A tunnel to `address:port` through the upstream proxy (HTTP CONNECT): resolves with the
 * socket once the upstream answered 2xx (bytes after its answer are pushed back), rejects with
 * its status line otherwise.
 */
function upstreamConnect(up: Upstream, address: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: up.host, port: up.port });
    const timer = setTimeout(() => socket.destroy(new Error('upstream proxy timed out')), timeoutMs);
    let head = Buffer.alloc(0);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      const target = authority(address, port);
      socket.write(
        `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${up.auth ? `Proxy-Authorization: ${up.auth}\r\n` : ''}\r\n`,
      );
    });
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16_384) fail(new Error('upstream proxy sent an oversized answer'));
        return;
      }
      socket.off('data', onData);
      socket.off('error', fail);
      clearTimeout(timer);
      const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      if (!/^HTTP\/1\.[01] 2\d\d\b/.test(status)) {
        socket.destroy();
        reject(new Error(`upstream proxy answered ${status.replace(/^HTTP\/1\.[01] /, '') || 'nothing'}`));
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

export async function startEgressProxy(options: EgressProxyOptions = {}): Promise<EgressProxy> {
  const allowAddress = options.allowAddress ?? ((address: string) => !isPrivateAddress(address));
  const resolveHost = options.resolve ?? defaultResolve;
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
  const upstreamProxy = options.upstream ? parseUpstream(options.upstream) : null;
  const refusals: EgressRefusal[] = [];
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  /** One address to connect to, checked against the policy with every other address of the name. */
  async function checkTarget(host: string, port: number): Promise<Target> {
    const bare = host.replace(/^\[|\]$/g, '');
    const refuse = (address: string | null): Target => {
      refusals.push({ host: bare, port, address });
      options.logger?.warn(
        { host: bare, port, address },
        'Egress refused: loopback, private or link-local target',
      );
      return {
        ok: false,
        refused: true,
        reason: `${bare}${address && address !== bare ? ` (${address})` : ''} is a loopback, private or link-local address`,
      };
    };
    if (isIP(bare) === 0 && isLocalhostName(bare)) return refuse(null);
    let addresses: string[];
    try {
      addresses = isIP(bare) !== 0 ? [bare] : await resolveHost(bare);
    } catch (err) {
      return { ok: false, refused: false, reason: `cannot resolve ${bare}: ${(err as Error).message}` };
    }
    if (addresses.length === 0) return { ok: false, refused: false, reason: `${bare} has no address` };
    const bad = addresses.find((a) => !allowAddress(a, port));
    if (bad !== undefined) return refuse(bad);
    return { ok: true, address: addresses[0] as string };
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      let target: URL;
      try {
        target = new URL(req.url ?? '');
        if (target.protocol !== 'http:') throw new Error('not http');
      } catch {
        res
          .writeHead(400, { 'content-type': 'text/plain' })
          .end('egress proxy: absolute http:// URL expected\n');
        return;
      }
      const port = Number(target.port || 80);
      const checked = await checkTarget(target.hostname, port);
      if (!checked.ok) {
        res
          .writeHead(checked.refused ? 403 : 502, {
            'content-type': 'text/plain',
            'x-egress-refused': checked.refused ? '1' : '0',
          })
          .end(`egress proxy: ${checked.reason}\n`);
        return;
      }
      const upstream = httpRequest({
        // Through an upstream proxy the request is forwarded in absolute form by name (a proxy
        // takes the host from the request target, so an address would lose the site's name);
        // without one, the connection goes to the checked address.
        ...(upstreamProxy
          ? {
              host: upstreamProxy.host,
              port: upstreamProxy.port,
              path: `http://${target.host}${target.pathname}${target.search}`,
            }
          : { host: checked.address, port, path: `${target.pathname}${target.search}` }),
        method: req.method,
        // The client's Host header names the site.
        headers: {
          ...endToEnd(req.headers),
          host: target.host,
          ...(upstreamProxy?.auth ? { 'proxy-authorization': upstreamProxy.auth } : {}),
        },
        setHost: false,
        agent: false,
        timeout: connectTimeoutMs,
      });
      upstream.on('socket', track);
      upstream.on('timeout', () => upstream.destroy(new Error('upstream timed out')));
      upstream.on('response', (up) => {
        res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
        up.pipe(res);
      });
      upstream.on('error', (err) => {
        if (!res.headersSent)
          res.writeHead(502, { 'content-type': 'text/plain' }).end(`egress proxy: ${err.message}\n`);
        else res.destroy();
      });
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    })().catch((err: unknown) => {
      // An injected policy or resolver that throws: refuse the request, keep the proxy up.
      options.logger?.warn({ err }, 'Egress proxy request failed');
      if (!res.headersSent)
        res.writeHead(502, { 'content-type': 'text/plain' }).end('egress proxy: internal error\n');
      else res.destroy();
    });
  });

  server.on('connection', track);
  server.on('connect', (req, client: Socket, head: Buffer) => {
    client.on('error', () => client.destroy());
    const authority = parseAuthority(req.url ?? '');
    const reply = (status: string, reason: string, refused = false) =>
      client.end(
        `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nx-egress-refused: ${refused ? 1 : 0}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`,
      );
    if (!authority) return reply('400 Bad Request', 'egress proxy: CONNECT host:port expected');
    void checkTarget(authority.host, authority.port).then(
      (checked) => {
        if (!checked.ok)
          return reply(
            checked.refused ? '403 Forbidden' : '502 Bad Gateway',
            `egress proxy: ${checked.reason}`,
            checked.refused,
          );
        if (upstreamProxy) {
          upstreamConnect(upstreamProxy, checked.address, authority.port, connectTimeoutMs).then(
            (tunnel) => {
              track(tunnel);
              client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
              if (head.length > 0) tunnel.write(head);
              tunnel.pipe(client);
              client.pipe(tunnel);
              tunnel.on('error', () => client.destroy());
              client.on('close', () => tunnel.destroy());
            },
            (err: Error) => reply('502 Bad Gateway', `egress proxy: ${err.message}`),
          );
          return;
        }
        const upstream = connect({ host: checked.address, port: authority.port });
        track(upstream);
        const timer = setTimeout(() => upstream.destroy(new Error('connect timed out')), connectTimeoutMs);
        let established = false;
        upstream.once('connect', () => {
          established = true;
          clearTimeout(timer);
          client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length > 0) upstream.write(head);
          upstream.pipe(client);
          client.pipe(upstream);
        });
        upstream.on('error', (err) => {
          clearTimeout(timer);
          if (!established) reply('502 Bad Gateway', `egress proxy: ${err.message}`);
          else client.destroy();
        });
        client.on('close', () => upstream.destroy());
      },
      () => reply('502 Bad Gateway', 'egress proxy: internal error'),
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    refusals,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closed;
    },
  };
}
