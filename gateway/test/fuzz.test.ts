import { readFile, readdir, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { makeMp4, startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

// Thousands of malformed requests against a real gateway (real Redis, NATS, DATA_DIR): none
// may get a 5xx, the gateway must stay up, and nothing stored may change. Rate limiting is
// off here (the harness default), so every answer is the gateway's verdict on the input.

const RUNS = 5000;
let platform: Platform;
let gateway: Gateway;
let seeder: Gateway;
let redis: Redis;
const existing: string[] = [];

beforeAll(async () => {
  platform = await startPlatform();
  // ADMIN_TOKEN set: loopback is not enough, so POST /admin/cleanup cannot run a real sweep.
  gateway = await startGateway(
    platform.config({ ALLOW_PRIVATE_URLS: 'false', ADMIN_TOKEN: 'fuzz-admin-token-0123456789' }),
  );
  seeder = await startGateway(platform.config());
  redis = new Redis(platform.redis.url);
  // A few jobs that exist before the fuzzing (no worker runs, so they stay queued).
  for (const url of ['http://127.0.0.1:9/a.mp4', 'http://127.0.0.1:9/b.mp4']) {
    const res = await fetch(`${seeder.url}/download`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url, quality: '720p' }),
    });
    existing.push(((await res.json()) as { id: string }).id);
  }
  const form = new FormData();
  form.append('operations[]', 'normalize_volume');
  form.append(
    'file',
    new Blob([new Uint8Array(await readFile(await makeMp4({ width: 160, height: 90, seconds: 1 })))]),
    'a.mp4',
  );
  const res = await fetch(`${seeder.url}/normalize`, { method: 'POST', body: form });
  expect(res.status).toBe(202);
  existing.push(((await res.json()) as { id: string }).id);
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await seeder?.stop();
  redis?.disconnect();
  await platform?.close();
});

/** Every key and value but the ones that change by themselves (service announcements). */
async function redisSnapshot(): Promise<Record<string, unknown>> {
  const keys = (await redis.keys('*')).filter((k) => k !== 'services:config').sort();
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    if (type === 'string') out[key] = await redis.get(key);
    else if (type === 'zset') out[key] = await redis.zrange(key, '0', '-1', 'WITHSCORES');
    else if (type === 'hash') out[key] = await redis.hgetall(key);
    else if (type === 'set') out[key] = (await redis.smembers(key)).sort();
    else if (type === 'list') out[key] = await redis.lrange(key, 0, -1);
    else out[key] = type;
  }
  return out;
}

async function listing(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(`${relative(root, path)}/`, ...(await listing(path, root)));
    else out.push(`${relative(root, path)} ${(await stat(path)).size}`);
  }
  return out.sort();
}

interface RawRequest {
  method: string;
  target: string;
  headers: [string, string][];
  body: Buffer;
  chunked: boolean;
}

/**
 * Sends bytes as they are (no client-side validation of methods, targets or headers) and
 * resolves with the status of the first response line, or 0 if the connection closed first.
 */
function send(port: number, r: RawRequest, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${r.method} ${r.target.slice(0, 200)}`));
    }, timeoutMs);
    const done = (status: number) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(status);
    };
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      // Skip interim answers (100 Continue): the verdict is the first final status.
      for (const m of data.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3})/g)) {
        if (Number(m[1]) >= 200) return done(Number(m[1]));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => done(0));
    const head = [`${r.method} ${r.target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
    for (const [k, v] of r.headers) head.push(`${k}: ${v}`);
    if (r.chunked) head.push('Transfer-Encoding: chunked');
    else if (r.body.length > 0 || r.method === 'POST') head.push(`Content-Length: ${r.body.length}`);
    const framed = r.chunked
      ? Buffer.concat([
          Buffer.from(`${r.body.length.toString(16)}\r\n`),
          r.body,
          Buffer.from('\r\n0\r\n\r\n'),
        ])
      : r.body;
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
    // No half-close: Node ends a request whose client sent FIN before the answer was written.
    socket.write(framed);
  });
}

// ---- generators -------------------------------------------------------------------------

const odd = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '..%2f..%2fetc%2fpasswd',
    '%00',
    '%ff',
    '%',
    'a%zz',
    ' ',
    '\u0000',
    '😀',
    'CON',
    '-rf',
    '$(id)',
    '*',
    '~',
  ),
  fc.integer({ min: 129, max: 9000 }).map((n) => 'x'.repeat(n)),
);
/** An id segment: odd text (encoded so it fits a request line, or raw when it already does) or a real id. */
const idSegment = fc.oneof(
  { weight: 4, arbitrary: odd.map((s) => (/^[\x21-\x7e]*$/.test(s) ? s : encodeURIComponent(s))) },
  { weight: 1, arbitrary: fc.nat({ max: 2 }).map((i) => `EXISTING${i}`) },
);
const knownPath = fc.constantFrom(
  '/download',
  '/normalize',
  '/jobs/ID',
  '/jobs/ID/file',
  '/jobs/ID/events',
  '/jobs',
  '/admin/stats',
  '/admin/cleanup',
  '/admin/ID',
  '/health',
  '/ready',
  '/DOWNLOAD',
  '/download/',
  '//download',
  '/jobs/ID/file/..',
  '/jobs/ID/../../etc/passwd',
  '/jobs/%2e%2e/%2e%2e/etc/passwd',
  '/../../etc/passwd',
  '/jobs/ID/file%00.mp4',
  '/jobs/ID//file',
  '/%2e%2e/admin/stats',
  '/',
  '*',
  'http://evil.example/download',
  '/metrics',
  '/docs',
);
const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '?kind=download',
    '?kind=x&status=y',
    '?limit=-1',
    '?limit=1e9',
    '?limit=abc',
    '?limit=0x10',
    '?cursor=%ff',
    '?cursor=99999999999',
    '?kind[]=download',
    '?kind=download&kind=normalize',
    '?__proto__[x]=1',
    '?constructor[prototype][x]=1',
    '?a=%',
    '?limit=5&limit=6',
    `?q=${'z'.repeat(5000)}`,
  ),
  fc
    .dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 20 }), { maxKeys: 4 })
    .map((d) => `?${new URLSearchParams(d).toString()}`),
);

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-7',
  'application/json; charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/form-data; boundary=',
  'multipart/mixed; boundary=zz',
  'application/octet-stream',
  'garbage',
  'application/json, text/html',
  'APPLICATION/JSON',
  '*/*',
  'application/vnd.api+json',
  'text/html; charset=utf-8',
  'image/png',
);
const extraHeader = fc
  .oneof(
    fc.tuple(
      fc.constant('Authorization'),
      fc.oneof(
        fc.string({ maxLength: 60 }).map((s) => `Bearer ${s}`),
        fc.constantFrom('Basic Zm9vOmJhcg==', 'Bearer', ''),
      ),
    ),
    fc.tuple(fc.constant('X-API-Key'), fc.string({ maxLength: 60 })),
    fc.tuple(
      fc.constant('Content-Encoding'),
      fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'compress', 'x-garbage'),
    ),
    fc.tuple(
      fc.constant('Range'),
      fc.constantFrom('bytes=0-1', 'bytes=-1', 'bytes=9-1', 'bytes=0-1,2-3,0-99999', 'lines=1-2', 'bytes='),
    ),
    fc.tuple(fc.constant('X-Forwarded-For'), fc.constantFrom('1.2.3.4', 'garbage', '::1, 10.0.0.1', '')),
    fc.tuple(fc.constant('Accept'), fc.constantFrom('text/event-stream', '*/*', 'application/xml', '')),
    fc.tuple(fc.constant('Expect'), fc.constantFrom('100-continue', 'nonsense')),
    fc.tuple(
      fc.constant('Cookie'),
      fc.integer({ min: 1, max: 12_000 }).map((n) => `a=${'b'.repeat(n)}`),
    ),
    fc.tuple(fc.constant('If-None-Match'), fc.string({ maxLength: 30 })),
  )
  .map(([k, v]) => [k, v.replace(/[\r\n\0]/g, '')] as [string, string]);

const brokenJson = fc.constantFrom(
  '{',
  '{"url": ',
  '{"url": "http://x',
  '[1,2]',
  'null',
  'true',
  '0',
  '"str"',
  '{"url": 42}',
  '{"url": null}',
  '{"url": ["http://127.0.0.1/a"]}',
  '{"url": {"href": "x"}}',
  '{"url": "http://127.0.0.1/a.mp4"}',
  '{"url": "http://10.0.0.1/a.mp4", "quality": "best"}',
  '{"url": "http://[::1]/a"}',
  '{"url": "http://localhost/"}',
  '{"url": "file:///etc/passwd"}',
  '{"url": "-o /tmp/x"}',
  '{"url": "", "quality": "720p"}',
  '{"quality": 7}',
  '{"url": "javascript:alert(1)"}',
  '{"__proto__": {"polluted": 1}, "url": 1}',
  '{"url": "http://169.254.169.254/"}',
  `{"url": "${'a'.repeat(3000)}"}`,
  '\uFEFF{"url": 1}',
  '{"url": "\\ud800"}',
  '{"a":1,}',
  "{'url': 'x'}",
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
);
const jsonBody = fc
  .oneof(
    brokenJson,
    fc.json({ maxDepth: 3 }).filter((j) => !/"url"\s*:\s*"https?:/.test(j)),
    fc
      .record({
        url: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
        quality: fc.oneof(fc.string(), fc.integer()),
      })
      // A string that is a real public http(s) URL would be a valid submission; keep it malformed.
      .map((o) => JSON.stringify(typeof o.url === 'string' ? { ...o, url: `::${o.url}` } : o)),
  )
  .map((s) => Buffer.from(s));
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 17_000, max: 200_000 }).map((n) => Buffer.alloc(n, 0x41)),
);

/** Multipart bodies that are broken or always carry one invalid part, so none is a valid job. */
const multipart = fc
  .record({
    boundary: fc.stringMatching(/^[A-Za-z0-9'()+_,-./:=?]{1,70}$/),
    op: fc.string({ maxLength: 30 }).map((s) => `x${s.replace(/[\r\n"]/g, '')}`),
    withFile: fc.boolean(),
    fileBytes: fc.uint8Array({ maxLength: 512 }),
    variant: fc.constantFrom(
      'ok-structure',
      'no-close',
      'bad-part-header',
      'no-name',
      'two-files',
      'long-field-name',
      'many-parts',
      'boolean-flag',
      'bad-format',
      'bad-target',
      'garbage',
    ),
  })
  .map(({ boundary, op, withFile, fileBytes, variant }) => {
    const b = boundary.replace(/[ ]+$/, '') || 'b';
    const part = (headers: string, body: string | Buffer) =>
      Buffer.concat([Buffer.from(`--${b}\r\n${headers}\r\n\r\n`), Buffer.from(body), Buffer.from('\r\n')]);
    const file = (name = 'file') =>
      part(
        `Content-Disposition: form-data; name="${name}"; filename="../../etc/p.mp3"\r\nContent-Type: audio/mpeg`,
        Buffer.from(fileBytes),
      );
    const parts: Buffer[] = [];
    if (variant === 'boolean-flag')
      parts.push(part('Content-Disposition: form-data; name="remove_noise"', 'maybe'));
    else if (variant === 'bad-format')
      parts.push(
        part('Content-Disposition: form-data; name="operations[]"', 'normalize_volume'),
        part('Content-Disposition: form-data; name="format"', `${op}`),
      );
    else if (variant === 'bad-target')
      parts.push(
        part('Content-Disposition: form-data; name="operations[]"', 'normalize_volume'),
        part('Content-Disposition: form-data; name="target_lufs"', `1${op}`),
      );
    else parts.push(part('Content-Disposition: form-data; name="operations[]"', op));
    if (variant === 'bad-part-header')
      parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name\r\n\r\nzz\r\n`));
    if (variant === 'no-name') parts.push(part('Content-Disposition: form-data', 'x'));
    if (variant === 'long-field-name')
      parts.push(part(`Content-Disposition: form-data; name="${'n'.repeat(200)}"`, 'x'));
    if (variant === 'many-parts')
      for (let i = 0; i < 50; i++) parts.push(part(`Content-Disposition: form-data; name="f${i}"`, 'x'));
    if (withFile || variant === 'two-files') parts.push(file());
    if (variant === 'two-files') parts.push(file());
    if (variant === 'garbage') parts.push(Buffer.from(fileBytes));
    if (variant !== 'no-close') parts.push(Buffer.from(`--${b}--\r\n`));
    const ct =
      variant === 'garbage' ? `multipart/form-data; boundary="${b}` : `multipart/form-data; boundary="${b}"`;
    return { contentType: ct, body: Buffer.concat(parts) };
  });

const anyMethod = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('TRACE', 'PROPFIND', 'FOO', 'get', 'G ET', 'POST\t', 'M-SEARCH', 'PURGE'),
  },
);
/** Half the requests go where bodies are read (submissions), the rest anywhere with any method. */
const methodAndPath = fc.oneof(
  fc.record({
    method: fc.oneof({ weight: 5, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: anyMethod }),
    path: fc.constantFrom('/download', '/normalize', '/DOWNLOAD', '/normalize/', '/download?x=1'),
  }),
  fc.record({ method: anyMethod, path: knownPath }),
);

const request = fc
  .record({
    methodAndPath,
    id: idSegment,
    query,
    body: fc.oneof(
      {
        weight: 3,
        arbitrary: jsonBody.map((body) => ({ contentType: 'application/json' as string | null, body })),
      },
      {
        weight: 3,
        arbitrary: multipart.map((m) => ({ contentType: m.contentType as string | null, body: m.body })),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.option(contentType), fc.oneof(jsonBody, bytes))
          .map(([contentType, body]) => ({ contentType, body })),
      },
      { weight: 1, arbitrary: fc.constant({ contentType: null as string | null, body: Buffer.alloc(0) }) },
    ),
    headers: fc.array(extraHeader, { maxLength: 3 }),
    chunked: fc.boolean(),
  })
  .map(({ methodAndPath: { method, path }, id, query, body, headers, chunked }) => {
    const real = /^EXISTING(\d)$/.exec(id);
    // DELETE of a real job is a well-formed request that rightly changes the store: aim it at
    // a well-formed id that does not exist instead.
    const deletesRealJob = real && method === 'DELETE' && path === '/jobs/ID';
    const chosen = real ? `${existing[Number(real[1])] as string}${deletesRealJob ? '_gone' : ''}` : id;
    const target = `${path.replaceAll('ID', chosen)}${query}`;
    const all: [string, string][] = [...headers];
    if (body.contentType !== null) all.push(['Content-Type', body.contentType]);
    return { method, target, headers: all, body: body.body, chunked } satisfies RawRequest;
  });

describe('fuzzing every endpoint with malformed requests', () => {
  it(`when ${RUNS} malformed requests hit the gateway, then none is a 5xx, it stays up, and nothing stored changes`, async () => {
    const before = { redis: await redisSnapshot(), files: await listing(platform.dataDir) };
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const status = await send(gateway.port, r);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // 0: the connection closed before an answer, which only Node's own parser may do.
        const ok = status >= 400 ? status < 500 : status > 0 || /[^A-Z]/.test(r.method);
        if (!ok) throw new Error(`answered ${status}`);
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: 45_000, markInterruptAsFailure: false },
    );
    console.info('statuses', JSON.stringify([...statuses].sort((a, b) => a[0] - b[0])));
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(3000);
    // The inputs reached the gateway's own checks, not only Node's parser.
    for (const s of [400, 404, 413]) expect(statuses.get(s) ?? 0).toBeGreaterThan(0);

    const health = await fetch(`${gateway.url}/health`);
    expect(health.status).toBe(200);
    expect(await redisSnapshot()).toEqual(before.redis);
    // Rejected uploads leave tmp/ once their request has finished.
    await expect.poll(() => listing(platform.dataDir), { timeout: 10_000 }).toEqual(before.files);
  }, 58_000);
});
