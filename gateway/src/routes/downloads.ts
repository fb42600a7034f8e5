import express, { Router } from 'express';
import { badRequest, resolveMediaTarget } from '@media-jobs/libs';
import { assertPublicCallback, parseCallbackUrl } from '../callback-url.js';
import type { GatewayDeps } from '../deps.js';
import { downloadBodySchema } from '../schemas.js';
import { submitJob } from '../submit.js';
import { assertPublicUrl, parseSubmittedUrl } from '../url-policy.js';

/** `POST /download {url, quality, callback_url?}`: 202 and the new job, or 200 and the live one (`cache_hit: true`). */
export function downloadRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.post('/download', express.json({ limit: '16kb', strict: true }), async (req, res) => {
    const parsed = downloadBodySchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw badRequest('request.invalid', issue?.message ?? 'invalid body', {
        issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      });
    }
    const { quality } = parsed.data;
    const url = parseSubmittedUrl(parsed.data.url);
    // yt-dlp's rules decide the media: a playlist or channel is a 400 here, not a job.
    const target = resolveMediaTarget(url);
    const id = `${target.mediaId}_${quality}`;
    // Checked on every submission, a cache hit included: the URL is this caller's own.
    const callbackUrl = parseCallbackUrl(parsed.data.callback_url);
    if (callbackUrl) await assertPublicCallback(callbackUrl, deps.config.allowPrivateUrls);
    // A live job was checked when it was created: only a new one needs the DNS look-up. A
    // YouTube id is fetched from www.youtube.com, whatever host the user's URL named.
    const checkHost = !deps.config.allowPrivateUrls && target.source === 'url';
    const beforeCreate = checkHost ? () => assertPublicUrl(url) : undefined;
    const submission = await submitJob(
      deps,
      'download',
      id,
      { url: url.href, quality },
      {
        beforeCreate,
        callbackUrl,
      },
    );
    res.status(submission.status).json(submission.body);
  });
  return router;
}
