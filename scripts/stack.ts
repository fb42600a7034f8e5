/**
 * `npm start`: the whole stack on one machine, as DESIGN.md "Running it" says.
 *
 * Reads `.env` (real environment variables win) and the one config schema, uses NATS and
 * Redis at the configured URLs when they answer and otherwise starts local `nats-server -js`
 * and `redis-server` with their data under DATA_DIR, then runs the four services as child
 * processes with one combined, readable log. A service that crashes is restarted with a
 * backoff, as a container runtime would; one that cannot even start (a bad config value)
 * stops the stack. Ctrl-C or SIGTERM stops the services first, then the servers, and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, existsSync, mkdirSync, type WriteStream } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { prettyFactory } from 'pino-pretty';
import { loadConfigOrExit, type Config } from '@media-jobs/libs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVICES = ['gateway', 'download-worker', 'normalize-worker', 'janitor'] as const;
/** A crash after this much uptime starts the backoff again from its first step. */
const STABLE_AFTER_MS = 60_000;
const MAX_BACKOFF_MS = 30_000;
const SERVER_STOP_GRACE_MS = 5_000;
/** npm forwards the terminal's Ctrl-C to us as well: a second signal this soon is the same one. */
const SAME_SIGNAL_WINDOW_MS = 1_500;

// --- combined log ---------------------------------------------------------------------

const useColor =
  process.env.NO_COLOR === undefined && (process.stdout.isTTY || process.env.FORCE_COLOR !== undefined);
const COLORS: Record<string, number> = {
  stack: 1,
  gateway: 36,
  'download-worker': 32,
  'normalize-worker': 35,
  janitor: 33,
  'nats-server': 34,
  'redis-server': 31,
};
const WIDTH = Math.max(...Object.keys(COLORS).map((n) => n.length));
const paint = (text: string, code: number | undefined): string =>
  useColor && code !== undefined ? `\x1b[${code}m${text}\x1b[0m` : text;

/** pino-http's request lines read as `GET /jobs/x → 200 (3 ms)` instead of two JSON objects. */
function messageFormat(log: Record<string, unknown>, messageKey: string): string {
  const req = log.req as { method?: string; url?: string } | undefined;
  const res = log.res as { statusCode?: number } | undefined;
  const msg = String(log[messageKey] ?? '');
  if (!req || !res) return msg;
  return `${req.method} ${req.url} → ${res.statusCode} (${String(log.responseTime ?? '?')} ms)${msg === 'request completed' ? '' : ` ${msg}`}`;
}

const pretty = prettyFactory({
  colorize: useColor,
  translateTime: 'SYS:HH:MM:ss.l',
  ignore: 'pid,hostname,service,req,res,responseTime',
  singleLine: true,
  messageFormat,
});

function emit(name: string, text: string, stream: 'stdout' | 'stderr' = 'stdout'): void {
  const prefix = `${paint(name.padEnd(WIDTH), COLORS[name])} │ `;
  const body = text.replace(/\n$/, '');
  for (const line of body.split('\n')) {
    process.stdout.write(`${prefix}${stream === 'stderr' ? paint(line, 31) : line}\n`);
  }
}

function log(level: 'info' | 'warn' | 'error', msg: string): void {
  emit('stack', pretty({ level, time: new Date().toISOString(), msg }));
}

// --- configuration ----------------------------------------------------------------------

const envFile = join(ROOT, '.env');
if (existsSync(envFile)) {
  try {
    process.loadEnvFile(envFile); // never overrides a variable that is already set
  } catch (err) {
    process.stderr.write(`Cannot read ${envFile}: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
const config: Config = loadConfigOrExit(process.env);

// --- supervised child processes ---------------------------------------------------------

interface ChildSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  onLine(line: string, stream: 'stdout' | 'stderr'): void;
  /**
   * Called when the process ended while nobody asked it to. Return a reason to stop the
   * whole stack instead of restarting it.
   */
  fatal?(code: number | null, signal: NodeJS.Signals | null, uptimeMs: number): string | undefined;
}

/** One child process, restarted with a doubling delay when it ends unasked. */
class Supervised {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private crashes = 0;
  private stopping = false;

  constructor(
    private readonly spec: ChildSpec,
    private readonly onFatal: (reason: string) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    const { name, command, args, env } = this.spec;
    const startedAt = Date.now();
    // Own process group: the terminal's Ctrl-C reaches only this script, which stops the
    // services before the servers they depend on.
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (l) => this.spec.onLine(l, 'stdout'));
    createInterface({ input: child.stderr! }).on('line', (l) => this.spec.onLine(l, 'stderr'));
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        log('error', `${name}: cannot run ${command}: ${err.message}`);
        resolve();
      });
      child.once('exit', (code, signal) => {
        resolve();
        if (this.child === child) this.child = undefined;
        if (this.stopping) return;
        const uptimeMs = Date.now() - startedAt;
        const reason = this.spec.fatal?.(code, signal, uptimeMs);
        if (reason !== undefined) {
          this.onFatal(reason);
          return;
        }
        this.crashes = uptimeMs > STABLE_AFTER_MS ? 1 : this.crashes + 1;
        const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.crashes - 1));
        log(
          'warn',
          `${name} exited (${signal ?? `code ${code}`}) after ${formatMs(uptimeMs)}; restarting in ${formatMs(delay)}`,
        );
        this.restartTimer = setTimeout(() => this.start(), delay);
      });
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; no restart afterwards. Safe to call twice. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => {
      log('warn', `${this.spec.name} did not stop within ${formatMs(graceMs)}; killing it`);
      child.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(killer);
  }

  /** Last resort when this script itself is going away. */
  killNow(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null)
      this.child.kill('SIGKILL');
  }
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(1))} s`;
}

// --- NATS and Redis ---------------------------------------------------------------------

function answers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function waitUntilAnswers(
  host: string,
  port: number,
  timeoutMs: number,
  failed: () => boolean,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !failed()) {
    if (await answers(host, port, 500)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '0.0.0.0', '::1', '[::1]', '::', '[::]']);

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** `nats-server` lives in /usr/sbin on Debian, which a user's PATH may lack. */
function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface ServerPlan {
  readonly name: 'nats-server' | 'redis-server';
  readonly url: string;
  readonly defaultPort: number;
  args(host: string, port: number, dir: string): string[];
}

const SERVER_PLANS: ServerPlan[] = [
  {
    name: 'nats-server',
    // A cluster's first server stands for it: one that answers means the cluster is there.
    url: config.natsServers[0] ?? config.natsUrl,
    defaultPort: 4222,
    args: (host, port, dir) => ['-js', '-a', host, '-p', String(port), '-sd', dir],
  },
  {
    name: 'redis-server',
    url: config.redisUrl,
    defaultPort: 6379,
    // Append-only file: job records survive a restart, like the files they point to.
    args: (host, port, dir) => [
      '--port',
      String(port),
      '--bind',
      host,
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--loglevel',
      'warning',
    ],
  },
];

/**
 * Uses the server at the configured URL when it answers; otherwise starts a local one and
 * adds it to `servers` at once, so a Ctrl-C during its start still stops it.
 */
async function ensureServer(plan: ServerPlan): Promise<void> {
  const url = new URL(plan.url);
  const host = hostOf(url);
  const port = url.port ? Number(url.port) : plan.defaultPort;
  if (await answers(host, port)) {
    log('info', `${plan.name}: using the one at ${plan.url}`);
    return;
  }
  if (!LOCAL_HOSTS.has(host)) {
    log(
      'warn',
      `${plan.name}: ${plan.url} does not answer and is not local; the services will keep retrying`,
    );
    return;
  }
  const command = findExecutable(plan.name);
  if (!command) throw new StackError(`${plan.name} is not installed: run \`npm run setup\``);
  const dir = join(config.dataDir, plan.name === 'nats-server' ? 'nats' : 'redis');
  const logDir = join(config.dataDir, 'logs');
  mkdirSync(dir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const logPath = join(logDir, `${plan.name}.log`);
  const file: WriteStream = createWriteStream(logPath, { flags: 'a' });
  const tail: string[] = [];
  let ended = false;
  const bindHost = host === 'localhost' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const server = new Supervised(
    {
      name: plan.name,
      command,
      args: plan.args(bindHost, port, dir),
      onLine(line) {
        file.write(`${line}\n`);
        tail.push(line);
        if (tail.length > 15) tail.shift();
      },
      fatal() {
        ended = true;
        // Its last complaints, without the start-up banner; the whole log is in the file.
        const complaints = tail.filter((l) => !/\[(INF|DBG|TRC)\]/.test(l)).slice(-5);
        if (complaints.length > 0) emit(plan.name, complaints.join('\n'), 'stderr');
        return undefined; // restart it
      },
    },
    fail,
  );
  servers.push(server);
  server.start();
  if (!(await waitUntilAnswers(host, port, 15_000, () => ended))) {
    await server.stop(SERVER_STOP_GRACE_MS);
    throw new StackError(
      `${plan.name} did not start on ${host}:${port}; see ${logPath}:\n${tail.join('\n')}`,
    );
  }
  log('info', `${plan.name}: started on ${plan.url} (pid ${server.pid}, data ${dir}, log ${logPath})`);
}

// --- services ---------------------------------------------------------------------------

function serviceSpec(service: string, entry: string): ChildSpec {
  let logged = false;
  const stderr: string[] = [];
  return {
    name: service,
    command: process.execPath,
    args: ['--conditions=media-jobs-source', '--import', 'tsx', entry],
    // An absolute DATA_DIR, so every service agrees with this script whatever its cwd.
    env: { ...process.env, DATA_DIR: config.dataDir },
    onLine(line, stream) {
      if (stream === 'stdout' && line.startsWith('{')) {
        logged = true;
        emit(service, pretty(line));
        return;
      }
      if (stream === 'stderr') {
        stderr.push(line);
        if (stderr.length > 20) stderr.shift();
      }
      emit(service, line, stream);
    },
    fatal(code, _signal, uptimeMs) {
      // Ended before its first log line, with a complaint on stderr: a bad config value or
      // code that does not load. Restarting would only repeat it.
      const failedToStart = code !== 0 && !logged && stderr.length > 0 && uptimeMs < STABLE_AFTER_MS;
      const reason = failedToStart ? `${service} could not start: ${stderr.at(-1)}` : undefined;
      logged = false;
      stderr.length = 0;
      return reason;
    },
  };
}

// --- main -------------------------------------------------------------------------------

class StackError extends Error {
  override readonly name = 'StackError';
}

const servers: Supervised[] = [];
const services: Supervised[] = [];
let stopping: Promise<void> | undefined;
let firstSignalAt = 0;

/** Services first (they drain NATS and finish work), then the servers this script started. */
function stopAll(code: number): Promise<void> {
  stopping ??= (async () => {
    const grace = config.shutdownGraceMs + 5_000;
    await Promise.all(services.map((s) => s.stop(grace)));
    await Promise.all(servers.map((s) => s.stop(SERVER_STOP_GRACE_MS)));
    log(code === 0 ? 'info' : 'error', code === 0 ? 'Stopped' : 'Stopped after an error');
    process.exit(code);
  })();
  return stopping;
}

function fail(reason: string): void {
  if (stopping) return;
  log('error', reason);
  void stopAll(1);
}

function onSignal(signal: NodeJS.Signals): void {
  const now = Date.now();
  if (!stopping) {
    firstSignalAt = now;
    log('info', `${signal}: stopping the services, then the servers (Ctrl-C again to force)`);
    void stopAll(0);
  } else if (now - firstSignalAt > SAME_SIGNAL_WINDOW_MS) {
    log('warn', `${signal} again: killing everything`);
    for (const child of [...services, ...servers]) child.killNow();
    process.exit(1);
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
// npm does not pass every signal on (a SIGTERM to `npm start` ends npm alone): when the
// parent goes away, stop as if it had sent SIGTERM.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid && !stopping) onSignal('SIGTERM');
}, 1000).unref();
process.on('exit', () => {
  for (const child of [...services, ...servers]) child.killNow();
});

async function main(): Promise<void> {
  log('info', `media-jobs stack: DATA_DIR ${config.dataDir}, HTTP on ${config.host}:${config.port}`);
  for (const plan of SERVER_PLANS) {
    // Sentinels name the master: there is no one URL to probe or local server to start.
    if (plan.name === 'redis-server' && config.redisSentinels.length > 0) continue;
    await ensureServer(plan);
    if (stopping) return;
  }
  for (const service of SERVICES) {
    const entry = join(service, 'src', 'main.ts');
    if (!existsSync(join(ROOT, entry))) {
      log('warn', `${service}: ${entry} does not exist; not started`);
      continue;
    }
    const supervised = new Supervised(serviceSpec(service, entry), fail);
    services.push(supervised);
    supervised.start();
  }
  if (services.length === 0) throw new StackError('no service to start');
  log('info', `Started ${services.length} service(s); Ctrl-C stops them all`);
}

main().catch((err: unknown) => {
  fail(err instanceof StackError ? err.message : `stack failed: ${(err as Error).stack ?? String(err)}`);
});
