import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  MAX_CALLBACK_URLS,
  addCallback,
  badRequest,
  endedJobEvent,
  errorMessage,
  queueWebhooks,
  unavailable,
  type JobRecord,
} from '@media-jobs/libs';
import type { GatewayDeps } from './deps.js';

/**
 * Adds a submission's callback URL to the job's current generation. The same job submitted
 * again with another callback_url keeps its id and collects both URLs (up to 20): each is
 * called with the job's `completed` or `failed` event. When the job has already ended (a
 * cache hit on a completed job), no event is coming, so this URL is sent the stored one now.
 */
export async function registerCallback(
  deps: Pick<GatewayDeps, 'redis' | 'store' | 'nc'>,
  record: JobRecord,
  url: URL,
): Promise<void> {
  const added = await addCallback(deps.redis, record.kind, record.id, record.created_at, url.href);
  if (!added.added) {
    if (added.reason === 'full')
      throw badRequest(
        'webhook.too_many_callbacks',
        `job ${record.id} already has ${MAX_CALLBACK_URLS} callback URLs; no more can be added`,
      );
    return; // Deleted or replaced a moment ago: the answer still shows the job as it was.
  }
  if (added.status !== 'completed' && added.status !== 'failed') return;
  try {
    const current = await deps.store.get(record.kind, record.id);
    if (!current || current.record.created_at !== record.created_at) return;
    const event = await endedJobEvent(await jetstreamManager(deps.nc), current.record);
    if (!event) return;
    const job = {
      kind: record.kind,
      id: record.id,
      createdAt: record.created_at,
      generation: record.created_at,
    };
    await queueWebhooks(jetstream(deps.nc, { timeout: 3000 }), job, event.type, event.body, [
      { url: url.href, source: 'callback' },
    ]);
  } catch (err) {
    throw unavailable('webhook.unavailable', `cannot queue the webhook: ${errorMessage(err)}`, err);
  }
}
