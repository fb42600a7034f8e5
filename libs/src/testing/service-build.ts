import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, SERVICES } from './env.js';
import { waitUntil } from './wait.js';

const LOCK_DIR = join(REPO_ROOT, 'node_modules', '.cache', 'media-jobs', 'build.lock');

/** A lock whose owner died (a killed test run) is taken over; one without an owner file only after this. */
const ORPHAN_LOCK_MS = 120_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One build at a time across test runs in this tree: `mkdir` is atomic. */
async function tryLock(): Promise<boolean> {
  try {
    await mkdir(LOCK_DIR);
    await writeFile(join(LOCK_DIR, 'owner'), String(process.pid));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const owner = Number(await readFile(join(LOCK_DIR, 'owner'), 'utf8').catch(() => ''));
  const age = Date.now() - (await stat(LOCK_DIR).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
  if (owner > 0 ? !alive(owner) : age > ORPHAN_LOCK_MS) await rm(LOCK_DIR, { recursive: true, force: true });
  return false;
}

function tsc(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.build.json'],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** tsc's exit codes: 0 built; 2 built, with type errors; anything else, outputs skipped. */
const TSC_EMITTED = new Set([0, 2]);

/**
 * Builds every package's `dist/` (`npm run build`: `tsc -b`, incremental, so about half a
 * second when nothing changed), holding a lock so that two test runs in one tree never write
 * the same files at once. Type errors do not stop it (tsc still emits; `npm run typecheck`
 * reports them); `error` says why the services cannot run from `dist/`, and they then run
 * from source.
 */
export async function buildServices(): Promise<{ ms: number; typeErrors?: string; error?: string }> {
  const started = performance.now();
  await mkdir(join(LOCK_DIR, '..'), { recursive: true });
  await waitUntil('the build lock (another test run is building)', tryLock, {
    timeoutMs: 300_000,
    intervalMs: 100,
  });
  try {
    const { code, output } = await tsc();
    const missing = SERVICES.filter((s) => !existsSync(join(REPO_ROOT, s, 'dist', 'main.js')));
    const ms = Math.round(performance.now() - started);
    if (code === null || !TSC_EMITTED.has(code) || missing.length > 0) {
      const what = missing.length > 0 ? `; no dist/main.js in ${missing.join(', ')}` : '';
      return { ms, error: `tsc -b exited ${code}${what}:\n${output.slice(0, 3000)}` };
    }
    return code === 0 ? { ms } : { ms, typeErrors: output.slice(0, 3000) };
  } finally {
    await rm(LOCK_DIR, { recursive: true, force: true });
  }
}
