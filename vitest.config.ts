import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const libs = (path: string): string => fileURLToPath(new URL(`./libs/src/${path}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@media-jobs\/libs\/testing$/, replacement: libs('testing/index.ts') },
      { find: /^@media-jobs\/libs$/, replacement: libs('index.ts') },
    ],
  },
  test: {
    include: ['*/test/**/*.test.ts'],
    // Every test file starts its own nats-server and redis-server, and many spawn
    // ffmpeg or yt-dlp: two workers keep a 2-core machine responsive.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
