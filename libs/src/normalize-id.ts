import { z } from 'zod';

/** Operations of `POST /normalize` (the worker applies them in its own fixed order). */
export const OPERATIONS = [
  'normalize_volume',
  'remove_noise',
  'convert_to_mono',
  'highpass_filter',
  'sample_rate_16k',
] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Output formats of a normalize job; the first is the default. */
export const OUTPUT_FORMATS = ['opus', 'mp3', 'm4a', 'wav', 'flac'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const DEFAULT_OUTPUT_FORMAT: OutputFormat = 'opus';
/**
 * The format when a request names none and asks for `sample_rate_16k`: every Ogg Opus file
 * decodes at 48 kHz whatever it was encoded from, so opus cannot hold 16 kHz. FLAC holds the
 * same 16-bit samples as WAV, losslessly, in about half the bytes.
 */
export const DEFAULT_16K_FORMAT: OutputFormat = 'flac';

/** The output format of a request that names none. */
export function defaultOutputFormat(operations: readonly Operation[]): OutputFormat {
  return operations.includes('sample_rate_16k') ? DEFAULT_16K_FORMAT : DEFAULT_OUTPUT_FORMAT;
}

/** Why a format cannot hold what the operations promise, or null when it can. */
export function formatConflict(format: OutputFormat, operations: readonly Operation[]): string | null {
  if (format === 'opus' && operations.includes('sample_rate_16k'))
    return 'an Opus file always decodes at 48 kHz, so format opus cannot hold sample_rate_16k; leave format out (flac) or choose flac, wav, mp3 or m4a';
  return null;
}

/** The range of a request's `target_lufs`, the same rule as `NORMALIZE_TARGET_LUFS`. */
export const TARGET_LUFS_RANGE = { min: -70, max: -5 } as const;

export function isOperation(value: string): value is Operation {
  return (OPERATIONS as readonly string[]).includes(value);
}

export function isOutputFormat(value: string): value is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(value);
}

/** Distinct operations sorted by name, so the order a client sends them in never matters. */
export function sortOperations(operations: readonly Operation[]): Operation[] {
  return [...new Set(operations)].sort();
}

/** A loudness target on a 0.1 LU grid, so -14 and -14.04 are the same job. */
export function roundLufs(lufs: number): number {
  return Math.round(lufs * 10) / 10;
}

export interface SlugInput {
  operations: readonly Operation[];
  format: OutputFormat;
  /** The target asked for; only part of the slug with `normalize_volume` and when not the default. */
  targetLufs: number;
  defaultTargetLufs: number;
}

/**
 * The canonical operations slug: sorted operations, the format, and a non-default loudness
 * target (`lufs_m14_5` for -14.5), joined by `-`. Everything that changes the output is in
 * it, so two different outputs never share an id. Only `[A-Za-z0-9_-]`.
 */
export function operationsSlug(input: SlugInput): string {
  const parts: string[] = [...sortOperations(input.operations), input.format];
  const target = roundLufs(input.targetLufs);
  if (input.operations.includes('normalize_volume') && target !== roundLufs(input.defaultTargetLufs)) {
    parts.push(`lufs_${target < 0 ? 'm' : ''}${String(Math.abs(target)).replace('.', '_')}`);
  }
  return parts.join('-');
}

/** `<first 16 hex of sha256(file bytes)>_<slug>` (DESIGN.md). */
export function normalizeJobId(sha256: string, slug: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error('sha256 must be 64 lower-case hex digits');
  return `${sha256.slice(0, 16)}_${slug}`;
}

/** The request a normalize job record holds; the gateway writes it, the worker reads it. */
export const normalizeRequestSchema = z.object({
  upload: z.object({
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    ext: z.string().regex(/^[a-z0-9]{1,8}$/),
    size: z.number().int().min(1),
    /** What the client called the file; informational, never used as a path. */
    original_name: z.string().nullable(),
  }),
  operations: z.array(z.enum(OPERATIONS)).min(1),
  format: z.enum(OUTPUT_FORMATS),
  /** The loudness target of `normalize_volume`; null without it. */
  target_lufs: z.number().nullable(),
});
export type NormalizeRequest = z.infer<typeof normalizeRequestSchema>;
