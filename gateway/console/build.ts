/**
 * Builds the web console (`src/`) into `gateway/dist/console/` with esbuild: one minified
 * script and one stylesheet, each with a linked source map. The gateway serves that folder
 * (`gateway/src/routes/console.ts`). Runs from `npm run build`, `npm start` and the console
 * test; `node --import tsx gateway/console/build.ts` builds it by hand.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const CONSOLE_OUT_DIR = fileURLToPath(new URL('../dist/console/', import.meta.url));
const source = (name: string): string => fileURLToPath(new URL(`./src/${name}`, import.meta.url));

/** Builds into `outDir`; resolves to the files written with their sizes. */
export async function buildConsole(outDir = CONSOLE_OUT_DIR): Promise<{ file: string; bytes: number }[]> {
  await mkdir(outDir, { recursive: true });
  const result = await build({
    entryPoints: [
      { in: source('main.ts'), out: 'app' },
      { in: source('console.css'), out: 'app' },
    ],
    outdir: outDir,
    bundle: true,
    minify: true,
    sourcemap: 'linked',
    format: 'iife',
    platform: 'browser',
    // Browsers of the last few years (EventSource, fetch streams and ES2022 everywhere).
    target: ['chrome109', 'firefox115', 'safari16'],
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  });
  await copyFile(source('icon.svg'), join(outDir, 'icon.svg'));
  return Object.entries(result.metafile.outputs).map(([file, out]) => ({ file, bytes: out.bytes }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files = await buildConsole();
  const list = files
    .filter((f) => !f.file.endsWith('.map'))
    .map((f) => `${relative(CONSOLE_OUT_DIR, f.file)} (${(f.bytes / 1024).toFixed(1)} KiB)`);
  console.log(`console: built ${list.join(', ')} in ${relative(process.cwd(), CONSOLE_OUT_DIR) || '.'}`);
}
