import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../config.js';
import { startNats, startRedis, tempDataDir, type RedisOptions, type TestServer } from './servers.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Real nats-server, redis-server and a temp DATA_DIR for one test file. */
export interface Platform {
  nats: TestServer;
  redis: TestServer;
  dataDir: string;
  /** Environment for a service on this platform (what its process would get). */
  env(overrides?: Record<string, string>): Record<string, string>;
  config(overrides?: Record<string, string>): Config;
  close(): Promise<void>;
}

export interface PlatformOptions {
  redis?: RedisOptions;
}

export async function startPlatform(options: PlatformOptions = {}): Promise<Platform> {
  const [nats, redis, data] = await Promise.all([startNats(), startRedis(options.redis), tempDataDir()]);
  const env = (overrides: Record<string, string> = {}): Record<string, string> => ({
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    DATA_DIR: data.dir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ALLOW_PRIVATE_URLS: 'true',
    JOB_ACK_WAIT_SECONDS: '5',
    JOB_RETRY_DELAY_SECONDS: '1',
    // Tests fire bursts of requests (50 racing submissions); rate-limit tests turn it back on.
    RATE_LIMIT_PER_MINUTE: '0',
    RATE_LIMIT_READS_PER_MINUTE: '0',
    // Every fixture is on one site (127.0.0.1): pacing tests turn SITE_CONCURRENCY back on.
    SITE_CONCURRENCY: '0',
    ...overrides,
  });
  return {
    nats,
    redis,
    dataDir: data.dir,
    env,
    config: (overrides) => loadConfig(env(overrides)),
    async close() {
      await Promise.all([nats.close(), redis.close()]);
      await data.remove();
    },
  };
}

/** The services a test can run as their own process. */
export const SERVICES = ['gateway', 'download-worker', 'normalize-worker', 'janitor'] as const;

/**
 * Set (to "1") in the environment of a test run once every service's `dist/` is built from
 * the sources as they are now (`buildServices`, from vitest's global setup).
 */
export const SERVICES_BUILT_ENV = 'MEDIA_JOBS_SERVICES_BUILT';

export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /**
   * Resolves with the first line of output that matches; rejects when the process exits
   * first or after `timeoutMs` (default 30 s).
   */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM (or the given signal) and wait for the exit; resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * How a service is started: its compiled `dist/main.js` once the test run has built it (the
 * vitest global setup does, see `service-build.ts`), as `npm start -w <service>` and the
 * containers run it; otherwise `src/main.ts` through tsx, which compiles at every start.
 */
function serviceCommand(service: string): string[] {
  const compiled = join(REPO_ROOT, service, 'dist', 'main.js');
  if (process.env[SERVICES_BUILT_ENV] === '1' && existsSync(compiled)) {
    return ['--enable-source-maps', compiled];
  }
  return ['--conditions=media-jobs-source', '--import', 'tsx', `${service}/src/main.ts`];
}

/** Runs a service as its own process, as `npm start -w <service>` would. */
export function spawnService(service: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, serviceCommand(service), {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of listeners) l();
  };
  const onData = (d: Buffer) => {
    out += d.toString();
    notify();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // 'close' comes after 'exit' once every byte of output is in: only then has a line surely not come.
  let ended = false;
  child.once('close', () => {
    ended = true;
    notify();
  });
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = out.split('\n').find((l) => pattern.test(l));
          if (line !== undefined) {
            cleanup();
            resolve(line);
          } else if (ended) {
            cleanup();
            reject(
              new Error(
                `${service} exited (${describeExit(child)}) with no output matching ${pattern}:\n${out.slice(-3000)}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `${service}: no output matching ${pattern} within ${timeoutMs} ms:\n${out.slice(-3000)}`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

function describeExit(child: ChildProcess): string {
  return child.signalCode ? `signal ${child.signalCode}` : `code ${child.exitCode}`;
}
