/**
 * The one logger factory. pino, structured, with secrets redacted wherever they can appear:
 * request headers (Authorization, cookies), upstream credentials, tokens, presigned URLs.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  '*.authorization',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  'password',
  'token',
  'config.upstreams[*].password',
  'upstreams[*].password',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'berth' },
  };
  return destination ? pino(opts, destination) : pino(opts);
}
