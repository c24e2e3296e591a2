/**
 * CloudStackError: what went wrong, in CloudStack's own terms (errorcode, errortext, command)
 * plus one sentence on what to do about it. Messages never contain the API key, the secret
 * key, a signature or a request URL.
 */

/** CloudStack's ApiErrorCode values (org.apache.cloudstack.api.ApiErrorCode). */
export const API_ERROR_CODES = {
  UNAUTHORIZED: 401,
  METHOD_NOT_ALLOWED: 405,
  API_LIMIT_EXCEED: 429,
  MALFORMED_PARAMETER_ERROR: 430,
  PARAM_ERROR: 431,
  UNSUPPORTED_ACTION_ERROR: 432,
  INTERNAL_ERROR: 530,
  ACCOUNT_ERROR: 531,
  ACCOUNT_RESOURCE_LIMIT_ERROR: 532,
  INSUFFICIENT_CAPACITY_ERROR: 533,
  RESOURCE_UNAVAILABLE_ERROR: 534,
  RESOURCE_ALLOCATION_ERROR: 535,
  RESOURCE_IN_USE_ERROR: 536,
  NETWORK_RULE_CONFLICT_ERROR: 537,
} as const;

/** Codes that are not CloudStack's: the request never produced a CloudStack answer. */
export type LocalErrorCode =
  | "NETWORK" // connection refused/reset/dropped, DNS
  | "TLS" // the server's certificate is not trusted (not retried)
  | "TIMEOUT" // HTTP request timed out
  | "JOB_TIMEOUT" // async job still pending after asyncTimeoutMs
  | "BAD_RESPONSE" // not JSON, or not CloudStack-shaped
  | "HTTP"; // an HTTP error without a CloudStack body (e.g. a proxy's 502)

export type ErrorCode = number | LocalErrorCode;

const HINTS: Record<number, string> = {
  401:
    "CloudStack could not verify the API key or the request signature: check that the API key and secret key " +
    "are a matching, enabled pair (CLOUDSTACK_API_KEY / CLOUDSTACK_SECRET_KEY or the provider config) and that this " +
    "machine's clock is right (signed requests expire).",
  405: "CloudStack refused the HTTP method for this command.",
  429: "CloudStack's API rate limit was hit; slow down or ask the operator to raise api.throttling.max.",
  430: "a parameter was malformed; check its format.",
  431:
    "CloudStack rejected a parameter value: check the ids passed (zone, service offering, template, host, VM, " +
    "snapshot) exist and are visible to this account, and that the operation is allowed in the resource's current state.",
  432:
    "the command is not available: it does not exist in this CloudStack version, or the API key's role may not " +
    "use it (listHosts, listStoragePools and placing a VM on a host with hostid need a root-admin key), or the " +
    "action is not supported for this resource.",
  530: "CloudStack hit an internal error; see the management server log (management-server.log) for this command or job.",
  531: "the account is disabled, locked or otherwise unusable; ask the CloudStack operator.",
  532: "the account's resource limit is reached (VMs, snapshots, storage...); delete something or ask for a higher limit.",
  533: "no host or storage with enough free capacity could be found; free capacity or pick another host.",
  534: "a resource needed (host, storage pool, network) is unavailable; check host and primary storage state.",
  535: "CloudStack could not allocate the resource; see the management server log.",
  536: "the resource is in use by something else; retry when it is free.",
  537: "a network rule conflicts with an existing one.",
};

const LOCAL_HINTS: Record<LocalErrorCode, string> = {
  NETWORK: "the CloudStack API endpoint could not be reached or dropped the connection; check the endpoint URL, network and TLS settings.",
  TLS:
    "the API endpoint's TLS certificate is not trusted: give Node the CA (NODE_EXTRA_CA_CERTS=/path/ca.pem) or fix the certificate; verifyTls: false is for a lab only.",
  TIMEOUT: "the CloudStack API did not answer in time; raise timeoutMs or check the management server.",
  JOB_TIMEOUT:
    "the asynchronous job was still running when we stopped waiting; it may still finish - look it up (queryAsyncJobResult / the resource) before retrying.",
  BAD_RESPONSE: "the endpoint did not answer like a CloudStack API (is the URL .../client/api?).",
  HTTP: "the endpoint returned an HTTP error without a CloudStack error body (a proxy or load balancer in the way?).",
};

export function hintFor(code: ErrorCode): string {
  if (typeof code === "number") return HINTS[code] ?? (code >= 500 ? HINTS[530] : "see errortext.");
  return LOCAL_HINTS[code];
}

export interface CloudStackErrorInit {
  command: string;
  errorCode: ErrorCode;
  errorText: string;
  httpStatus?: number;
  /** CloudStack's cserrorcode (the Java exception class), when returned. */
  csErrorCode?: number;
  jobId?: string;
  /** Low-level network code (ECONNRESET, ...), when errorCode is NETWORK/TIMEOUT. */
  networkCode?: string;
  attempts?: number;
}

export class CloudStackError extends Error {
  readonly command: string;
  readonly errorCode: ErrorCode;
  readonly errorText: string;
  readonly httpStatus?: number;
  readonly csErrorCode?: number;
  readonly jobId?: string;
  readonly networkCode?: string;
  attempts?: number;

  constructor(init: CloudStackErrorInit) {
    const where = init.jobId ? `${init.command} (async job ${init.jobId})` : init.command;
    const code = typeof init.errorCode === "number" ? `errorcode ${init.errorCode}` : init.errorCode.toLowerCase().replace("_", " ");
    super(`CloudStack ${where} failed (${code}): ${init.errorText} - ${hintFor(init.errorCode)}`);
    this.name = "CloudStackError";
    this.command = init.command;
    this.errorCode = init.errorCode;
    this.errorText = init.errorText;
    this.httpStatus = init.httpStatus;
    this.csErrorCode = init.csErrorCode;
    this.jobId = init.jobId;
    this.networkCode = init.networkCode;
    this.attempts = init.attempts;
  }

  /** The id or entity does not exist (CloudStack says so with 431 and a text, or 432 for some commands). */
  get notFound(): boolean {
    return (
      (this.errorCode === 431 || this.errorCode === 432) &&
      /not found|does not exist|unable to find|cannot find|can not be found|entity does not exist|invalid parameter id value/i.test(this.errorText)
    );
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, message: this.message, command: this.command, errorCode: this.errorCode, errorText: this.errorText, jobId: this.jobId };
  }
}

export function isCloudStackError(e: unknown): e is CloudStackError {
  return e instanceof CloudStackError;
}
