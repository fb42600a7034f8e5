import { rm } from 'node:fs/promises';
import { Router, type RequestHandler } from 'express';
import multer from 'multer';
import {
  badRequest,
  normalizeJobId,
  operationsSlug,
  retainUpload,
  type NormalizeRequest,
} from '@media-jobs/libs';
import { assertPublicCallback, parseCallbackUrl } from '../callback-url.js';
import type { GatewayDeps } from '../deps.js';
import { submitJob } from '../submit.js';
import { parseNormalizeForm } from '../upload-form.js';
import { hashingStorage, storeUpload, uploadTooLarge, type ReceivedFile } from '../upload-storage.js';

/** multer with our streaming, hashing storage; its size error becomes our 413 with the limit in it. */
function receiveUpload(deps: GatewayDeps): RequestHandler {
  const max = deps.config.maxUploadBytes;
  const upload = multer({
    storage: hashingStorage(deps.storage, max),
    limits: { fileSize: max, files: 1, fields: 32, fieldSize: 1024, fieldNameSize: 64, parts: 40 },
    defParamCharset: 'utf8',
  }).single('file');
  return (req, res, next) => {
    upload(req, res, (err: unknown) => {
      const code = (err as { code?: string } | undefined)?.code;
      if (code === 'LIMIT_FILE_SIZE') return next(uploadTooLarge(max));
      next(err);
    });
  };
}

/**
 * `POST /normalize` (multipart: `file`, `operations[]` or boolean fields, `format`,
 * `target_lufs`, `callback_url`): 202 and the new job, or 200 and the live one (`cache_hit: true`).
 */
export function normalizeRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.post('/normalize', receiveUpload(deps), async (req, res) => {
    const file = req.file as (Express.Multer.File & ReceivedFile) | undefined;
    try {
      if (!file)
        throw badRequest(
          'normalize.missing_file',
          'send the audio or video as multipart/form-data field "file"',
        );
      if (file.size === 0) throw badRequest('normalize.empty_file', 'the uploaded file is empty');
      const form = parseNormalizeForm(req.body, deps.config.normalizeTargetLufs);
      const fields = (req.body ?? {}) as Record<string, unknown>;
      const callbackUrl = parseCallbackUrl(fields['callback_url']);
      if (callbackUrl) await assertPublicCallback(callbackUrl, deps.config.allowPrivateUrls);
      const slug = operationsSlug({
        operations: form.operations,
        format: form.format,
        targetLufs: form.targetLufs ?? deps.config.normalizeTargetLufs,
        defaultTargetLufs: deps.config.normalizeTargetLufs,
      });
      const id = normalizeJobId(file.sha256, slug);
      const request: NormalizeRequest = {
        upload: {
          sha256: file.sha256,
          ext: file.ext,
          size: file.size,
          original_name: file.originalname.slice(0, 255) || null,
        },
        operations: form.operations,
        format: form.format,
        target_lufs: form.targetLufs,
      };
      // The upload goes into uploads/ only after this job holds a reference to it, so no sweep
      // or orphan pass can remove it in between (a live duplicate needs no new copy at all).
      const submission = await submitJob(deps, 'normalize', id, request, {
        callbackUrl,
        onCreated: async () => {
          await retainUpload(deps.redis, id);
          await storeUpload(deps.files, file);
        },
      });
      res.status(submission.status).json(submission.body);
    } finally {
      // Stored or rejected, nothing of this request stays in tmp/ (a no-op once renamed).
      if (file?.path) await rm(file.path, { force: true });
    }
  });
  return router;
}
