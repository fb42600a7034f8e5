import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { createInterface } from 'node:readline';
import { AppError } from './errors.js';

export interface RunOptions {
  /** Aborting kills the process (SIGTERM, then SIGKILL after `killGraceMs`). */
  signal?: AbortSignal;
  timeoutMs?: number;
  killGraceMs?: number;
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
  cwd?: string;
  /** Keep at most this many characters of stderr for the error message. */
  stderrTail?: number;
  /**
   * Niceness to run at (0 to 19; higher yields the CPU to others): for work nothing waits on
   * yet, so the processes on the critical path keep the cores.
   */
  nice?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
  aborted: boolean;
}

/**
 * Spawns a tool with an argument array (no shell), streams its output line by line, and
 * kills it on timeout or abort. Resolves with the exit status; never rejects for a
 * non-zero exit, so each caller maps the tool's own verdict to an error. Rejects with
 * `tool.missing` when the executable cannot be started.
 */
export function runProcess(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const tailLimit = options.stderrTail ?? 8000;
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ code: null, signal: null, stderr: '', timedOut: false, aborted: true });
      return;
    }
    // Its own process group, so a kill also reaches the tools it starts (yt-dlp runs ffmpeg).
    const child = spawn(command, args, {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    if (options.nice && child.pid) {
      try {
        setPriority(child.pid, Math.max(0, Math.min(19, options.nice)));
      } catch {
        // Not allowed here (or already gone): it runs at the default priority.
      }
    }
    let stderr = '';
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;

    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    };
    const kill = () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), options.killGraceMs ?? 3000);
    };
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          kill();
        }, options.timeoutMs)
      : undefined;
    const onAbort = () => {
      aborted = true;
      kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    createInterface({ input: child.stdout }).on('line', (line) => options.onStdoutLine?.(line));
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr = (stderr + line + '\n').slice(-tailLimit);
      options.onStderrLine?.(line);
    });

    child.on('error', (err: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      reject(
        new AppError(
          'tool.missing',
          `cannot run ${command}: ${err.code === 'ENOENT' ? 'not found' : err.message}`,
          {
            retryable: true,
            cause: err,
          },
        ),
      );
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal, stderr, timedOut, aborted });
    });
  });
}
