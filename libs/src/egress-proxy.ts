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

export async function startEgressProxy(options: EgressProxyOptions = {}): Promise<EgressProxy> {
  const allowAddress = options.allowAddress ?? ((address: string) => !isPrivateAddress(address));
  const resolveHost = options.resolve ?? defaultResolve;
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
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
        host: checked.address,
        port,
        method: req.method,
        path: `${target.pathname}${target.search}`,
        // The client's Host header names the site; the connection goes to the checked address.
        headers: { ...endToEnd(req.headers), host: target.host },
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
