import { createLogger, loadConfigOrExit, logStartup, runService } from '@media-jobs/libs';
import { startDownloadWorker } from './worker.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('download-worker', config);
logStartup(logger, config);
await runService('Download worker', logger, config.shutdownGraceMs, () =>
  startDownloadWorker(config, logger),
);
