import { createLogger, loadConfigOrExit, logStartup, runService } from '@media-jobs/libs';
import { startJanitor } from './janitor.js';

const config = loadConfigOrExit(process.env);
const logger = createLogger('janitor', config);
logStartup(logger, config);
await runService('Janitor', logger, config.shutdownGraceMs, () => startJanitor(config, logger));
