import { createLogger, loadConfigOrExit, logStartup, runService } from '@media-jobs/libs';
import { startGateway } from './gateway.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('gateway', config);
logStartup(logger, config);
await runService('Gateway', logger, config.shutdownGraceMs, () => startGateway(config, logger));
