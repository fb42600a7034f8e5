import { z } from 'zod';

export const JOB_KINDS = ['download', 'normalize'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const JOB_STATUSES = ['queued', 'processing', 'completed', 'failed'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Ids contain only these characters; anything else in a path is a 400 before any lookup. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export const jobErrorSchema = z.object({ code: z.string(), message: z.string() });
export type JobError = z.infer<typeof jobErrorSchema>;

/** One attempt at delivering a job's webhook (its `completed` or `failed` event) to one URL. */
export const webhookAttemptSchema = z.object({
  /** The receiver, without any user name or password. */
  url: z.string(),
  /** The event delivered: `completed` or `failed`. */
  event: z.string(),
  /** The `webhook-id` header: the same for every attempt (and every URL) of one event. */
  webhook_id: z.string(),
  /** 1 on the first attempt. */
  attempt: z.number().int().min(1),
  /** When the attempt started (ISO 8601). */
  at: z.iso.datetime(),
  /** The receiver's HTTP status; null when none came (refused, unreachable, timed out). */
  status: z.number().int().nullable(),
  duration_ms: z.number().int().min(0),
  /** Why the attempt failed; absent on a 2xx. */
  error: z.string().optional(),
  /** `delivered` (2xx), `retrying` (another attempt at `next_attempt_at`) or `gave_up`. */
  outcome: z.enum(['delivered', 'retrying', 'gave_up']),
  next_attempt_at: z.iso.datetime().optional(),
});
export type WebhookAttempt = z.infer<typeof webhookAttemptSchema>;

export const jobRecordSchema = z.object({
  id: z.string().regex(JOB_ID_PATTERN),
  kind: z.enum(JOB_KINDS),
  status: z.enum(JOB_STATUSES),
  progress: z.number().min(0).max(100),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  expires_at: z.iso.datetime(),
  /** What the user asked for (download: url and quality; normalize: upload, operations, format). */
  request: z.record(z.string(), z.unknown()),
  /** Deliveries that started work on this job (1 on the first run). */
  attempts: z.number().int().min(0),
  /** Typed by kind in `job-result.ts`; kept loose here so a record of an older shape still reads. */
  result: z.record(z.string(), z.unknown()).optional(),
  error: jobErrorSchema.optional(),
  /**
   * Webhook attempts of this job, oldest first (the last 50). Written only by the webhook
   * sender, after the job ended, as the record's last field (see `webhook-store.ts`).
   */
  webhooks: z.array(webhookAttemptSchema).optional(),
});
export type JobRecord = z.infer<typeof jobRecordSchema>;

/** Redis key of a job record: `job:<id>` for downloads, `audio_job:<id>` for normalize jobs. */
export function jobKey(kind: JobKind, id: string): string {
  return kind === 'download' ? `job:${id}` : `audio_job:${id}`;
}

/** The inverse of `jobKey`, for the janitor, which reads keys from the expiry index. */
export function parseJobKey(key: string): { kind: JobKind; id: string } | null {
  if (key.startsWith('job:')) return { kind: 'download', id: key.slice(4) };
  if (key.startsWith('audio_job:')) return { kind: 'normalize', id: key.slice(10) };
  return null;
}

export function isValidJobId(id: string): boolean {
  return JOB_ID_PATTERN.test(id);
}
