import { createLogger, handleShutdown, loadConfigOrExit, logStartup } from '@media-jobs/libs';
import { startNormalizeWorker } from './worker.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('normalize-worker', config);
logStartup(logger, config);
try {
  const worker = await startNormalizeWorker(config, logger);
  handleShutdown(logger, () => worker.stop(), config.shutdownGraceMs);
} catch (err) {
  logger.fatal({ err }, 'Normalize worker failed to start');
  process.exit(1);
}
