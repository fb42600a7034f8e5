import { Router } from 'express';
import { badRequest, resolveMediaTarget, type MediaTarget } from '@media-jobs/libs';
import { assertPublicCallback, parseCallbackUrl } from '../callback-url.js';
import type { GatewayDeps } from '../deps.js';
import { jsonBody } from '../json-body.js';
import { settlePendingLimit, takePendingLimit } from '../rate-limit.js';
import { downloadBodySchema } from '../schemas.js';
import { submitJob } from '../submit.js';
import { assertPublicUrl, parseSubmittedUrl } from '../url-policy.js';

/** What a submitted URL resolves to: its normalised href and the media it is. */
interface Resolved {
  href: string;
  mediaId: string;
  source: MediaTarget['source'];
}

/**
 * URLs resolved lately. Parsing and yt-dlp's YouTube rules are pure functions of the text, so
 * a repeated submission (a cache hit, most often) need not run them again; refused URLs are
 * not kept. Bounded: cleared when full.
 */
const RESOLVED_MAX = 1024;
const resolved = new Map<string, Resolved>();

/** `parseSubmittedUrl` then `resolveMediaTarget`; throws their 400s. */
function resolveSubmitted(raw: string): Resolved {
  let known = resolved.get(raw);
  if (!known) {
    const url = parseSubmittedUrl(raw);
    // yt-dlp's rules decide the media: a playlist or channel is a 400 here, not a job.
    const target = resolveMediaTarget(url);
    known = { href: url.href, mediaId: target.mediaId, source: target.source };
    if (resolved.size >= RESOLVED_MAX) resolved.clear();
    resolved.set(raw, known);
  }
  return known;
}

/** `POST /download {url, quality, callback_url?}`: 202 and the new job, or 200 and the live one (`cache_hit: true`). */
export function downloadRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.post('/download', jsonBody(16 * 1024), async (req, res) => {
    const parsed = downloadBodySchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw badRequest('request.invalid', issue?.message ?? 'invalid body', {
        issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      });
    }
    const { quality } = parsed.data;
    const target = resolveSubmitted(parsed.data.url);
    const id = `${target.mediaId}_${quality}`;
    // Checked on every submission, a cache hit included: the URL is this caller's own.
    const callbackUrl = parseCallbackUrl(parsed.data.callback_url);
    if (callbackUrl) {
      // The limit first (its own round trip): a refused client costs no DNS look-up.
      await settlePendingLimit(req, res);
      await assertPublicCallback(callbackUrl, deps.config.allowPrivateUrls);
    }
    // A live job was checked when it was created: only a new one needs the DNS look-up. A
    // YouTube id is fetched from www.youtube.com, whatever host the user's URL named.
    const checkHost = !deps.config.allowPrivateUrls && target.source === 'url';
    const beforeCreate = checkHost ? () => assertPublicUrl(new URL(target.href)) : undefined;
    // The rate limit's count rides on the cache peek: one round trip for a hit.
    const limit = takePendingLimit(req, res);
    const peek = limit
      ? async () => {
          const read = await deps.store.peekBudgeted('download', id, limit.budget);
          limit.settle(read.hits, read.ttlMs);
          return read.value ?? null;
        }
      : undefined;
    const submission = await submitJob(
      deps,
      'download',
      id,
      { url: target.href, quality },
      { beforeCreate, callbackUrl, peek },
    );
    res.status(submission.status).json(submission.body);
  });
  return router;
}
