/**
 * What may be retried, and the p-retry policy that does it.
 *
 * - Reads (list*, query*, get*) are retried on any transient failure.
 * - Commands that converge on a state (start, stop, destroy, delete*, update*, revert...)
 *   are retried on the same failures: doing them twice ends in the same place.
 * - Creates (deploy*, create*, ...) are never repeated blindly. They are retried only when
 *   the failure proves CloudStack never acted (connection refused; "busy, try again later";
 *   rate limit). After an ambiguous failure (connection dropped mid-request, timeout, 530)
 *   the caller must first look the resource up - see `CloudStackClient.create`.
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

/** CloudStack answered, but the answer is "try again": the job queue is busy, or a host/pool blinked. */
export function isBusy(e: CloudStackError): boolean {
  return (
    e.errorCode === 429 ||
    /try again later|please try again|other active .*tasks|is busy|operation is in progress|concurrent operation/i.test(e.errorText)
  );
}

/** The request certainly did not reach CloudStack's command dispatcher. */
export function neverDelivered(e: CloudStackError): boolean {
  return e.errorCode === "NETWORK" && ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"].includes(e.networkCode ?? "");
}

/** A transient failure: worth another attempt if the command kind allows it. */
export function isTransient(e: CloudStackError): boolean {
  if (e.errorCode === "NETWORK" || e.errorCode === "TIMEOUT") return true;
  if (e.errorCode === "HTTP") return e.httpStatus !== undefined && [502, 503, 504].includes(e.httpStatus);
  if (e.errorCode === 530 || e.errorCode === 534) return true;
  return typeof e.errorCode === "number" && isBusy(e);
}

/** May this failure of `command` be retried without looking anything up first? */
export function isRetryable(e: unknown, command: string): boolean {
  if (!(e instanceof CloudStackError)) return false;
  if (e.jobId) return false; // the job ran and failed: repeating is a new decision, not a retry
  if (!isTransient(e)) return false;
  const kind = commandKind(command);
  if (kind !== "create") return true;
  return neverDelivered(e) || isBusy(e);
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
