import { createLogger, handleShutdown, loadConfigOrExit, logStartup } from '@media-jobs/libs';
import { startDownloadWorker } from './worker.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('download-worker', config);
logStartup(logger, config);
try {
  const worker = await startDownloadWorker(config, logger);
  handleShutdown(logger, () => worker.stop(), config.shutdownGraceMs);
} catch (err) {
  logger.fatal({ err }, 'Download worker failed to start');
  process.exit(1);
}
