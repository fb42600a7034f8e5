import { createLogger, handleShutdown, loadConfigOrExit, logStartup } from '@media-jobs/libs';
import { startGateway } from './gateway.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('gateway', config);
logStartup(logger, config);
try {
  const gateway = await startGateway(config, logger);
  handleShutdown(logger, () => gateway.stop(), config.shutdownGraceMs);
} catch (err) {
  logger.fatal({ err }, 'Gateway failed to start');
  process.exit(1);
}
