import type { RetryCondition } from '../config/types.ts';

/** The request never reached an instance: no connection was made. */
const CONNECT_FAILURE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** The connection broke before any response byte: the instance may or may not have seen the request. */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** The instance answered, but not with valid HTTP/1.1 (bad status line, oversized or broken headers). */
const INVALID_RESPONSE_CODES = new Set(['UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE']);

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How an attempt that produced no usable response failed. */
export type AttemptFailure = 'connect-failure' | 'reset' | 'timeout' | 'invalid-response' | 'other';

/** Classifies a failed attempt from its error and causes (Node, undici and llhttp codes). */
export function classifyAttemptError(error: unknown): AttemptFailure {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    if ((current as { name?: unknown }).name === 'HTTPParserError') return 'invalid-response'; // llhttp refused the bytes
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (CONNECT_FAILURE_CODES.has(code)) return 'connect-failure';
      if (TIMEOUT_CODES.has(code)) return 'timeout';
      if (INVALID_RESPONSE_CODES.has(code) || code.startsWith('HPE_')) return 'invalid-response';
      if (RESET_CODES.has(code)) return 'reset';
    }
    current = (current as { cause?: unknown }).cause;
  }
  return 'other';
}

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method);
}

/**
 * Whether `retryOn` allows another attempt after this failure. A connect failure never reached an
 * instance, so it is safe for every method; a reset or a status may have been processed, so only
 * idempotent methods move on.
 */
export function retryAllowed(failure: AttemptFailure | number, method: string, retryOn: readonly RetryCondition[]): boolean {
  if (failure === 'connect-failure') return retryOn.includes('connect-failure');
  if (!isIdempotent(method)) return false;
  if (failure === 'reset') return retryOn.includes('reset');
  if (failure === 502 || failure === 503 || failure === 504) return retryOn.includes(String(failure) as RetryCondition);
  return false;
}

/** True when an upstream status may be retried on another instance for this method. */
export function isRetriableStatus(method: string, status: number, retryOn: readonly RetryCondition[]): boolean {
  return (status === 502 || status === 503 || status === 504) && retryAllowed(status, method, retryOn);
}

/** Small jittered backoff before a retry: 0..(10 ms × attempt), capped at 50 ms. */
export function retryBackoffMs(attempt: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(10 * attempt, 50));
}

/** Compiles a failureStatuses list into a fast lookup: true for upstream statuses that count as failures. */
export function failureStatusPredicate(statuses: readonly (number | '5xx')[]): (status: number) => boolean {
  const table = new Uint8Array(600);
  for (const entry of statuses) {
    if (entry === '5xx') table.fill(1, 500, 600);
    else table[entry] = 1;
  }
  return (status) => status < 600 && table[status] === 1;
}
