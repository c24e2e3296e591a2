/**
 * What may be retried, and the p-retry policy that does it. The rule: retry only what can
 * succeed on retry.
 *
 * - CloudStack said "try again" (429, "please try again later", another task is running on the
 *   resource): every command kind is sent again.
 * - Reads (list*, query*, get*) are also retried on a transport failure (connection refused or
 *   dropped, timeout, a proxy's 502/503/504), on a bare HTTP 500 without a CloudStack body, and
 *   on 530/534 answers (a database or agent blip; reading again changes nothing).
 * - Commands that converge on a state (start, stop, destroy, delete*, update*, revert...) are
 *   retried on a transport failure: doing them twice ends in the same place.
 * - Creates (deploy*, create*, ...) are sent again only when the request certainly never
 *   reached CloudStack (connection refused, DNS). After an ambiguous failure (connection dropped
 *   mid-request, timeout, 502-504) `CloudStackClient.create` first looks the resource up.
 * - A CloudStack answer that is not "try again" - 530 for vmsnapshot.max, 431 for a bad
 *   parameter, 533 for no capacity - is CloudStack's decision: repeating the same request gets
 *   the same answer, so it is never retried. Nor is a failed async job (it ran).
 */
import pRetry = require("p-retry");
import { CloudStackError } from "./errors";

export type CommandKind = "read" | "converge" | "create";

const CONVERGE = /^(start|stop|reboot|destroy|expunge|recover|delete|remove|update|revertTo|enable|disable|cancel|prepare|reconnect|migrate|attach|detach|resize|scale)/i;

export function commandKind(command: string): CommandKind {
  if (/^(list|query|get)/i.test(command)) return "read";
  if (CONVERGE.test(command)) return "converge";
  return "create";
}

/** CloudStack answered, but the answer is "try again": the job queue is busy, or the rate limit. */
export function isBusy(e: CloudStackError): boolean {
  return (
    typeof e.errorCode === "number" &&
    (e.errorCode === 429 || /try again later|please try again|other active .*tasks|is busy|operation is in progress|concurrent operation/i.test(e.errorText))
  );
}

/** The request certainly did not reach CloudStack's command dispatcher. */
export function neverDelivered(e: CloudStackError): boolean {
  return e.errorCode === "NETWORK" && ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"].includes(e.networkCode ?? "");
}

/** No CloudStack answer arrived: the connection failed, timed out, or a proxy answered 502-504. */
export function isTransportFailure(e: CloudStackError): boolean {
  if (e.errorCode === "NETWORK" || e.errorCode === "TIMEOUT") return true;
  return e.errorCode === "HTTP" && e.httpStatus !== undefined && [502, 503, 504].includes(e.httpStatus);
}

/** A transient failure of some kind (for callers that only need "was this CloudStack's final word?"). */
export function isTransient(e: CloudStackError): boolean {
  return isTransportFailure(e) || isBusy(e);
}

/**
 * A create whose answer was lost: CloudStack may or may not have acted, so the resource must be
 * looked up before the create is sent again (CloudStackClient.create).
 */
export function isAmbiguous(e: unknown): e is CloudStackError {
  return e instanceof CloudStackError && !e.jobId && isTransportFailure(e) && !neverDelivered(e);
}

/** May this failure of `command` be retried without looking anything up first? */
export function isRetryable(e: unknown, command: string): boolean {
  if (!(e instanceof CloudStackError)) return false;
  if (e.jobId) return false; // the job ran and failed: repeating is a new decision, not a retry
  if (isBusy(e)) return true;
  switch (commandKind(command)) {
    case "read":
      return isTransportFailure(e) || (e.errorCode === "HTTP" && e.httpStatus === 500) || e.errorCode === 530 || e.errorCode === 534;
    case "converge":
      return isTransportFailure(e);
    default:
      return neverDelivered(e);
  }
}

export interface RetryPolicy {
  /** Further attempts after the first; default 4. */
  retries: number;
  /** Backoff: first wait, growth factor, longest wait (ms). */
  minTimeoutMs: number;
  factor: number;
  maxTimeoutMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 4, minTimeoutMs: 500, factor: 2, maxTimeoutMs: 8000 };

/**
 * Run `attempt` with p-retry; `shouldRetry` decides per failure. The error finally thrown is
 * the last CloudStackError, with `attempts` set.
 */
export async function withRetry<T>(
  attempt: (n: number) => Promise<T>,
  shouldRetry: (e: unknown) => boolean,
  policy: RetryPolicy,
  onRetry?: (e: unknown, attemptNumber: number) => void,
): Promise<T> {
  let attempts = 0;
  try {
    return await pRetry(
      async (n: number) => {
        attempts = n;
        try {
          return await attempt(n);
        } catch (e) {
          if (!shouldRetry(e)) throw new pRetry.AbortError(e as Error);
          throw e;
        }
      },
      {
        retries: policy.retries,
        factor: policy.factor,
        minTimeout: policy.minTimeoutMs,
        maxTimeout: policy.maxTimeoutMs,
        randomize: true,
        onFailedAttempt: (err) => {
          if (err.retriesLeft > 0) onRetry?.(err, err.attemptNumber);
        },
      },
    );
  } catch (e) {
    if (e instanceof CloudStackError) e.attempts = attempts;
    throw e;
  }
}
