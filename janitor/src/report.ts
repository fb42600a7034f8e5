import { orphanScanLine, type JanitorOrphanProgress, type JanitorSweepEvent } from '@media-jobs/libs';
import type { SweepTotals } from './sweep.js';

export type SweepTrigger = JanitorSweepEvent['trigger'];

/** What one sweep did: stored as `janitor:last_sweep`, returned by `POST /admin/cleanup`. */
export interface SweepSummary extends SweepTotals {
  trigger: SweepTrigger;
  instance: string;
  started_at: string;
  duration_ms: number;
  next_run_at: string | null;
  /** True when another janitor was sweeping, so this one did nothing. */
  skipped: boolean;
  /** The orphan pass's progress; absent when the sweep was skipped or stopped before it. */
  orphans?: JanitorOrphanProgress;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1288490189 → "1.2 GB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${Number(value.toFixed(1))} ${UNITS[unit]}`;
}

/** 30 → "30min", 0.5 → "30s", 90 → "1.5h". */
export function formatInterval(minutes: number): string {
  if (minutes < 1) return `${Number((minutes * 60).toFixed(1))}s`;
  if (minutes >= 120) return `${Number((minutes / 60).toFixed(2))}h`;
  return `${Number(minutes.toFixed(2))}min`;
}

/** The one info line per sweep, e.g. `Cleanup: removed 12 jobs (3 download, 9 normalize), freed 1.2 GB in 85 ms; next in 30min`. */
export function sweepLine(summary: SweepSummary, intervalMinutes: number): string {
  const { download, normalize, orphan } = summary.removed;
  const jobs = download + normalize;
  const orphans = orphan > 0 ? ` and ${orphan} orphan${orphan === 1 ? '' : 's'}` : '';
  return (
    `Cleanup: removed ${jobs} job${jobs === 1 ? '' : 's'} (${download} download, ${normalize} normalize)${orphans}, ` +
    `freed ${formatBytes(summary.bytes_freed)} in ${Math.round(summary.duration_ms)} ms; next in ${formatInterval(intervalMinutes)}` +
    orphanScanLine(summary.orphans)
  );
}

export function sweepEvent(summary: SweepSummary): Omit<JanitorSweepEvent, 'v' | 'at'> {
  return {
    type: 'sweep',
    trigger: summary.trigger,
    removed: summary.removed,
    files_removed: summary.files_removed,
    bytes_freed: summary.bytes_freed,
    duration_ms: summary.duration_ms,
    next_run_at: summary.next_run_at,
    ...(summary.orphans ? { orphans: summary.orphans } : {}),
  };
}
