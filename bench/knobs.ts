/** What every bench script shares: its knobs from the environment and its progress lines. */

/** A positive integer knob from the environment, or `fallback`; a bad value stops the bench with one line. */
export function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`${name}=${JSON.stringify(raw)} must be a positive integer\n`);
    process.exit(1);
  }
  return n;
}

/** A progress line on stderr (the results table goes to stdout). */
export const progress = (msg: string): void => void process.stderr.write(`bench: ${msg}\n`);
