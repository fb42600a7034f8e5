import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, freePort, startPlatform, tempDataDir, type Platform } from '@media-jobs/libs/testing';

let platform: Platform;

beforeAll(async () => {
  platform = await startPlatform();
}, 60_000);

afterAll(async () => {
  await platform?.close();
});

/** Direct children of a process whose command line mentions `pattern`. */
async function childPids(parent: number, pattern: string): Promise<number[]> {
  const { stdout } = await promisify(execFile)('pgrep', ['-P', String(parent), '-f', pattern]).catch(() => ({
    stdout: '',
  }));
  return stdout.split('\n').filter(Boolean).map(Number);
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

/** `npm start`'s script as its own process, with its combined log collected. */
function startStack(env: Record<string, string>) {
  const stack = spawn(
    process.execPath,
    ['--conditions=media-jobs-source', '--import', 'tsx', 'scripts/stack.ts'],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  stack.stdout.on('data', (d: Buffer) => (out += d.toString()));
  stack.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => stack.once('exit', (code) => resolve(code)));
  return { stack, exited, output: () => out };
}

describe('npm start', () => {
  it('when a service of the stack crashes, then the stack restarts it, and SIGTERM stops everything with exit 0', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const { stack, exited, output } = startStack(
      platform.env({ PORT: String(port), LOG_LEVEL: 'info', SHUTDOWN_GRACE_SECONDS: '3' }),
    );
    try {
      await expect.poll(() => healthy(url), { timeout: 30_000, interval: 200 }).toBe(true);
      const [gatewayPid] = await childPids(stack.pid!, 'gateway/src/main.ts');
      expect(gatewayPid).toBeGreaterThan(0);

      process.kill(gatewayPid!, 'SIGKILL');
      await expect.poll(output, { timeout: 5000 }).toMatch(/gateway exited \(SIGKILL\).*restarting/);
      await expect.poll(() => healthy(url), { timeout: 30_000, interval: 200 }).toBe(true);
      const [restartedPid] = await childPids(stack.pid!, 'gateway/src/main.ts');
      expect(restartedPid).not.toBe(gatewayPid);

      const children = await childPids(stack.pid!, 'main.ts');
      expect(children).toHaveLength(4);
      stack.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(children.filter(alive)).toEqual([]);
    } finally {
      if (stack.exitCode === null) stack.kill('SIGKILL');
    }
  });

  it('when NATS and Redis do not answer at the configured URLs, then it runs its own under DATA_DIR and stops them with the rest', async () => {
    const [port, natsPort, redisPort] = [await freePort(), await freePort(), await freePort()];
    const data = await tempDataDir();
    const url = `http://127.0.0.1:${port}`;
    const { stack, exited, output } = startStack({
      PORT: String(port),
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      DATA_DIR: data.dir,
      LOG_LEVEL: 'info',
      SHUTDOWN_GRACE_SECONDS: '3',
    });
    try {
      await expect.poll(() => healthy(url), { timeout: 40_000, interval: 200 }).toBe(true);
      await expect
        .poll(async () => (await fetch(`${url}/ready`)).status, { timeout: 20_000, interval: 200 })
        .toBe(200);
      expect(output()).toMatch(new RegExp(`nats-server: started on nats://127.0.0.1:${natsPort}`));
      expect(output()).toMatch(new RegExp(`redis-server: started on redis://127.0.0.1:${redisPort}`));
      expect(existsSync(join(data.dir, 'nats'))).toBe(true);
      expect(existsSync(join(data.dir, 'redis'))).toBe(true);
      const servers = [
        ...(await childPids(stack.pid!, 'nats-server')),
        ...(await childPids(stack.pid!, 'redis-server')),
      ];
      expect(servers).toHaveLength(2);
      stack.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(servers.filter(alive)).toEqual([]);
    } finally {
      if (stack.exitCode === null) stack.kill('SIGKILL');
      await data.remove();
    }
  });
});
