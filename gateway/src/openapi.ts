import { createRequire } from 'node:module';
import { z } from 'zod';
import {
  FAILURE_KINDS,
  JOB_EVENT_TYPES,
  MAX_COOKIES_BYTES,
  downloadResultSchema,
  normalizeResultSchema,
} from '@media-jobs/libs';
import { PROBE_TIMEOUT_MS } from './routes/probe.js';
import {
  adminStatsSchema,
  cookiesStateSchema,
  deleteResultSchema,
  downloadBodySchema,
  errorSchema,
  healthSchema,
  jobEventViewSchema,
  jobListSchema,
  jobViewSchema,
  listQuerySchema,
  normalizeFormSchema,
  probeQuerySchema,
  probeResultSchema,
  readySchema,
  sweepSummarySchema,
  webhookPayloadSchema,
} from './schemas.js';

type Json = Record<string, unknown>;

/**
 * The components of the document, each a zod schema the routes use (`schemas.ts`) or a
 * result schema of libs. Registered under their names so nested uses become `$ref`s. The
 * request schemas (`DownloadRequest`, `NormalizeForm`) are added apart, in input form.
 */
export const COMPONENT_SCHEMAS = {
  JobView: jobViewSchema,
  JobList: jobListSchema,
  DeleteResult: deleteResultSchema,
  Error: errorSchema,
  Health: healthSchema,
  Ready: readySchema,
  AdminStats: adminStatsSchema,
  SweepSummary: sweepSummarySchema,
  JobEvent: jobEventViewSchema,
  DownloadResult: downloadResultSchema,
  NormalizeResult: normalizeResultSchema,
  ProbeResult: probeResultSchema,
  WebhookPayload: webhookPayloadSchema,
  CookiesState: cookiesStateSchema,
} as const;

const ref = (name: keyof typeof COMPONENT_SCHEMAS | 'DownloadRequest' | 'NormalizeForm'): Json => ({
  $ref: `#/components/schemas/${name}`,
});

/** JSON Schema 2020-12 (the dialect of OpenAPI 3.1) without the per-schema `$schema`/`$id`. */
function components(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(COMPONENT_SCHEMAS)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    uri: (id) => `#/components/schemas/${id}`,
    unrepresentable: 'any',
  }).schemas as Record<string, Json>;
  // Requests are described as clients send them: fields with defaults are optional.
  out['DownloadRequest'] = z.toJSONSchema(downloadBodySchema, {
    target: 'draft-2020-12',
    io: 'input',
  }) as Json;
  out['NormalizeForm'] = z.toJSONSchema(normalizeFormSchema, {
    target: 'draft-2020-12',
    io: 'input',
  }) as Json;
  for (const schema of Object.values(out)) {
    delete schema['$schema'];
    delete schema['$id'];
  }
  out['DownloadFailureCode'] = downloadFailureCode();
  // A file part is binary, which zod cannot say: OpenAPI 3.1 uses contentMediaType for it.
  const form = out['NormalizeForm'] as { properties: Record<string, Json> };
  form.properties['file'] = {
    type: 'string',
    contentMediaType: 'application/octet-stream',
    description: 'The audio or video file',
  };
  return out;
}

/** The `error.code`s a download (or `/probe`'s `source_error`) ends with because of the source, the network or a limit. */
function downloadFailureCode(): Json {
  const rows = FAILURE_KINDS.map(
    (k) => `- \`${k.code}\` (${k.final ? 'final' : 'retried with backoff'}): ${k.message}`,
  );
  return {
    type: 'string',
    enum: FAILURE_KINDS.map((k) => k.code),
    description: [
      "Failure codes of a download job's `error.code` and of `/probe`'s `source_error.code` that come from yt-dlp's output or a limit. Final ones fail the job at once; the others queue it again with a growing delay (JOB_RETRY_DELAY_SECONDS, up to JOB_MAX_DELIVER runs). Other codes (`download.private_url`, `download.max_deliveries`, ...) are the service's own.",
      ...rows,
    ].join('\n'),
  };
}

const json = (schema: Json, description: string): Json => ({
  description,
  content: { 'application/json': { schema } },
});
const error = (description: string): Json => json(ref('Error'), description);

const E = {
  400: error('Bad input (`error.code` says which)'),
  404: error('No such job'),
  409: error('The job has no result yet (`details.status`)'),
  410: error('The job expired and awaits the sweep; submit it again'),
  413: error('The body or upload is larger than allowed'),
  429: error('Rate limited; see the `RateLimit-*` and `Retry-After` headers'),
  503: error('A backing service (Redis or NATS) is not reachable; see `Retry-After`'),
};

const idParam = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'Job id',
  schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,128}$' },
};

/** A query schema as OpenAPI parameters, in input form: a field with a default is optional. */
function queryParameters(schema: z.ZodObject): Json[] {
  const query = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }) as {
    properties: Record<string, Json>;
    required?: string[];
  };
  return Object.entries(query.properties).map(([name, property]) => ({
    name,
    in: 'query',
    required: query.required?.includes(name) ?? false,
    schema: property,
  }));
}

const SSE_DESCRIPTION = [
  'Server-Sent Events. First `event: state` with the job (schema `JobView`), then one SSE event per job event',
  `until the job ends: the SSE event name is the job event type (${JOB_EVENT_TYPES.join(', ')}) and its data is`,
  'the JSON payload of schema `JobEvent` (discriminated by `type`). Comments (`: heartbeat`) keep the connection open.',
].join(' ');

function paths(): Json {
  const submit = {
    202: json(ref('JobView'), 'A new job was queued'),
    200: json(ref('JobView'), 'The live job with this id (`cache_hit: true`)'),
  };
  const admin = { security: [{ adminToken: [] }, {}] };
  // With API_KEYS set, writes need a key (either form); with it unset, none.
  const keyed = { security: [{ apiKeyBearer: [] }, { apiKeyHeader: [] }, {}] };
  const E401 = { 401: error('API_KEYS is set and no valid key was sent') };
  const adminErrors = {
    401: error('ADMIN_TOKEN is set and the Bearer token is missing or wrong'),
    403: error('ADMIN_TOKEN is unset and the client is not loopback'),
  };
  return {
    '/download': {
      post: {
        ...keyed,
        summary: 'Download a video (yt-dlp) as a cached job',
        requestBody: { required: true, content: { 'application/json': { schema: ref('DownloadRequest') } } },
        responses: { ...submit, 400: E[400], ...E401, 413: E[413], 429: E[429], 503: E[503] },
      },
    },
    '/normalize': {
      post: {
        ...keyed,
        summary: 'Normalize the audio of an uploaded file (ffmpeg) as a cached job',
        requestBody: { required: true, content: { 'multipart/form-data': { schema: ref('NormalizeForm') } } },
        responses: {
          ...submit,
          400: E[400],
          ...E401,
          413: E[413],
          415: error('Unsupported body encoding'),
          429: E[429],
          503: E[503],
        },
      },
    },
    '/probe': {
      get: {
        ...keyed,
        summary: 'What POST /download with these fields would do, without a job, and what the source offers',
        description: `The same checks and 400s as POST /download (a playlist or channel is \`url.playlist\`), the media id and job id, whether a live job has that id, and the title, duration and qualities from \`yt-dlp --dump-json\` (at most ${PROBE_TIMEOUT_MS / 1000} s, behind the same private-address policy as a download). When yt-dlp cannot read the source, the answer is still 200, with \`source_error\` (its \`code\` one of \`DownloadFailureCode\`, the code the download would fail with).`,
        parameters: queryParameters(probeQuerySchema),
        responses: {
          200: json(ref('ProbeResult'), 'What a submission would do'),
          400: E[400],
          ...E401,
          429: E[429],
          503: error('Redis is not reachable, or too many probes are running; see `Retry-After`'),
        },
      },
    },
    '/jobs': {
      get: {
        summary: 'Recent jobs, newest first, filtered by kind and status',
        parameters: queryParameters(listQuerySchema),
        responses: { 200: json(ref('JobList'), 'One page'), 400: E[400], 429: E[429], 503: E[503] },
      },
    },
    '/jobs/{id}': {
      parameters: [idParam],
      get: {
        summary: 'The job',
        responses: {
          200: json(ref('JobView'), 'The job'),
          400: E[400],
          404: E[404],
          410: E[410],
          429: E[429],
          503: E[503],
        },
      },
      delete: {
        ...keyed,
        summary: 'Remove the job and its files; emits `deleted`',
        responses: {
          200: json(ref('DeleteResult'), 'Removed'),
          400: E[400],
          ...E401,
          404: E[404],
          410: E[410],
          429: E[429],
          503: E[503],
        },
      },
    },
    '/jobs/{id}/file': {
      parameters: [idParam],
      get: {
        summary: 'The result file, with Range support',
        parameters: [{ name: 'Range', in: 'header', required: false, schema: { type: 'string' } }],
        responses: {
          200: {
            description: 'The file',
            content: {
              'application/octet-stream': {
                schema: { type: 'string', contentMediaType: 'application/octet-stream' },
              },
            },
          },
          206: {
            description: 'The requested range',
            content: {
              'application/octet-stream': {
                schema: { type: 'string', contentMediaType: 'application/octet-stream' },
              },
            },
          },
          400: E[400],
          404: error('No such job, or its file is gone'),
          409: E[409],
          410: E[410],
          416: { description: 'The range is outside the file' },
          429: E[429],
          503: E[503],
        },
      },
    },
    '/jobs/{id}/events': {
      parameters: [idParam],
      get: {
        summary: 'Live job events (Server-Sent Events)',
        responses: {
          200: {
            description: SSE_DESCRIPTION,
            content: { 'text/event-stream': { schema: { type: 'string', description: SSE_DESCRIPTION } } },
            'x-sse-events': {
              state: ref('JobView'),
              ...Object.fromEntries(JOB_EVENT_TYPES.map((t) => [t, ref('JobEvent')])),
            },
          },
          400: E[400],
          404: E[404],
          410: E[410],
          429: E[429],
          503: E[503],
        },
      },
    },
    '/admin/stats': {
      get: {
        ...admin,
        summary: 'Jobs by kind and status, cache, disk, last sweep, effective config of every service',
        responses: { 200: json(ref('AdminStats'), 'Statistics'), ...adminErrors, 503: E[503] },
      },
    },
    '/admin/cookies': {
      put: {
        ...admin,
        summary: "Replace yt-dlp's cookies for every worker",
        description: `The body is a Netscape cookies.txt (as browser extensions export it), at most ${MAX_COOKIES_BYTES} bytes, any content type. It is kept in Redis, so workers on every host use it at their next download, in preference to YTDLP_COOKIES_FILE; each run gets a private copy that is deleted afterwards. The answer says what is stored, never the content.`,
        requestBody: {
          required: true,
          content: { 'text/plain': { schema: { type: 'string', description: 'Netscape cookies.txt' } } },
        },
        responses: {
          200: json(ref('CookiesState'), 'What is stored now'),
          400: error('Not a Netscape cookies.txt (`cookies.invalid`, `cookies.missing`)'),
          ...adminErrors,
          413: error('Larger than allowed'),
          503: E[503],
        },
      },
      delete: {
        ...admin,
        summary: 'Forget the cookies of PUT /admin/cookies (YTDLP_COOKIES_FILE applies again)',
        responses: { 200: json(ref('CookiesState'), 'What applies now'), ...adminErrors, 503: E[503] },
      },
    },
    '/admin/cleanup': {
      post: {
        ...admin,
        summary: 'Run a janitor sweep now and return its summary',
        responses: {
          200: json(ref('SweepSummary'), 'The sweep summary'),
          ...adminErrors,
          409: error('Another janitor has been sweeping for a while'),
          503: error('No janitor answered, or the sweep failed'),
        },
      },
    },
    '/health': {
      get: { summary: 'Liveness', responses: { 200: json(ref('Health'), 'The process is alive') } },
    },
    '/ready': {
      get: {
        summary: 'Readiness: NATS, Redis and DATA_DIR answer',
        responses: { 200: json(ref('Ready'), 'Ready'), 503: error('Not ready; `details` holds the checks') },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format)',
        responses: {
          200: { description: 'Metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    '/openapi.json': {
      get: {
        summary: 'This document',
        responses: {
          200: {
            description: 'OpenAPI 3.1',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
        },
      },
    },
    '/docs': {
      get: {
        summary: 'A browsable view of this document',
        responses: {
          200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } },
        },
      },
    },
  };
}

function version(): string {
  // dist/openapi.js and src/openapi.ts both sit one level below the package.
  const pkg = createRequire(import.meta.url)('../package.json') as { version?: string };
  return pkg.version ?? '0.0.0';
}

const TAGS = [
  ['jobs', 'Submit jobs, follow them, fetch and delete results'],
  ['admin', 'Statistics and on-demand sweeps (ADMIN_TOKEN or loopback)'],
  ['operations', 'Probes, metrics and this documentation'],
] as const;

/** Groups the operations for the docs page by what a caller does with them. */
function tagged(all: Json): Json {
  for (const [path, item] of Object.entries(all)) {
    const tag = path.startsWith('/admin')
      ? 'admin'
      : /^\/(download|normalize|jobs)/.test(path)
        ? 'jobs'
        : 'operations';
    for (const [key, op] of Object.entries(item as Json))
      if (key !== 'parameters') (op as Json)['tags'] = [tag];
  }
  return all;
}

const WEBHOOK_DESCRIPTION = [
  "Sent to every `callback_url` of a job and to every `WEBHOOK_URLS` entry when the job ends: one POST with the job's `completed` or `failed` event as the JSON body.",
  'Signed the Standard Webhooks way: `webhook-signature` is `v1,` + base64 of HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<raw body>`, keyed with the base64-decoded part of `WEBHOOK_SECRET` (`whsec_<base64>`); absent when no secret is set.',
  'Any 2xx within WEBHOOK_TIMEOUT_SECONDS is a delivery; anything else (another status, a redirect, a timeout, a refused connection) is retried after WEBHOOK_RETRY_BASE_SECONDS, doubling each time up to one hour, plus up to 10 % jitter (or after a longer `Retry-After`), until WEBHOOK_MAX_ATTEMPTS; `410 Gone` stops at once.',
  "At least once: the same `webhook-id` may come more than once; use it to drop duplicates. Every attempt is listed in the job record's `webhooks`.",
].join(' ');

const headerParam = (name: string, description: string, required = true): Json => ({
  name,
  in: 'header',
  required,
  description,
  schema: { type: 'string' },
});

function webhooks(): Json {
  return {
    jobEnded: {
      post: {
        summary: "A job's completed or failed event, POSTed to its callback URLs and WEBHOOK_URLS",
        description: WEBHOOK_DESCRIPTION,
        parameters: [
          headerParam(
            'webhook-id',
            '`msg_` + 32 hex: the same for every attempt and every receiver of one event',
          ),
          headerParam('webhook-timestamp', 'Unix time of this attempt, in seconds'),
          headerParam(
            'webhook-signature',
            '`v1,<base64 HMAC-SHA256>` over `<webhook-id>.<webhook-timestamp>.<body>`; absent without WEBHOOK_SECRET',
            false,
          ),
        ],
        requestBody: { required: true, content: { 'application/json': { schema: ref('WebhookPayload') } } },
        responses: {
          '2XX': { description: 'Delivered: no further attempt' },
          '410': { description: 'Gone: no further attempt' },
          default: { description: 'Not delivered: retried with backoff' },
        },
      },
    },
  };
}

let cached: Json | null = null;

/** The OpenAPI 3.1 document of the gateway, built once from the zod schemas. */
export function openApiDocument(): Json {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'media-jobs gateway',
      version: version(),
      description:
        'Video download (yt-dlp) and audio normalization (ffmpeg) as cached asynchronous jobs. Errors are `{"error": {code, message, details?}}`.',
    },
    paths: tagged(paths()),
    webhooks: webhooks(),
    tags: TAGS.map(([name, description]) => ({ name, description })),
    components: {
      schemas: components(),
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
        apiKeyBearer: { type: 'http', scheme: 'bearer', description: 'One of API_KEYS' },
        apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'One of API_KEYS' },
      },
    },
  };
  return cached;
}
