import { resolve } from 'node:path';
import { z } from 'zod';

/**
 * The one configuration schema of every service. Each service calls `loadConfig(process.env)`
 * once at start, so the gateway and the workers can never read a value differently.
 * Every variable is documented in `.env.example`.
 */

const decimal = (rule: string) =>
  z
    .string()
    .trim()
    .regex(/^-?(\d+(\.\d*)?|\.\d+)$/, rule)
    .transform(Number);

const positiveDecimal = decimal('must be a decimal number > 0').refine(
  (n) => n > 0,
  'must be a decimal number > 0',
);

const int = (min: number, max: number) => {
  const rule = `must be an integer from ${min} to ${max}`;
  return z
    .string()
    .trim()
    .regex(/^\d+$/, rule)
    .transform(Number)
    .refine((n) => n >= min && n <= max, rule);
};

const boolean = z
  .string()
  .trim()
  .toLowerCase()
  .refine((s) => ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'].includes(s), 'must be true or false')
  .transform((s) => ['true', '1', 'yes', 'on'].includes(s));

const url = (schemes: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (s) => {
        try {
          return schemes.includes(new URL(s).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      },
      `must be a URL with scheme ${schemes.join(' or ')}`,
    );

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/** A comma-separated list, items trimmed, empty items dropped ("" is the empty list). */
const commaList = () =>
  z.string().transform((s) =>
    s
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean),
  );

/** One URL or a comma-separated list (a cluster's servers), each with one of the schemes. */
const urlList = (schemes: string[]) =>
  commaList().refine(
    (list) =>
      list.length > 0 &&
      list.every((u) => {
        try {
          return schemes.includes(new URL(u).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      }),
    `must be a URL with scheme ${schemes.join(' or ')}, or a comma-separated list of them`,
  );

/** `host:port,...` (empty: no Sentinel). */
const hostPorts = commaList()
  .refine(
    (list) =>
      list.every((h) => {
        const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(h);
        return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
      }),
    'must be comma-separated host:port pairs',
  )
  .transform((list) =>
    list.map((h) => {
      const i = h.lastIndexOf(':');
      return { host: h.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(h.slice(i + 1)) };
    }),
  );

/** Comma-separated API keys; each at least 16 characters without spaces or commas, so a typo cannot make a guessable key. */
const apiKeys = commaList().refine(
  (keys) => keys.every((k) => k.length >= 16 && !/\s/.test(k)),
  'must be comma-separated keys of at least 16 characters without spaces',
);

/**
 * Express's `trust proxy`: false, a hop count, or the load balancers' addresses/subnets (or
 * `loopback`, `linklocal`, `uniquelocal`). `true` is refused: it would trust any client's
 * X-Forwarded-For, so each client could pick its own rate-limit identity.
 */
const TRUST_PROXY_RULE =
  'must be false, a hop count (1-10), or comma-separated proxy addresses/subnets (or loopback, linklocal, uniquelocal)';
const trustProxy = z
  .string()
  .trim()
  .transform((s): false | number | string[] => {
    const lower = s.toLowerCase();
    if (['false', '0', 'no', 'off', ''].includes(lower)) return false;
    if (/^\d+$/.test(s)) return Number(s);
    return s
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
  })
  .refine(
    (v) =>
      v === false ||
      (typeof v === 'number' && v >= 1 && v <= 10) ||
      (Array.isArray(v) &&
        v.length > 0 &&
        v.every(
          (p) =>
            ['loopback', 'linklocal', 'uniquelocal'].includes(p) || /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(p),
        )),
    TRUST_PROXY_RULE,
  );

/** Comma-separated http(s) URLs, or empty: the receivers of every job's webhook. */
const webhookUrls = commaList().refine(
  (list) =>
    list.every((u) => {
      try {
        return ['http:', 'https:'].includes(new URL(u).protocol);
      } catch {
        return false;
      }
    }),
  'must be comma-separated http(s) URLs',
);

/**
 * A Standard Webhooks signing secret: `whsec_` + base64 of 24 to 64 random bytes (the prefix
 * may be left out, as the reference libraries allow), or empty: webhooks go unsigned.
 */
const WEBHOOK_SECRET_RULE = 'must be whsec_ followed by the base64 of 24 to 64 bytes (or empty)';
const webhookSecret = z
  .string()
  .trim()
  .refine((s) => {
    if (s === '') return true;
    const b64 = s.startsWith('whsec_') ? s.slice(6) : s;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
    const bytes = Buffer.from(b64, 'base64').length;
    return bytes >= 24 && bytes <= 64;
  }, WEBHOOK_SECRET_RULE);

/** yt-dlp's `--proxy`: empty (no proxy) or an http(s) or socks URL, credentials allowed. */
const PROXY_SCHEMES = ['http', 'https', 'socks4', 'socks4a', 'socks5', 'socks5h'];
const proxyUrl = z
  .string()
  .trim()
  .refine(
    (s) => {
      if (s === '') return true;
      try {
        const u = new URL(s);
        return PROXY_SCHEMES.includes(u.protocol.replace(/:$/, '')) && u.hostname !== '';
      } catch {
        return false;
      }
    },
    `must be empty or a proxy URL with scheme ${PROXY_SCHEMES.join(', ')}`,
  );

const nonNegativeDecimal = decimal('must be a decimal number >= 0').refine(
  (n) => n >= 0,
  'must be a decimal number >= 0',
);

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Variable name → [schema, default]. The default is a string, parsed by the same rule. */
const VARIABLES = {
  CACHE_TTL_HOURS: [positiveDecimal, '24'],
  CLEANUP_INTERVAL_MINUTES: [positiveDecimal, '30'],
  NATS_URL: [urlList(['nats', 'tls', 'ws', 'wss']), 'nats://127.0.0.1:4222'],
  NATS_REPLICAS: [int(1, 5), '1'],
  REDIS_URL: [url(['redis', 'rediss']), 'redis://127.0.0.1:6379'],
  REDIS_SENTINELS: [hostPorts, ''],
  REDIS_SENTINEL_NAME: [nonEmpty, 'mymaster'],
  DATA_DIR: [nonEmpty, './data'],
  STORAGE: [z.enum(['local', 'nats'], 'must be local or nats'), 'local'],
  PORT: [int(0, 65535), '8000'],
  HOST: [nonEmpty, '0.0.0.0'],
  LOG_LEVEL: [z.enum(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(', ')}`), 'info'],
  ALLOW_PRIVATE_URLS: [boolean, 'false'],
  NORMALIZE_TARGET_LUFS: [
    decimal('must be a decimal from -70 to -5').refine((n) => n >= -70 && n <= -5, 'must be from -70 to -5'),
    '-16',
  ],
  NORMALIZE_TRUE_PEAK_DB: [
    decimal('must be a decimal from -9 to 0').refine((n) => n >= -9 && n <= 0, 'must be from -9 to 0'),
    '-1.5',
  ],
  ADMIN_TOKEN: [z.string(), ''],
  MAX_DOWNLOAD_MB: [positiveDecimal, '2048'],
  DOWNLOAD_TIMEOUT_SECONDS: [positiveDecimal, '3600'],
  DOWNLOAD_CONCURRENCY: [int(1, 64), '2'],
  MAX_UPLOAD_MB: [positiveDecimal, '512'],
  NORMALIZE_TIMEOUT_SECONDS: [positiveDecimal, '1800'],
  NORMALIZE_CONCURRENCY: [int(1, 64), '2'],
  JOB_MAX_DELIVER: [int(1, 100), '5'],
  JOB_ACK_WAIT_SECONDS: [positiveDecimal, '30'],
  JOB_RETRY_DELAY_SECONDS: [positiveDecimal, '10'],
  SHUTDOWN_GRACE_SECONDS: [positiveDecimal, '25'],
  YTDLP_PATH: [nonEmpty, 'yt-dlp'],
  FFMPEG_PATH: [nonEmpty, 'ffmpeg'],
  FFPROBE_PATH: [nonEmpty, 'ffprobe'],
  RATE_LIMIT_PER_MINUTE: [int(0, 1_000_000), '60'],
  RATE_LIMIT_READS_PER_MINUTE: [int(0, 1_000_000), '600'],
  TRUST_PROXY: [trustProxy, 'false'],
  API_KEYS: [apiKeys, ''],
  REQUEST_TIMEOUT_SECONDS: [positiveDecimal, '900'],
  SSE_HEARTBEAT_SECONDS: [positiveDecimal, '15'],
  YTDLP_COOKIES_FILE: [z.string().trim(), ''],
  YTDLP_PROXY: [proxyUrl, ''],
  SITE_CONCURRENCY: [int(0, 1000), '2'],
  SITE_MIN_GAP_SECONDS: [nonNegativeDecimal, '0'],
  WEBHOOK_URLS: [webhookUrls, ''],
  WEBHOOK_SECRET: [webhookSecret, ''],
  WEBHOOK_MAX_ATTEMPTS: [int(1, 100), '30'],
  WEBHOOK_RETRY_BASE_SECONDS: [positiveDecimal, '5'],
  WEBHOOK_TIMEOUT_SECONDS: [positiveDecimal, '15'],
  WEBHOOK_CONCURRENCY: [int(1, 256), '16'],
} as const;

type Variables = typeof VARIABLES;
/** Every variable the services read, for the docs and the compose file to be checked against. */
export const CONFIG_VARIABLES = Object.keys(VARIABLES) as readonly (keyof Variables)[];
export type VariableName = keyof Variables;
type Parsed = { [K in VariableName]: z.output<Variables[K][0]> };

export interface Config {
  readonly cacheTtlHours: number;
  /** Cache TTL in milliseconds, rounded to whole ms. */
  readonly cacheTtlMs: number;
  readonly cleanupIntervalMinutes: number;
  readonly cleanupIntervalMs: number;
  /** `NATS_URL` as given (one URL or a comma-separated list). */
  readonly natsUrl: string;
  /** Every server of `NATS_URL`; the client moves to another when its own goes away. */
  readonly natsServers: readonly string[];
  /** Replicas of `JOBS`, `EVENTS` and the buckets. */
  readonly natsReplicas: number;
  /** Used for its password, database and TLS scheme when Sentinels find the master. */
  readonly redisUrl: string;
  /** Empty: connect to `REDIS_URL` itself. */
  readonly redisSentinels: readonly { host: string; port: number }[];
  readonly redisSentinelName: string;
  /** Absolute path. */
  readonly dataDir: string;
  /** Where finished files live: folders under `dataDir`, or JetStream Object Store buckets. */
  readonly storage: 'local' | 'nats';
  readonly port: number;
  readonly host: string;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly allowPrivateUrls: boolean;
  readonly normalizeTargetLufs: number;
  readonly normalizeTruePeakDb: number;
  /** Empty string: admin endpoints answer loopback clients only. */
  readonly adminToken: string;
  readonly maxDownloadBytes: number;
  readonly downloadTimeoutMs: number;
  readonly downloadConcurrency: number;
  readonly maxUploadBytes: number;
  readonly normalizeTimeoutMs: number;
  readonly normalizeConcurrency: number;
  readonly jobMaxDeliver: number;
  readonly jobAckWaitMs: number;
  readonly jobRetryDelayMs: number;
  readonly shutdownGraceMs: number;
  readonly ytDlpPath: string;
  readonly ffmpegPath: string;
  readonly ffprobePath: string;
  /** Submissions (POST /download, POST /normalize) per client per minute; 0: no limit. */
  readonly rateLimitPerMinute: number;
  /** Every other request per client per minute (not /health, /ready); 0: no limit. */
  readonly rateLimitReadsPerMinute: number;
  /** Express `trust proxy`: which X-Forwarded-For hops name the client. */
  readonly trustProxy: false | number | readonly string[];
  /** Empty: submissions need no key. */
  readonly apiKeys: readonly string[];
  /** Longest time a client may take to send one whole request (an upload included). */
  readonly requestTimeoutMs: number;
  /** Time between heartbeat comments on `GET /jobs/:id/events`. */
  readonly sseHeartbeatMs: number;
  /** Absolute path of a Netscape cookies.txt for yt-dlp, or empty; cookies PUT to /admin/cookies (in Redis) win. */
  readonly ytDlpCookiesFile: string;
  /** yt-dlp's upstream proxy (`--proxy`), or empty; behind the egress proxy when private URLs are refused. */
  readonly ytDlpProxy: string;
  /** Downloads at once per site across all workers; 0: no limit. */
  readonly siteConcurrency: number;
  /** Least time between two download starts on one site, across all workers; 0: none. */
  readonly siteMinGapMs: number;
  /** Receivers of every job's `completed` and `failed` webhook, besides each job's `callback_url`s. */
  readonly webhookUrls: readonly string[];
  /** `whsec_<base64>` (or bare base64); empty: webhooks are sent without a signature. */
  readonly webhookSecret: string;
  /** Attempts of one webhook delivery, the first included, before it is given up. */
  readonly webhookMaxAttempts: number;
  /** Delay before the 2nd attempt; it doubles with each further one, up to one hour. */
  readonly webhookRetryBaseMs: number;
  /** Longest wait for a receiver's answer to one attempt. */
  readonly webhookTimeoutMs: number;
  /** Webhook attempts in flight at once, per gateway process. */
  readonly webhookConcurrency: number;
}

/** A bad configuration value: the message is the one line a service prints before it exits. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly rule: string,
  ) {
    super(`Invalid configuration: ${variable}=${JSON.stringify(value)} ${rule}`);
  }
}

const MB = 1024 * 1024;

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = {} as Record<string, unknown>;
  for (const [name, [schema, fallback]] of Object.entries(VARIABLES)) {
    const raw = env[name];
    const value =
      raw === undefined || (raw.trim() === '' && name !== 'ADMIN_TOKEN' && name !== 'API_KEYS')
        ? fallback
        : raw;
    const result = (schema as z.ZodType).safeParse(value);
    if (!result.success) {
      // Secrets never reach a log line, not even a wrong one.
      const shown =
        name === 'API_KEYS' || name === 'WEBHOOK_SECRET' || name === 'YTDLP_PROXY' ? '<redacted>' : value;
      throw new ConfigError(name, shown, result.error.issues[0]?.message ?? 'is invalid');
    }
    parsed[name] = result.data;
  }
  const p = parsed as Parsed;
  if (p.YTDLP_PROXY && !p.ALLOW_PRIVATE_URLS && new URL(p.YTDLP_PROXY).protocol !== 'http:') {
    // The egress proxy that keeps private addresses out chains to an upstream over HTTP only.
    throw new ConfigError(
      'YTDLP_PROXY',
      '<redacted>',
      'must be an http:// proxy while ALLOW_PRIVATE_URLS=false (the egress proxy chains to it with HTTP CONNECT)',
    );
  }
  return Object.freeze({
    cacheTtlHours: p.CACHE_TTL_HOURS,
    cacheTtlMs: Math.max(1, Math.round(p.CACHE_TTL_HOURS * 3_600_000)),
    cleanupIntervalMinutes: p.CLEANUP_INTERVAL_MINUTES,
    cleanupIntervalMs: Math.max(1, Math.round(p.CLEANUP_INTERVAL_MINUTES * 60_000)),
    natsUrl: p.NATS_URL.join(','),
    natsServers: Object.freeze([...p.NATS_URL]),
    natsReplicas: p.NATS_REPLICAS,
    redisUrl: p.REDIS_URL,
    redisSentinels: Object.freeze(p.REDIS_SENTINELS.map((s) => Object.freeze({ ...s }))),
    redisSentinelName: p.REDIS_SENTINEL_NAME,
    dataDir: resolve(p.DATA_DIR),
    storage: p.STORAGE,
    port: p.PORT,
    host: p.HOST,
    logLevel: p.LOG_LEVEL,
    allowPrivateUrls: p.ALLOW_PRIVATE_URLS,
    normalizeTargetLufs: p.NORMALIZE_TARGET_LUFS,
    normalizeTruePeakDb: p.NORMALIZE_TRUE_PEAK_DB,
    adminToken: p.ADMIN_TOKEN,
    maxDownloadBytes: Math.round(p.MAX_DOWNLOAD_MB * MB),
    downloadTimeoutMs: Math.round(p.DOWNLOAD_TIMEOUT_SECONDS * 1000),
    downloadConcurrency: p.DOWNLOAD_CONCURRENCY,
    maxUploadBytes: Math.round(p.MAX_UPLOAD_MB * MB),
    normalizeTimeoutMs: Math.round(p.NORMALIZE_TIMEOUT_SECONDS * 1000),
    normalizeConcurrency: p.NORMALIZE_CONCURRENCY,
    jobMaxDeliver: p.JOB_MAX_DELIVER,
    jobAckWaitMs: Math.round(p.JOB_ACK_WAIT_SECONDS * 1000),
    jobRetryDelayMs: Math.round(p.JOB_RETRY_DELAY_SECONDS * 1000),
    shutdownGraceMs: Math.round(p.SHUTDOWN_GRACE_SECONDS * 1000),
    ytDlpPath: p.YTDLP_PATH,
    ffmpegPath: p.FFMPEG_PATH,
    ffprobePath: p.FFPROBE_PATH,
    rateLimitPerMinute: p.RATE_LIMIT_PER_MINUTE,
    rateLimitReadsPerMinute: p.RATE_LIMIT_READS_PER_MINUTE,
    trustProxy: Array.isArray(p.TRUST_PROXY) ? Object.freeze([...p.TRUST_PROXY]) : p.TRUST_PROXY,
    apiKeys: Object.freeze([...p.API_KEYS]),
    requestTimeoutMs: Math.round(p.REQUEST_TIMEOUT_SECONDS * 1000),
    sseHeartbeatMs: Math.max(100, Math.round(p.SSE_HEARTBEAT_SECONDS * 1000)),
    ytDlpCookiesFile: p.YTDLP_COOKIES_FILE === '' ? '' : resolve(p.YTDLP_COOKIES_FILE),
    ytDlpProxy: p.YTDLP_PROXY,
    siteConcurrency: p.SITE_CONCURRENCY,
    siteMinGapMs: Math.round(p.SITE_MIN_GAP_SECONDS * 1000),
    webhookUrls: Object.freeze([...p.WEBHOOK_URLS]),
    webhookSecret: p.WEBHOOK_SECRET,
    webhookMaxAttempts: p.WEBHOOK_MAX_ATTEMPTS,
    webhookRetryBaseMs: Math.max(1, Math.round(p.WEBHOOK_RETRY_BASE_SECONDS * 1000)),
    webhookTimeoutMs: Math.max(1, Math.round(p.WEBHOOK_TIMEOUT_SECONDS * 1000)),
    webhookConcurrency: p.WEBHOOK_CONCURRENCY,
  });
}

/** Human form of a duration in hours or minutes: 24 → "24", 0.5 → "0.5", 1/3 → "0.333". */
function formatNumber(n: number): string {
  return String(Number(n.toFixed(3)));
}

/** The start line every service logs, so `grep "Cache TTL"` works on any service's log. */
export function cacheSummary(config: Config): string {
  return `Cache TTL: ${formatNumber(config.cacheTtlHours)}h, Cleanup: ${formatNumber(config.cleanupIntervalMinutes)}min`;
}

/** Values outside the seed's recommendations: allowed, but each deserves a warning that says why. */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.cacheTtlHours < 1) {
    warnings.push(
      `CACHE_TTL_HOURS=${formatNumber(config.cacheTtlHours)} is below the recommended 1 h: results expire quickly and are downloaded or processed again`,
    );
  }
  if (config.cleanupIntervalMinutes < 5) {
    warnings.push(
      `CLEANUP_INTERVAL_MINUTES=${formatNumber(config.cleanupIntervalMinutes)} is below the recommended 5 min: sweeps this frequent add Redis and disk load for little gain`,
    );
  }
  if (config.cleanupIntervalMs > config.cacheTtlMs) {
    warnings.push(
      `CLEANUP_INTERVAL_MINUTES=${formatNumber(config.cleanupIntervalMinutes)} is longer than CACHE_TTL_HOURS=${formatNumber(config.cacheTtlHours)}: expired files stay on disk for up to one interval after they expire`,
    );
  }
  if (config.webhookUrls.length > 0 && !config.webhookSecret) {
    warnings.push(
      'WEBHOOK_URLS is set but WEBHOOK_SECRET is empty: webhooks are sent unsigned, so receivers cannot tell them from forgeries',
    );
  }
  const ttlSeconds = config.cacheTtlMs / 1000;
  for (const [name, seconds] of [
    ['DOWNLOAD_TIMEOUT_SECONDS', config.downloadTimeoutMs / 1000],
    ['NORMALIZE_TIMEOUT_SECONDS', config.normalizeTimeoutMs / 1000],
  ] as const) {
    if (seconds > ttlSeconds) {
      warnings.push(
        `${name}=${formatNumber(seconds)} is longer than CACHE_TTL_HOURS=${formatNumber(config.cacheTtlHours)}: a job that runs that long expires before it finishes and its result is discarded`,
      );
    }
  }
  return warnings;
}

/** The values every service announces, so operators can compare what each process runs with. */
export function effectiveConfig(config: Config): Record<string, string | number | boolean> {
  return {
    CACHE_TTL_HOURS: config.cacheTtlHours,
    CLEANUP_INTERVAL_MINUTES: config.cleanupIntervalMinutes,
    DATA_DIR: config.dataDir,
    STORAGE: config.storage,
    ALLOW_PRIVATE_URLS: config.allowPrivateUrls,
    NORMALIZE_TARGET_LUFS: config.normalizeTargetLufs,
    NORMALIZE_TRUE_PEAK_DB: config.normalizeTruePeakDb,
    MAX_DOWNLOAD_MB: config.maxDownloadBytes / MB,
    MAX_UPLOAD_MB: config.maxUploadBytes / MB,
    JOB_MAX_DELIVER: config.jobMaxDeliver,
    RATE_LIMIT_PER_MINUTE: config.rateLimitPerMinute,
    RATE_LIMIT_READS_PER_MINUTE: config.rateLimitReadsPerMinute,
    API_KEYS: config.apiKeys.length > 0 ? `${config.apiKeys.length} set` : 'off',
    WEBHOOK_URLS: config.webhookUrls.length,
    WEBHOOK_SECRET: config.webhookSecret ? 'set' : 'off',
    WEBHOOK_MAX_ATTEMPTS: config.webhookMaxAttempts,
    YTDLP_COOKIES_FILE: config.ytDlpCookiesFile || 'off',
    YTDLP_PROXY: redactedProxy(config.ytDlpProxy),
    SITE_CONCURRENCY: config.siteConcurrency,
    SITE_MIN_GAP_SECONDS: config.siteMinGapMs / 1000,
  };
}

/** A proxy URL without its credentials, for logs and `/admin/stats`: `http://***@proxy:3128`. */
export function redactedProxy(proxy: string): string {
  if (!proxy) return 'off';
  try {
    const u = new URL(proxy);
    return `${u.protocol}//${u.username || u.password ? '***@' : ''}${u.host}`;
  } catch {
    return '<invalid>';
  }
}

/**
 * Loads the configuration or stops the process with one clear line (exit code 1), never a
 * stack trace. Used by every service's `main.ts`.
 */
export function loadConfigOrExit(env: Record<string, string | undefined>): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
