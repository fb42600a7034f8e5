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
    // Builds the services once, so the tests that spawn them run dist/main.js (fast start).
    globalSetup: ['./libs/src/testing/global-setup.ts'],
    // Budgets for a slow, loaded, shared 2-core machine: every wait inside a test is on a
    // condition with its own budget, so these only end a test that hangs; a test whose work
    // is larger sets its own, derived from that work.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // expect.poll gives up after 1 s by default: too little for an event on a loaded machine.
    expect: { poll: { timeout: 15_000 } },
    reporters: ['default'],
  },
});
