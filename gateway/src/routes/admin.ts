import { createHash, timingSafeEqual } from 'node:crypto';
import express, { Router, type RequestHandler } from 'express';
import {
  AppError,
  badRequest,
  EXPIRY_INDEX,
  JANITOR_SUBJECTS,
  JOB_KINDS,
  JOB_STATUSES,
  LAST_SWEEP_KEY,
  MAX_COOKIES_BYTES,
  cookiesState,
  deleteCookies,
  putCookies,
  configDisagreements,
  errorMessage,
  jobRecordSchema,
  listServiceConfigs,
  parseJobKey,
  type Config,
  type JobKind,
  type JobStatus,
  type Redis,
} from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';
import { storageUsage } from '../disk-usage.js';

/** Most records `GET /admin/stats` reads to count jobs by status; past it the counts say `complete: false`. */
const COUNT_LIMIT = 100_000;
/** A sweep may wait up to 20 s for another replica's, then run: the gateway waits longer. */
const CLEANUP_TIMEOUT_MS = 60_000;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4 === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * Who may call `/admin/*`: with ADMIN_TOKEN set, whoever sends it as a Bearer token
 * (compared in constant time, on digests so the length leaks nothing either); without it,
 * loopback clients only. Returns the error to answer with, or null.
 */
export function adminAccessError(
  config: Pick<Config, 'adminToken'>,
  remoteAddress: string | undefined,
  authorization: string | undefined,
): AppError | null {
  if (config.adminToken) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    if (match?.[1] && timingSafeEqual(digest(match[1].trim()), digest(config.adminToken))) return null;
    return new AppError('admin.unauthorized', 'admin endpoints need Authorization: Bearer <ADMIN_TOKEN>', {
      status: 401,
    });
  }
  if (isLoopback(remoteAddress)) return null;
  return new AppError(
    'admin.forbidden',
    'admin endpoints answer loopback clients only while ADMIN_TOKEN is unset',
    { status: 403 },
  );
}

function adminGuard(config: Config): RequestHandler {
  return (req, res, next) => {
    const error = adminAccessError(config, req.socket.remoteAddress, req.get('authorization'));
    if (error?.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="admin"');
    next(error ?? undefined);
  };
}

/** `GET /admin/stats` and `POST /admin/cleanup`. */
export function adminRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.use('/admin', adminGuard(deps.config));
  router.get('/admin/stats', async (_req, res) => {
    res.json(await collectStats(deps));
  });
  router.post('/admin/cleanup', async (_req, res) => {
    res.json(await requestCleanup(deps));
  });
  // yt-dlp's cookies for every worker (kept in Redis); the answer says what is stored, never the content.
  router.put(
    '/admin/cookies',
    express.text({ type: () => true, limit: MAX_COOKIES_BYTES, defaultCharset: 'utf-8' }),
    async (req, res) => {
      const body: unknown = req.body;
      if (typeof body !== 'string' || body.length === 0)
        throw badRequest('cookies.missing', 'send a Netscape cookies.txt as the request body (text/plain)');
      const state = await putCookies(deps.redis, body);
      deps.logger.info({ bytes: state.bytes, cookies: state.cookies }, 'yt-dlp cookies replaced');
      res.json(state);
    },
  );
  router.delete('/admin/cookies', async (_req, res) => {
    const deleted = await deleteCookies(deps.redis);
    res.json({ deleted, ...(await cookiesState(deps.redis, deps.config)) });
  });
  return router;
}

async function collectStats(deps: GatewayDeps): Promise<Record<string, unknown>> {
  const now = Date.now();
  const [jobs, cache, disk, lastSweep, services, cookies] = await Promise.all([
    countJobs(deps.redis, now),
    deps.store.cacheStats(),
    diskUsage(deps),
    deps.redis.get(LAST_SWEEP_KEY),
    listServiceConfigs(deps.redis, now),
    cookiesState(deps.redis, deps.config),
  ]);
  return {
    jobs,
    cache,
    disk,
    last_sweep: lastSweep ? (JSON.parse(lastSweep) as unknown) : null,
    services: services.map(({ service, instance, at, config }) => ({
      service,
      instance,
      announced_at: at,
      config,
    })),
    disagreements: configDisagreements(services),
    ytdlp_cookies: cookies,
  };
}

type Counts = Record<JobKind, Record<JobStatus | 'total', number>>;

/** Live jobs by kind and status, read from the index in batches; expired ones still awaiting the sweep apart. */
async function countJobs(
  redis: Redis,
  now: number,
): Promise<{ by_kind: Counts; awaiting_sweep: number; complete: boolean }> {
  const byKind = Object.fromEntries(
    JOB_KINDS.map((k) => [k, Object.fromEntries([...JOB_STATUSES, 'total'].map((s) => [s, 0]))]),
  ) as Counts;
  let offset = 0;
  for (; offset < COUNT_LIMIT; offset += 1000) {
    const keys = await redis.zrangebyscore(EXPIRY_INDEX, `(${now}`, '+inf', 'LIMIT', offset, 1000);
    if (keys.length === 0) break;
    const raws = await redis.mget(...keys);
    raws.forEach((raw, i) => {
      const kind = parseJobKey(keys[i] as string)?.kind;
      const parsed = raw && kind ? jobRecordSchema.safeParse(safeJson(raw)) : null;
      if (!kind || !parsed?.success) return;
      byKind[kind][parsed.data.status] += 1;
      byKind[kind].total += 1;
    });
    if (keys.length < 1000) break;
  }
  const awaiting = await redis.zcount(EXPIRY_INDEX, '-inf', now);
  return { by_kind: byKind, awaiting_sweep: awaiting, complete: offset < COUNT_LIMIT };
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

/** Files and bytes per folder under DATA_DIR, or per bucket (streamed: a large one costs time, not memory). */
function diskUsage(deps: GatewayDeps): Promise<Record<string, { files: number; bytes: number }>> {
  return storageUsage(deps.files, deps.storage);
}

/** Asks a janitor over NATS (`janitor.cleanup`) to sweep now; 503 when none answers. */
async function requestCleanup(deps: GatewayDeps): Promise<unknown> {
  let reply;
  try {
    reply = await deps.nc.request(JANITOR_SUBJECTS.cleanupRequest, JSON.stringify({ trigger: 'admin' }), {
      timeout: CLEANUP_TIMEOUT_MS,
    });
  } catch (err) {
    const noJanitor =
      /no responders/i.test(errorMessage(err)) ||
      (err as { isNoResponders?: () => boolean }).isNoResponders?.() === true;
    throw new AppError(
      noJanitor ? 'janitor.unavailable' : 'janitor.timeout',
      noJanitor
        ? 'no janitor is running to sweep'
        : `the janitor did not answer within ${CLEANUP_TIMEOUT_MS / 1000} s`,
      { status: 503, retryable: true, cause: err },
    );
  }
  const body = reply.json<{ ok: boolean; summary?: { skipped?: boolean }; error?: { message: string } }>();
  if (!body.ok)
    throw new AppError('janitor.sweep_failed', body.error?.message ?? 'the sweep failed', {
      status: 503,
      retryable: true,
    });
  if (body.summary?.skipped) {
    throw new AppError('janitor.busy', 'another janitor has been sweeping for a while; try again later', {
      status: 409,
      details: body.summary,
    });
  }
  return body.summary;
}
