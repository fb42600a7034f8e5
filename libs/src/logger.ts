import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from './config.js';
import { cacheSummary, configWarnings } from './config.js';

export type { Logger } from 'pino';

/** JSON lines on stdout; `npm start` pipes every service through pino-pretty into one log. */
export function createLogger(
  service: string,
  config: Pick<Config, 'logLevel'>,
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** The start lines every service writes: the seed's `Cache TTL: …` line and one warning per risky value. */
export function logStartup(logger: Logger, config: Config): void {
  logger.info(
    { cacheTtlHours: config.cacheTtlHours, cleanupIntervalMinutes: config.cleanupIntervalMinutes },
    cacheSummary(config),
  );
  for (const warning of configWarnings(config)) logger.warn(warning);
}
