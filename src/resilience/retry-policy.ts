import type { RetryCondition } from '../config/types.ts';

/** The request never reached an instance: no connection was made. */
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** The connection broke before any response byte: the instance may or may not have seen the request. */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT']);

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Walks an error and its causes looking for the first Node/undici error code. */
export function rootErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  let code: string | undefined;
  for (let depth = 0; depth < 5 && current; depth++) {
    const candidate = (current as { code?: unknown }).code;
    if (typeof candidate === 'string') code = candidate;
    current = (current as { cause?: unknown }).cause;
  }
  return code;
}

/** `refused`: never connected; `reset`: connection broke before a response; both are connect failures. */
export type AttemptFailure = 'refused' | 'reset' | 'timeout' | 'other';

/** Classifies a failed attempt that produced no response. */
export function classifyAttemptError(error: unknown): AttemptFailure {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (NOT_CONNECTED_CODES.has(code)) return 'refused';
      if (TIMEOUT_CODES.has(code)) return 'timeout';
      if (RESET_CODES.has(code)) return 'reset';
    }
    current = (current as { cause?: unknown }).cause;
  }
  return 'other';
}

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method);
}

/** True when an upstream status may be retried on another instance for this method. */
export function isRetriableStatus(method: string, status: number, retryOn: readonly RetryCondition[]): boolean {
  if (status !== 502 && status !== 503 && status !== 504) return false;
  return isIdempotent(method) && retryOn.includes(String(status) as RetryCondition);
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
