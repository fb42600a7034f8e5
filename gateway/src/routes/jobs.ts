import { basename, join } from 'node:path';
import { Router } from 'express';
import { AppError, badRequest, deleteJob, resultBucket } from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';
import { jobView } from '../job-view.js';
import { takePendingLimit } from '../rate-limit.js';
import { sendStored } from '../stored-file.js';
import { listQuerySchema } from '../schemas.js';
import { jobIdParam, requireJob } from './job-lookup.js';

const RESULT_FILE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9]{1,8}$/;

/** `GET /jobs`, `GET /jobs/:id`, `GET /jobs/:id/file`, `DELETE /jobs/:id`. */
export function jobRoutes(deps: GatewayDeps): Router {
  const router = Router();

  router.get('/jobs', async (req, res) => {
    const parsed = listQuerySchema.safeParse(req.query);
    if (!parsed.success)
      throw badRequest('request.invalid_query', parsed.error.issues[0]?.message ?? 'invalid query');
    const page = await deps.store.list(parsed.data);
    res.json({ jobs: page.jobs.map((j) => jobView(j)), next_cursor: page.next_cursor });
  });

  router.get('/jobs/:id', async (req, res) => {
    const id = jobIdParam(req);
    // The rate limit's count rides on the record's read: one round trip.
    const limit = takePendingLimit(req, res);
    const find = limit
      ? async (i: string) => {
          const read = await deps.store.findBudgeted(i, limit.budget);
          limit.settle(read.hits, read.ttlMs);
          return read.value ?? null;
        }
      : undefined;
    const job = await requireJob(deps, id, find);
    res.json(jobView(job.record));
  });

  router.get('/jobs/:id/file', async (req, res, next) => {
    const { record } = await requireJob(deps, jobIdParam(req));
    if (record.status !== 'completed') {
      throw new AppError(
        'job.not_ready',
        `job ${record.id} is ${record.status}; the file exists once it is completed`,
        {
          status: 409,
          details: { status: record.status, progress: record.progress },
        },
      );
    }
    const file = typeof record.result?.file === 'string' ? basename(record.result.file) : '';
    if (!RESULT_FILE.test(file) || !file.startsWith(`${record.id}.`)) {
      throw new AppError('job.file_missing', `job ${record.id} has no result file`, { status: 404 });
    }
    const missing = () =>
      new AppError('job.file_missing', `the file of job ${record.id} is gone`, { status: 404 });
    const bucket = resultBucket(record.kind);
    const dir = deps.files.localPath(bucket, '');
    if (dir === null) {
      await sendStored(req, res, deps.files, { bucket, name: file, missing });
      return;
    }
    // send streams the file with Range, ETag and Last-Modified support.
    res.sendFile(
      join(dir, file),
      { dotfiles: 'deny', headers: { 'Content-Disposition': `attachment; filename="${file}"` } },
      (err?: Error & { code?: string }) => {
        if (!err) return;
        if (err.code === 'ENOENT') next(missing());
        else if (!res.headersSent) next(err);
      },
    );
  });

  router.delete('/jobs/:id', async (req, res) => {
    const { record } = await requireJob(deps, jobIdParam(req));
    // Record and files go under the key's tombstone, so a new identical submission waits
    // until the files are gone instead of completing into a file this deletion then removes.
    const deletion = deps.hooks?.deletion;
    const freed = await deleteJob(deps.redis, deps.files, record.kind, record.id, deletion);
    if (!freed) throw new AppError('job.not_found', `no job with id ${record.id}`, { status: 404 });
    const files = freed.removed.map((p) => basename(p));
    deps.events.job(record.kind, record.id, 'deleted', { files, bytes_freed: freed.bytes });
    res.json({ id: record.id, kind: record.kind, deleted: true, files, bytes_freed: freed.bytes });
  });

  return router;
}
