import { createHash } from 'node:crypto';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import {
  connectNats,
  createStorage,
  JobStore,
  retainUpload,
  type Config,
  type JobKind,
  type NatsConnection,
  type Redis,
  type Storage,
} from '@media-jobs/libs';

export const HOUR = 3_600_000;

/** A pino logger whose JSON lines the test can read. */
export function captureLogger(level = 'debug'): {
  logger: Logger;
  lines: () => { level: string; msg: string }[];
} {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = pino({ level, formatters: { level: (label) => ({ level: label }) } }, stream);
  return { logger, lines: () => out.map((l) => JSON.parse(l) as { level: string; msg: string }) };
}

/** A store whose clock is `ageMs` in the past, so its jobs are that much older. */
export function storeAged(redis: Redis, config: Config, ageMs: number): JobStore {
  return new JobStore({ redis, ttlMs: config.cacheTtlMs, now: () => Date.now() - ageMs });
}

/** A normalize job id over an upload whose sha256 is that of `seed`: `<hex16>_<ops>`. */
export function normalizeIdFor(seed: string, ops: string): { id: string; sha256: string } {
  const sha256 = createHash('sha256').update(seed).digest('hex');
  return { id: `${sha256.slice(0, 16)}_${ops}`, sha256 };
}

export async function writeData(path: string, bytes: number, ageMs = 0): Promise<string> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, Buffer.alloc(bytes, 7));
  if (ageMs > 0) {
    const t = new Date(Date.now() - ageMs);
    await utimes(path, t, t);
  }
  return path;
}

/** Claims a job through the real store and writes its result (and upload) as the workers would. */
export async function seedJob(
  store: JobStore,
  redis: Redis,
  storage: Storage,
  kind: JobKind,
  id: string,
  opts: { bytes?: number; sha256?: string } = {},
): Promise<string[]> {
  await store.claim(kind, id, {});
  const bytes = opts.bytes ?? 1000;
  if (kind === 'download') return [await writeData(join(storage.downloads, `${id}.mp4`), bytes)];
  await retainUpload(redis, id);
  const files = [await writeData(join(storage.normalized, `${id}.wav`), bytes)];
  if (opts.sha256) files.push(await writeData(join(storage.uploads, `${opts.sha256}.wav`), bytes));
  return files;
}

export function storageOf(config: Config): Storage {
  return createStorage(config.dataDir);
}

/** Collects the JSON payloads published on a subject (core subscription). */
export async function collect(
  config: Config,
  subject: string,
): Promise<{ nc: NatsConnection; events: unknown[] }> {
  const nc = await connectNats(config, 'test-collector');
  const events: unknown[] = [];
  nc.subscribe(subject, { callback: (_err, msg) => void events.push(msg.json()) });
  await nc.flush();
  return { nc, events };
}
