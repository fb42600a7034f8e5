import { SERVICES_BUILT_ENV } from './env.js';
import { buildServices } from './service-build.js';

/**
 * vitest's global setup: runs once per `vitest run`, in the main process, before any test
 * worker starts. It builds the services, so the ones a test spawns start from `dist/` in a
 * few hundred milliseconds instead of being compiled by tsx each time. The workers inherit
 * the environment set here.
 */
export default async function setup(): Promise<void> {
  const build = await buildServices();
  if (build.error) {
    console.warn(`global setup: services run from source (tsx), the build failed: ${build.error}`);
    return;
  }
  if (build.typeErrors) console.warn(`global setup: the build has type errors:\n${build.typeErrors}`);
  process.env[SERVICES_BUILT_ENV] = '1';
}
