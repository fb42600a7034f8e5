import { createLogger, loadConfigOrExit, logStartup, runService } from '@media-jobs/libs';
import { startNormalizeWorker } from './worker.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('normalize-worker', config);
logStartup(logger, config);
await runService('Normalize worker', logger, config.shutdownGraceMs, () =>
  startNormalizeWorker(config, logger),
);
