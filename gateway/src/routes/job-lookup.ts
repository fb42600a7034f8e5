import type { Request } from 'express';
import { AppError, badRequest, isValidJobId, type StoredJob } from '@media-jobs/libs';
import type { GatewayDeps } from '../deps.js';

/** The `:id` path parameter, or a 400 before any lookup when it has other characters than ids have. */
export function jobIdParam(req: Request): string {
  const id = req.params.id;
  if (typeof id !== 'string' || !isValidJobId(id)) {
    throw badRequest('job.invalid_id', 'a job id contains only letters, digits, "_" and "-" (at most 128)');
  }
  return id;
}

/** The job, or 410 when it expired and awaits the sweep, or 404. */
export async function requireJob(
  deps: Pick<GatewayDeps, 'store'>,
  id: string,
  find: (id: string) => Promise<StoredJob | null> = (i) => deps.store.find(i),
): Promise<StoredJob> {
  const job = await find(id);
  if (job) return job;
  if (await deps.store.isExpired(id)) {
    throw new AppError('job.expired', `job ${id} has expired; submit it again`, { status: 410 });
  }
  throw new AppError('job.not_found', `no job with id ${id}`, { status: 404 });
}
