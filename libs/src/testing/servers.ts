import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitUntil } from './wait.js';

/** A port the OS says is free now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` now. */
function accepts(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const sock = netConnect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  await waitUntil(`port ${port} to accept connections`, () => accepts(port), { timeoutMs });
}

export interface TestServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Stops the process (SIGTERM, then SIGKILL); data stays in `dir` for a restart. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops it and removes its data. Safe to call twice. */
  close(): Promise<void>;
}

async function killProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

export function managed(
  scheme: string,
  port: number,
  dir: string,
  command: string,
  args: string[],
): TestServer {
  let child: ChildProcess | undefined;
  let closed = false;
  const server: TestServer = {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    dir,
    async start() {
      const proc = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child = proc;
      let stderr = '';
      proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitUntil(`${command} to accept connections on port ${port}`, () => {
        // A server that died (port taken, bad argument) ends the wait at once, with its words.
        if (proc.exitCode !== null || proc.signalCode !== null)
          throw new Error(`${command} exited (${proc.exitCode ?? proc.signalCode}): ${stderr}`);
        return accepts(port);
      });
    },
    async stop() {
      await killProcess(child);
      child = undefined;
    },
    async close() {
      if (closed) return;
      closed = true;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** A real `nats-server -js` on a free port with its own store directory. */
export async function startNats(): Promise<TestServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mj-nats-'));
  const server = managed('nats', port, dir, 'nats-server', [
    '-js',
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '-sd',
    dir,
  ]);
  await server.start();
  return server;
}

export interface RedisOptions {
  /**
   * Keep data in an append-only file in `dir`, so a `stop()` and `start()` keep every key, as
   * production runs Redis (docker-compose.yml). Off by default: nothing persisted is faster.
   */
  appendonly?: boolean;
}

/** A real `redis-server` on a free port; nothing persisted unless `appendonly`. */
export async function startRedis(options: RedisOptions = {}): Promise<TestServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mj-redis-'));
  const server = managed('redis', port, dir, 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    options.appendonly ? 'yes' : 'no',
    '--dir',
    dir,
  ]);
  await server.start();
  return server;
}

/** A fresh DATA_DIR in the OS temp folder. */
export async function tempDataDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mj-data-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
