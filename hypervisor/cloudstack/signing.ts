/**
 * CloudStack API request signing (pure; no I/O).
 *
 * The rule, as CloudStack's management server checks it (ApiServer.verifyRequest):
 *   1. take every request parameter except `signature` (command, response, apikey,
 *      signatureversion, expires and the command's own parameters);
 *   2. sort them by parameter name;
 *   3. write `name=value` with each value URL-encoded the way Java's URLEncoder does it
 *      (UTF-8, unreserved = A-Z a-z 0-9 . - * _), except a space is `%20`, not `+`;
 *   4. join with `&` and lower-case the whole string;
 *   5. HMAC-SHA1 it with the secret key and base64 the digest.
 * The documentation says "lower-case, then sort"; the server sorts the names as received and
 * lower-cases afterwards. Both orders agree when every name is already lower case, so the
 * client always sends lower-case parameter names (CloudStack's own API names are lower case).
 *
 * Signature version 3 adds `signatureversion=3` and `expires=yyyy-MM-dd'T'HH:mm:ssZ`
 * (e.g. 2011-10-10T12:00:00+0530); the server refuses the request once `expires` has passed.
 */
import { createHmac } from "crypto";

export type ApiParams = Record<string, string>;

/** Percent-encode a value exactly as java.net.URLEncoder does, with `%20` for a space. */
export function encodeValue(value: string): string {
  // encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone; Java leaves only - _ . *
  return encodeURIComponent(value).replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** The string that is signed: sorted `name=encoded(value)` pairs joined by `&`, lower-cased. */
export function canonicalString(params: ApiParams): string {
  const names = Object.keys(params).filter((n) => n.toLowerCase() !== "signature");
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names
    .map((n) => `${n}=${encodeValue(params[n])}`)
    .join("&")
    .toLowerCase();
}

/** base64(HMAC-SHA1(secretKey, canonicalString(params))). */
export function computeSignature(params: ApiParams, secretKey: string): string {
  return createHmac("sha1", secretKey).update(canonicalString(params), "utf8").digest("base64");
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** `expires` in CloudStack's format, always in UTC: 2024-05-01T12:00:00+0000. */
export function formatExpires(date: Date): string {
  return (
    `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}+0000`
  );
}

/**
 * Parse a CloudStack timestamp (`yyyy-MM-dd'T'HH:mm:ssZ`, zone as +hhmm; also accepts +hh:mm
 * and Z). Returns undefined when the text is not in that format.
 */
export function parseCloudStackDate(text: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, zone] = m;
  let offsetMin = 0;
  if (zone !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
  }
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - offsetMin * 60_000;
  const out = new Date(utc);
  return Number.isNaN(out.getTime()) ? undefined : out;
}

export interface SignOptions {
  apiKey: string;
  secretKey: string;
  /** Signature version 3 lifetime; default 300 s. */
  ttlSeconds?: number;
  now?: Date;
}

/**
 * Every parameter to send for one request: the command's own parameters (names lower-cased),
 * `command`, `response=json`, `apikey`, `signatureversion=3`, `expires`, and `signature`.
 */
export function signRequest(command: string, params: ApiParams, opts: SignOptions): ApiParams {
  const now = opts.now ?? new Date();
  const expires = new Date(now.getTime() + (opts.ttlSeconds ?? 300) * 1000);
  const out: ApiParams = {};
  for (const [k, v] of Object.entries(params)) out[k.toLowerCase()] = v;
  out.command = command;
  out.response = "json";
  out.apikey = opts.apiKey;
  out.signatureversion = "3";
  out.expires = formatExpires(expires);
  delete out.signature;
  out.signature = computeSignature(out, opts.secretKey);
  return out;
}

/** `a=1&b=2` with values encoded as CloudStack expects (spaces as %20). */
export function encodeQuery(params: ApiParams): string {
  return Object.entries(params)
    .map(([k, v]) => `${encodeValue(k)}=${encodeValue(v)}`)
    .join("&");
}
