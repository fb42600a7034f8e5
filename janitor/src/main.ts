import { createLogger, handleShutdown, loadConfigOrExit, logStartup } from '@media-jobs/libs';
import { startJanitor } from './janitor.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('janitor', config);
logStartup(logger, config);
try {
  const janitor = await startJanitor(config, logger);
  handleShutdown(logger, () => janitor.stop(), config.shutdownGraceMs);
} catch (err) {
  logger.fatal({ err }, 'Janitor failed to start');
  process.exit(1);
}
