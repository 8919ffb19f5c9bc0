import { pino, type Logger } from 'pino';

export type { Logger };

/** The gateway's structured logger (JSON lines on stdout); level from WAYGATE_LOG_LEVEL. */
export function createLogger(level = process.env.WAYGATE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'waygate', level });
}
