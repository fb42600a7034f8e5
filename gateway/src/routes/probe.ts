import { Router } from 'express';
import {
  AppError,
  badRequest,
  errorMessage,
  probeSource,
  resolveMediaTarget,
  type SourceInfo,
} from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';
import { probeQuerySchema } from '../schemas.js';
import { assertPublicUrl, parseSubmittedUrl } from '../url-policy.js';

/** A probe is an interactive question: yt-dlp gets this long, a download gets its own limit. */
export const PROBE_TIMEOUT_MS = 20_000;
/** yt-dlp runs one gateway lets run at once; more is a 503 with Retry-After. */
export const MAX_CONCURRENT_PROBES = 4;

const NO_SOURCE: Omit<SourceInfo, 'qualities'> = { title: null, duration_s: null, extractor: null };

/**
 * `GET /probe?url=&quality=`: what `POST /download` with the same fields would do, without a
 * job: the same checks and 400s, the media id and job id, whether a live job has that id,
 * and what `yt-dlp --dump-json` says of the source (behind the egress proxy, like a download).
 */
export function probeRoutes(deps: GatewayDeps): Router {
  const router = Router();
  let running = 0;
  router.get('/probe', async (req, res) => {
    const parsed = probeQuerySchema.safeParse(req.query);
    if (!parsed.success)
      throw badRequest('request.invalid_query', parsed.error.issues[0]?.message ?? 'invalid query');
    const { quality } = parsed.data;
    const url = parseSubmittedUrl(parsed.data.url);
    const target = resolveMediaTarget(url);
    const jobId = `${target.mediaId}_${quality}`;
    if (!deps.config.allowPrivateUrls && target.source === 'url') await assertPublicUrl(url);
    // `get`, not the submission's `peek`: a probe is no cache hit.
    const job = await deps.store.get('download', jobId);
    const status = job?.record.status ?? null;

    if (running >= MAX_CONCURRENT_PROBES)
      throw new AppError('probe.busy', 'too many probes are running; try again shortly', {
        status: 503,
        retryable: true,
      });
    running += 1;
    const stop = new AbortController();
    // A client that gives up stops its yt-dlp.
    res.on('close', () => stop.abort());
    let info: SourceInfo = { ...NO_SOURCE, qualities: [] };
    let sourceError: { code: string; message: string } | null = null;
    try {
      info = await probeSource({
        ytDlpPath: deps.config.ytDlpPath,
        url: target.fetchUrl,
        timeoutMs: PROBE_TIMEOUT_MS,
        egress: deps.config.allowPrivateUrls ? null : { logger: deps.logger },
        ...(deps.config.ytDlpProxy ? { upstreamProxy: deps.config.ytDlpProxy } : {}),
        cookies: {
          redis: deps.redis,
          ytDlpCookiesFile: deps.config.ytDlpCookiesFile,
          tmpDir: deps.storage.tmp,
        },
        signal: stop.signal,
      });
    } catch (err) {
      // What a submission would end with: the job would be accepted and fail with this.
      sourceError =
        err instanceof AppError
          ? { code: err.code, message: err.message }
          : { code: 'probe.failed', message: errorMessage(err) };
    } finally {
      running -= 1;
    }
    res.json({
      url: url.href,
      quality,
      media_id: target.mediaId,
      job_id: jobId,
      source: target.source,
      fetch_url: target.fetchUrl,
      cached: status === 'queued' || status === 'processing' || status === 'completed',
      status,
      ...info,
      source_error: sourceError,
    });
  });
  return router;
}
