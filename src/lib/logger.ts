import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs; `pretty` (npm start on a terminal) renders them for people with pino-pretty. */
export function createLogger(level: string, name = 'billing', pretty = false): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } } : {}),
  });
}
