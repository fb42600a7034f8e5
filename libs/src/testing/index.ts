export * from './servers.js';
export * from './fixtures.js';
export * from './http-fixture.js';
export * from './env.js';
export * from './load.js';
export * from './cluster.js';
export * from './wait.js';
export * from './job-queue.js';
