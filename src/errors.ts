/**
 * The gateway's error catalogue: every error a client can receive from waygate itself
 * (as opposed to an upstream's own answer) is declared here once.
 */
export const GATEWAY_ERRORS = {
  BAD_REQUEST: { status: 400, message: 'The request could not be understood' },
  INVALID_PATH: { status: 400, message: 'The request path is not valid (it may escape the root with dot-segments)' },
  UNAUTHORIZED: { status: 401, message: 'A valid admin token is required (Authorization: Bearer <token>)' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No route matches this request' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request was not received in time' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is larger than the gateway accepts' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are larger than the gateway accepts' },
  NO_HEALTHY_INSTANCE: { status: 503, message: 'The service has no healthy instance' },
  CIRCUIT_OPEN: { status: 503, message: 'Every instance of the service is failing; circuit breakers are open' },
  OVERLOADED: { status: 503, message: 'The route has as many requests in flight as it allows' },
  UPSTREAM_UNAVAILABLE: { status: 502, message: 'The upstream could not be reached' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'The upstream did not answer in time' },
  UPSTREAM_INVALID_RESPONSE: { status: 502, message: 'The upstream answered with something that is not a valid HTTP response' },
  SHUTTING_DOWN: { status: 503, message: 'The gateway is shutting down' },
  INTERNAL_ERROR: { status: 500, message: 'The gateway failed to handle the request' },
} as const satisfies Record<string, { status: number; message: string }>;

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS;

/** An error that maps to one catalogue entry; thrown or passed around instead of ad-hoc status codes. */
export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly status: number;
  /** Seconds for the Retry-After header, when the client should come back later. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: GatewayErrorCode, options: { detail?: string; retryAfterSeconds?: number; cause?: unknown } = {}) {
    const entry = GATEWAY_ERRORS[code];
    // These are answers, not bugs: skip the stack capture, which dominates the cost of a fail-fast reply.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(options.detail ? `${entry.message}: ${options.detail}` : entry.message, { cause: options.cause });
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'GatewayError';
    this.code = code;
    this.status = entry.status;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The JSON body every gateway-made error response carries. */
export function errorBody(error: GatewayError, requestId: string): string {
  return JSON.stringify({ error: { code: error.code, message: error.message, requestId } });
}
