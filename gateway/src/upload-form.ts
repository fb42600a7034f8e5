import {
  OPERATIONS,
  OUTPUT_FORMATS,
  TARGET_LUFS_RANGE,
  badRequest,
  defaultOutputFormat,
  formatConflict,
  isOperation,
  isOutputFormat,
  roundLufs,
  sortOperations,
  type Operation,
  type OutputFormat,
} from '@media-jobs/libs';

/** What `POST /normalize` asks for, from its text fields. */
export interface NormalizeForm {
  operations: Operation[];
  format: OutputFormat;
  /** The loudness target for `normalize_volume`, or null without it. */
  targetLufs: number | null;
}

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['false', '0', 'no', 'off', ''];

const listOf = (value: unknown): string[] =>
  (Array.isArray(value) ? value : value === undefined ? [] : [value]).flatMap((v) => String(v).split(','));

function unknownOperation(name: string) {
  return badRequest(
    'normalize.unknown_operation',
    `unknown operation "${name.slice(0, 64)}"; valid operations: ${OPERATIONS.join(', ')}`,
    {
      valid_operations: OPERATIONS,
    },
  );
}

/**
 * Operations come as `operations[]` (or `operations`, repeated or comma-separated) and as
 * the origin's boolean fields such as `remove_noise=true`; both forms may be mixed.
 */
function parseOperations(body: Record<string, unknown>): Operation[] {
  const ops: Operation[] = [];
  for (const raw of [...listOf(body['operations']), ...listOf(body['operations[]'])]) {
    const name = raw.trim().toLowerCase();
    if (!name) continue;
    if (!isOperation(name)) throw unknownOperation(name);
    ops.push(name);
  }
  for (const name of OPERATIONS) {
    const flag = body[name];
    if (flag === undefined) continue;
    const value = String(flag).trim().toLowerCase();
    if (TRUE.includes(value)) ops.push(name);
    else if (!FALSE.includes(value))
      throw badRequest('normalize.invalid_flag', `${name} must be true or false`);
  }
  if (ops.length === 0) {
    throw badRequest(
      'normalize.no_operations',
      `at least one operation is required; valid operations: ${OPERATIONS.join(', ')}`,
      {
        valid_operations: OPERATIONS,
      },
    );
  }
  return sortOperations(ops);
}

/** The format asked for; without one, the default that holds what the operations promise. */
function parseFormat(body: Record<string, unknown>, operations: Operation[]): OutputFormat {
  const raw = body['format'];
  if (raw === undefined || raw === '') return defaultOutputFormat(operations);
  const format = String(raw).trim().toLowerCase();
  if (!isOutputFormat(format)) {
    throw badRequest(
      'normalize.unknown_format',
      `unknown format "${format.slice(0, 32)}"; valid formats: ${OUTPUT_FORMATS.join(', ')}`,
      {
        valid_formats: OUTPUT_FORMATS,
      },
    );
  }
  const conflict = formatConflict(format, operations);
  if (conflict) throw badRequest('normalize.format_conflict', conflict, { format, operations });
  return format;
}

function parseTarget(body: Record<string, unknown>, fallback: number): number {
  const raw = body['target_lufs'];
  if (raw === undefined || raw === '') return fallback;
  const text = String(raw).trim();
  const value = Number(text);
  if (
    !/^-?(\d+(\.\d*)?|\.\d+)$/.test(text) ||
    value < TARGET_LUFS_RANGE.min ||
    value > TARGET_LUFS_RANGE.max
  ) {
    throw badRequest(
      'normalize.invalid_target',
      `target_lufs must be a number from ${TARGET_LUFS_RANGE.min} to ${TARGET_LUFS_RANGE.max}`,
    );
  }
  return roundLufs(value);
}

export function parseNormalizeForm(body: unknown, defaultTargetLufs: number): NormalizeForm {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const operations = parseOperations(fields);
  const format = parseFormat(fields, operations);
  const target = parseTarget(fields, defaultTargetLufs);
  return { operations, format, targetLufs: operations.includes('normalize_volume') ? target : null };
}
