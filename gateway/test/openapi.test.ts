import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { z } from 'zod';
import {
  EXPIRY_INDEX,
  FAILURE_KINDS,
  JOB_EVENT_TYPES,
  OPERATIONS,
  OUTPUT_FORMATS,
  QUALITIES,
  createRedis,
  type Redis,
} from '@media-jobs/libs';
import { makeTone, startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';
import { COMPONENT_SCHEMAS } from '../src/openapi.js';
import { downloadBodySchema } from '../src/schemas.js';
import { fetchDocCheck, type DocCheck } from './openapi-check.js';

let platform: Platform;
let gateway: Gateway;
let redis: Redis;
let doc: any;
let check: DocCheck;
let audio: Buffer;
let scratch: string;

// No worker runs: submitted jobs stay queued, which gives the 409 of a result not ready.
beforeAll(async () => {
  platform = await startPlatform();
  gateway = await startGateway(platform.config());
  redis = createRedis(platform.config());
  check = await fetchDocCheck(gateway.url);
  doc = check.doc;
  scratch = await mkdtemp(join(tmpdir(), 'mj-openapi-'));
  const wav = join(scratch, 'tone.wav');
  await makeTone(wav, { seconds: 0.5, sampleRate: 44100 });
  audio = await readFile(wav);
});

afterAll(async () => {
  await gateway?.stop();
  redis?.disconnect();
  await platform?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const validateAgainstDoc = (path: string, method: string, status: number, body: unknown): void =>
  check.response(path, method, status, body);

/** A component with its `$ref`s to other components replaced by them, as a standalone schema holds them. */
function inlined(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(inlined);
  if (!schema || typeof schema !== 'object') return schema;
  const ref = (schema as { $ref?: unknown }).$ref;
  const prefix = '#/components/schemas/';
  if (typeof ref === 'string' && ref.startsWith(prefix))
    return inlined(doc.components.schemas[ref.slice(prefix.length)]);
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, inlined(v)]));
}

async function call(method: string, path: string, init: RequestInit = {}) {
  const res = await fetch(`${gateway.url}${path}`, { ...init, method });
  return { status: res.status, body: (await res.json()) as any };
}

const postJson = (path: string, body: unknown) =>
  call('POST', path, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('the OpenAPI document', () => {
  it('when /openapi.json is fetched, then it is OpenAPI 3.1 with every endpoint of DESIGN.md and its methods', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    const expected: Record<string, string[]> = {
      '/download': ['post'],
      '/normalize': ['post'],
      '/probe': ['get'],
      '/jobs': ['get'],
      '/jobs/{id}': ['get', 'delete'],
      '/jobs/{id}/file': ['get'],
      '/jobs/{id}/events': ['get'],
      '/admin/stats': ['get'],
      '/admin/cleanup': ['post'],
      '/admin/cookies': ['put', 'delete'],
      '/health': ['get'],
      '/ready': ['get'],
      '/metrics': ['get'],
      '/openapi.json': ['get'],
      '/docs': ['get'],
    };
    expect(Object.keys(doc.paths).sort()).toEqual(Object.keys(expected).sort());
    for (const [path, methods] of Object.entries(expected)) {
      const documented = Object.keys(doc.paths[path]).filter((k) =>
        ['get', 'post', 'put', 'patch', 'delete'].includes(k),
      );
      expect(documented.sort(), path).toEqual(methods.sort());
      for (const method of methods)
        expect(Object.keys(doc.paths[path][method].responses).length, `${method} ${path}`).toBeGreaterThan(0);
    }
    // Every $ref points at a component that exists.
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map(
      (m) => m[1],
    );
    expect(refs.length).toBeGreaterThan(10);
    for (const name of refs) expect(doc.components.schemas, name).toHaveProperty(name!);
    // Every schema compiles as JSON Schema 2020-12.
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    expect(() =>
      ajv.compile({ $ref: '#/components/schemas/JobList', components: doc.components }),
    ).not.toThrow();
  });

  it('when the document is compared with the zod schemas, then each component is generated from the schema the routes use', () => {
    for (const [name, schema] of Object.entries(COMPONENT_SCHEMAS)) {
      const { $schema: _s, ...standalone } = z.toJSONSchema(schema, {
        target: 'draft-2020-12',
        unrepresentable: 'any',
      });
      // A component nesting another refers to it instead of repeating it.
      expect(inlined(doc.components.schemas[name]), name).toEqual(standalone);
    }
    const refTo = (name: string) => ({ $ref: `#/components/schemas/${name}` });
    expect(doc.components.schemas.JobList.properties.jobs.items).toEqual(refTo('JobView'));
    // A result is typed by kind, in the job and in the `completed` event alike.
    const results = [refTo('DownloadResult'), refTo('NormalizeResult')];
    expect(doc.components.schemas.JobView.properties.result.anyOf).toEqual(results);
    const events = doc.components.schemas.JobEvent.oneOf as any[];
    expect(events.map((e) => e.properties.type.const)).toEqual([...JOB_EVENT_TYPES]);
    expect(events.find((e) => e.properties.type.const === 'completed').properties.result.anyOf).toEqual(
      results,
    );
    expect(doc.components.schemas.DownloadResult.properties.quality.enum).toEqual([...QUALITIES]);
    expect(doc.components.schemas.NormalizeResult.properties.format.enum).toEqual([...OUTPUT_FORMATS]);
    // Requests in input form (a field with a default is optional), from the schema POST /download parses with.
    const { $schema: _d, ...downloadInput } = z.toJSONSchema(downloadBodySchema, {
      target: 'draft-2020-12',
      io: 'input',
    });
    expect(doc.components.schemas.DownloadRequest).toEqual(downloadInput);
    const download = doc.components.schemas.DownloadRequest;
    expect(download.properties.quality.enum).toEqual([...QUALITIES]);
    expect(download.required).toEqual(['url']);
    const form = doc.components.schemas.NormalizeForm;
    expect(form.properties['operations[]'].items.enum).toEqual([...OPERATIONS]);
    expect(form.properties.format.enum).toEqual([...OUTPUT_FORMATS]);
    const query = doc.paths['/jobs'].get.parameters.map((p: any) => p.name);
    expect(query.sort()).toEqual(['cursor', 'kind', 'limit', 'status']);
  });

  it('when real requests are made, then every response body matches the documented schema of its path, method and status', async () => {
    const url = `https://example.com/openapi-${Date.now()}.mp4`;
    const created = await postJson('/download', { url, quality: '720p' });
    expect(created.status).toBe(202);
    validateAgainstDoc('/download', 'post', 202, created.body);

    const hit = await postJson('/download', { url, quality: '720p' });
    expect(hit.status).toBe(200);
    expect(hit.body.cache_hit).toBe(true);
    validateAgainstDoc('/download', 'post', 200, hit.body);

    const bad = await postJson('/download', { url, quality: '721p' });
    expect(bad.status).toBe(400);
    validateAgainstDoc('/download', 'post', 400, bad.body);

    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(audio)]), 'tone.wav');
    form.append('operations[]', 'convert_to_mono');
    const normalized = await call('POST', '/normalize', { body: form });
    expect(normalized.status).toBe(202);
    validateAgainstDoc('/normalize', 'post', 202, normalized.body);

    const badForm = new FormData();
    badForm.append('file', new Blob([new Uint8Array(audio)]), 'tone.wav');
    badForm.append('operations[]', 'make_it_louder');
    const badNormalize = await call('POST', '/normalize', { body: badForm });
    expect(badNormalize.status).toBe(400);
    validateAgainstDoc('/normalize', 'post', 400, badNormalize.body);

    const id = created.body.id as string;
    const job = await call('GET', `/jobs/${id}`);
    expect(job.status).toBe(200);
    validateAgainstDoc('/jobs/{id}', 'get', 200, job.body);

    const notReady = await call('GET', `/jobs/${id}/file`);
    expect(notReady.status).toBe(409);
    validateAgainstDoc('/jobs/{id}/file', 'get', 409, notReady.body);

    const missing = await call('GET', '/jobs/nope_best');
    expect(missing.status).toBe(404);
    validateAgainstDoc('/jobs/{id}', 'get', 404, missing.body);

    const invalidId = await call('GET', '/jobs/a.b');
    expect(invalidId.status).toBe(400);
    validateAgainstDoc('/jobs/{id}', 'get', 400, invalidId.body);

    // An index entry whose expiry has passed is a job awaiting the sweep: 410.
    await redis.zadd(EXPIRY_INDEX, Date.now() - 1000, 'job:gone_best');
    const expired = await call('GET', '/jobs/gone_best');
    expect(expired.status).toBe(410);
    validateAgainstDoc('/jobs/{id}', 'get', 410, expired.body);

    const list = await call('GET', '/jobs?kind=download&limit=5');
    expect(list.status).toBe(200);
    expect(list.body.jobs.length).toBeGreaterThan(0);
    validateAgainstDoc('/jobs', 'get', 200, list.body);

    const badQuery = await call('GET', '/jobs?limit=1000');
    expect(badQuery.status).toBe(400);
    validateAgainstDoc('/jobs', 'get', 400, badQuery.body);

    const deleted = await call('DELETE', `/jobs/${id}`);
    expect(deleted.status).toBe(200);
    validateAgainstDoc('/jobs/{id}', 'delete', 200, deleted.body);

    const health = await call('GET', '/health');
    expect(health.status).toBe(200);
    validateAgainstDoc('/health', 'get', 200, health.body);

    const ready = await call('GET', '/ready');
    expect(ready.status).toBe(200);
    validateAgainstDoc('/ready', 'get', 200, ready.body);

    const stats = await call('GET', '/admin/stats');
    expect(stats.status).toBe(200);
    validateAgainstDoc('/admin/stats', 'get', 200, stats.body);

    const noJanitor = await call('POST', '/admin/cleanup');
    expect(noJanitor.status).toBe(503);
    validateAgainstDoc('/admin/cleanup', 'post', 503, noJanitor.body);
  });

  it('when a response breaks its documented schema, then the check fails (the validation is not vacuous)', async () => {
    const job = await postJson('/download', { url: `https://example.com/vacuous-${Date.now()}.mp4` });
    expect(() => validateAgainstDoc('/download', 'post', 202, { ...job.body, status: 'exploded' })).toThrow();
    expect(() => validateAgainstDoc('/download', 'post', 202, { ...job.body, links: undefined })).toThrow();
    expect(() => validateAgainstDoc('/jobs/{id}', 'get', 404, { message: 'no envelope' })).toThrow();
    // A result is one of the two documented shapes, not any object.
    const completed = { ...job.body, status: 'completed', progress: 100 };
    expect(() =>
      validateAgainstDoc('/jobs/{id}', 'get', 200, { ...completed, result: { file: 'x.mp4' } }),
    ).toThrow();
  });
});

describe('the /docs page', () => {
  it('when /docs is fetched, then it is HTML with its own script policy whose local assets all answer 200', async () => {
    const res = await fetch(`${gateway.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await res.text();
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets).toEqual(
      expect.arrayContaining(['/docs/swagger-ui-bundle.js', '/docs/swagger-ui.css', '/docs/init.js']),
    );
    for (const asset of assets) {
      expect(asset.startsWith('/'), `${asset} is local`).toBe(true);
      const got = await fetch(`${gateway.url}${asset}`);
      expect(got.status, asset).toBe(200);
      expect((await got.arrayBuffer()).byteLength, asset).toBeGreaterThan(100);
    }
    const init = await (await fetch(`${gateway.url}/docs/init.js`)).text();
    expect(init).toContain("url: '/openapi.json'");
    expect((await fetch(`${gateway.url}/docs/index.html`)).status).toBe(404);
  });
});

describe('failure codes in the document', () => {
  it('when the document is read, then DownloadFailureCode lists every code of the table with its retry rule', () => {
    const schema = doc.components.schemas.DownloadFailureCode;
    expect(schema.enum).toEqual(FAILURE_KINDS.map((k) => k.code));
    for (const k of FAILURE_KINDS)
      expect(schema.description).toContain(`\`${k.code}\` (${k.final ? 'final' : 'retried with backoff'})`);
  });
});
