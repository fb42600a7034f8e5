import { z } from 'zod';
import {
  DEFAULT_16K_FORMAT,
  DEFAULT_OUTPUT_FORMAT,
  JOB_KINDS,
  JOB_STATUSES,
  OPERATIONS,
  OUTPUT_FORMATS,
  QUALITIES,
  TARGET_LUFS_RANGE,
  janitorSweepEvent,
  jobCacheHitEvent,
  jobCompletedEvent,
  jobDeletedEvent,
  jobFailedEvent,
  jobProgressEvent,
  jobQueuedEvent,
  jobRecordSchema,
  jobResultSchema,
  jobStartedEvent,
} from '@media-jobs/libs';
import { MAX_URL_LENGTH } from './url-policy.js';

/**
 * The zod schemas of the HTTP API, in one place: the routes parse requests with them and
 * `openapi.ts` turns the same objects into the OpenAPI document, so the two cannot drift.
 */

const CALLBACK_URL_DESCRIPTION =
  "http(s) URL POSTed the job's `completed` or `failed` event (schema `WebhookPayload`, see `webhooks` in this document), signed the Standard Webhooks way. Not part of the job id: submitting the same job again with another callback_url adds that URL to the live job (up to 20); a job that already completed is sent its event at once. Loopback, private and link-local hosts are a 400 (`webhook.private_callback_url`) unless ALLOW_PRIVATE_URLS. Shown in the record's `webhooks` attempts, so put no secret in it: verify the signature instead";

/** `POST /download` body. */
export const downloadBodySchema = z.object(
  {
    url: z
      .string({ error: 'url is required and must be a string' })
      .max(MAX_URL_LENGTH, `url must be at most ${MAX_URL_LENGTH} characters`)
      .describe(
        'http(s) URL of one video page or media file, without user name or password. A URL yt-dlp takes as one YouTube video (every form its YouTube extractor accepts) is that video: one job per video. A playlist, channel, search or feed URL is a 400 (`url.playlist`)',
      ),
    quality: z
      .enum(QUALITIES, { error: `quality must be one of ${QUALITIES.join(', ')}` })
      .default('best')
      .describe('Upper bound on the shorter side of the video, or `audio` for the audio track only'),
    callback_url: z
      .string({ error: 'callback_url must be a string' })
      .max(MAX_URL_LENGTH, `callback_url must be at most ${MAX_URL_LENGTH} characters`)
      .optional()
      .describe(CALLBACK_URL_DESCRIPTION),
  },
  { error: 'the body must be a JSON object {"url", "quality", "callback_url"?}' },
);

const urlField = (what: string) =>
  z
    .string({ error: 'url is required and must be a string' })
    .max(MAX_URL_LENGTH, `url must be at most ${MAX_URL_LENGTH} characters`)
    .describe(what);
const qualityField = z
  .enum(QUALITIES, { error: `quality must be one of ${QUALITIES.join(', ')}` })
  .default('best');

/** `GET /probe` query: the fields of `POST /download`. */
export const probeQuerySchema = z.object({
  url: urlField('The URL a `POST /download` would carry'),
  quality: qualityField.describe('The quality a `POST /download` would ask for'),
});

const offeredQualitySchema = z.object({
  quality: z.enum(QUALITIES),
  width: z
    .number()
    .int()
    .min(0)
    .nullable()
    .describe('Width of the rendition it selects; null when unknown or audio'),
  height: z
    .number()
    .int()
    .min(0)
    .nullable()
    .describe('Height of the rendition it selects; null when unknown or audio'),
});

/** `GET /probe` answer: what a submission would do, and what the source offers. */
export const probeResultSchema = z
  .object({
    url: z.string().describe('The URL as parsed'),
    quality: z.enum(QUALITIES),
    media_id: z.string().describe('The YouTube video id, or `u` + 16 hex of the canonical URL'),
    job_id: z.string().describe('`<media_id>_<quality>`: the job a `POST /download` would give'),
    source: z
      .enum(['youtube', 'url'])
      .describe('`youtube` when the URL is one YouTube video by yt-dlp rules'),
    fetch_url: z
      .string()
      .describe("What yt-dlp is given: a YouTube id's canonical watch URL, or the canonical URL"),
    cached: z
      .boolean()
      .describe('True when a live job has this id: a `POST /download` answers 200 with it (`cache_hit`)'),
    status: z.enum(JOB_STATUSES).nullable().describe('Status of the job with this id, if there is one'),
    title: z.string().nullable(),
    duration_s: z.number().min(0).nullable(),
    extractor: z.string().nullable().describe("yt-dlp's extractor, e.g. `youtube`, `generic`"),
    qualities: z
      .array(offeredQualitySchema)
      .describe(
        'Qualities worth asking for, each with the rendition it selects: `best`, one bound per rendition, `worst`, and `audio` when there is audio',
      ),
    source_error: z
      .object({ code: z.string(), message: z.string() })
      .nullable()
      .describe(
        'Why yt-dlp could not read the source (a submission would be accepted and fail with it); null when it could',
      ),
  })
  .describe('Result of GET /probe');

/** `GET /jobs` query. */
export const listQuerySchema = z.object({
  kind: z.enum(JOB_KINDS, { error: `kind must be one of ${JOB_KINDS.join(', ')}` }).optional(),
  status: z.enum(JOB_STATUSES, { error: `status must be one of ${JOB_STATUSES.join(', ')}` }).optional(),
  limit: z.coerce
    .number({ error: 'limit must be a number' })
    .int('limit must be an integer')
    .min(1, 'limit must be from 1 to 100')
    .max(100, 'limit must be from 1 to 100')
    .default(20),
  cursor: z
    .string()
    .regex(/^\d{1,15}:(job|audio_job):[A-Za-z0-9_-]{1,200}$/, 'cursor is not one this API returned')
    .optional()
    .describe('`next_cursor` of the previous page'),
});

/**
 * `POST /normalize` multipart fields, for the document only: the route parses the form by
 * hand in `upload-form.ts` (repeated fields, comma lists, boolean flags) from the same
 * `OPERATIONS` and `OUTPUT_FORMATS` constants used here.
 */
export const normalizeFormSchema = z.object({
  file: z.string().describe('The audio or video file (binary)'),
  'operations[]': z
    .array(z.enum(OPERATIONS))
    .min(1)
    .describe('Operations to apply, repeated or comma-separated; also accepted as `operations`'),
  format: z
    .enum(OUTPUT_FORMATS)
    .optional()
    .describe(
      `Output format; without it ${DEFAULT_OUTPUT_FORMAT}, or ${DEFAULT_16K_FORMAT} with \`sample_rate_16k\` (an Opus file always decodes at 48 kHz, so \`opus\` with \`sample_rate_16k\` is a 400)`,
    ),
  callback_url: z.string().max(1024).optional().describe(CALLBACK_URL_DESCRIPTION),
  target_lufs: z
    .number()
    .min(TARGET_LUFS_RANGE.min)
    .max(TARGET_LUFS_RANGE.max)
    .optional()
    .describe('Integrated loudness target of `normalize_volume`; default NORMALIZE_TARGET_LUFS'),
  ...Object.fromEntries(
    OPERATIONS.map((op) => [
      op,
      z.enum(['true', 'false']).optional().describe(`Same as listing \`${op}\` in operations[]`),
    ]),
  ),
});

/** A job as the API shows it (`job-view.ts`): the record, its result by kind, `cache_hit` on submissions, and links. */
export const jobViewSchema = jobRecordSchema.extend({
  result: jobResultSchema
    .optional()
    .describe('Present once the job completed: a `DownloadResult` or a `NormalizeResult`, by `kind`'),
  cache_hit: z
    .boolean()
    .optional()
    .describe('Present on POST answers: true when an existing job was returned'),
  links: z.object({ self: z.string(), file: z.string(), events: z.string() }),
});

/**
 * A job event as the SSE stream relays it (`jobEventSchema` of libs), `completed` with its
 * result by kind. libs parses events loosely, as a subscriber must read any result; this is
 * what the document promises. The OpenAPI test checks that it lists every event type.
 */
export const jobEventViewSchema = z.discriminatedUnion('type', [
  jobQueuedEvent,
  jobCacheHitEvent,
  jobStartedEvent,
  jobProgressEvent,
  jobCompletedEvent.extend({ result: jobResultSchema }),
  jobFailedEvent,
  jobDeletedEvent,
]);

/**
 * The body of a webhook: the job's `completed` or `failed` event, byte for byte as published
 * on NATS (`events.job.<kind>.<id>.<type>`).
 */
export const webhookPayloadSchema = z
  .discriminatedUnion('type', [jobCompletedEvent.extend({ result: jobResultSchema }), jobFailedEvent])
  .describe("Body of a webhook POST: the job's `completed` or `failed` event, exactly as published on NATS");

export const errorSchema = z.object({
  error: z.object({
    code: z.string().describe('Dotted error code, e.g. `job.not_found`'),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

export const jobListSchema = z.object({
  jobs: z.array(jobViewSchema),
  next_cursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last one'),
});

export const deleteResultSchema = z.object({
  id: z.string(),
  kind: z.enum(JOB_KINDS),
  deleted: z.literal(true),
  files: z.array(z.string()),
  bytes_freed: z.number().int().min(0),
});

export const healthSchema = z.object({
  status: z.literal('ok'),
  service: z.string(),
  uptime_s: z.number().int().min(0),
});

const checkSchema = z.object({ ok: z.boolean(), error: z.string().optional() });
export const readySchema = z.object({
  status: z.literal('ready'),
  checks: z.object({ nats: checkSchema, redis: checkSchema, data_dir: checkSchema }),
});

/** Loosely: the stats gather many parts whose inner shape is for people, not for clients to rely on. */
/** Where yt-dlp's cookies come from, never their content (`/admin/stats`, `PUT /admin/cookies`). */
export const cookiesStateSchema = z
  .object({
    present: z.boolean(),
    source: z.enum(['redis', 'file', 'none']),
    bytes: z.number().nullable(),
    cookies: z.number().nullable().describe('Cookie lines in the file'),
    updated_at: z.string().nullable().describe('When they were PUT, or the file was last changed'),
    problem: z.string().optional().describe('Why YTDLP_COOKIES_FILE cannot be used'),
    deleted: z.boolean().optional().describe('DELETE only: whether cookies had been PUT'),
  })
  .describe("yt-dlp's cookies: PUT /admin/cookies (kept in Redis) wins over YTDLP_COOKIES_FILE");

export const adminStatsSchema = z.looseObject({
  jobs: z.looseObject({
    by_kind: z.record(z.string(), z.unknown()),
    awaiting_sweep: z.number(),
    complete: z.boolean(),
  }),
  cache: z.record(z.string(), z.object({ hits: z.number(), misses: z.number() })),
  disk: z.record(z.string(), z.object({ files: z.number(), bytes: z.number() })),
  last_sweep: z.looseObject({}).nullable(),
  services: z.array(z.looseObject({})),
  disagreements: z.unknown(),
  ytdlp_cookies: cookiesStateSchema.optional(),
});

/** The janitor's sweep summary, as `POST /admin/cleanup` returns it. */
export const sweepSummarySchema = janitorSweepEvent
  .pick({
    trigger: true,
    removed: true,
    files_removed: true,
    bytes_freed: true,
    duration_ms: true,
    next_run_at: true,
    orphans: true,
  })
  .loose();
