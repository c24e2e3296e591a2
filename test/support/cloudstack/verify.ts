/**
 * Server-side request verification for the loopback CloudStack, written from the published
 * rules and CloudStack's ApiServer.verifyRequest, and deliberately NOT sharing code with the
 * client's signing module (a shared bug would otherwise pass unnoticed):
 *   - every parameter but `signature`, names sorted as received (Java String order);
 *   - value encoded like java.net.URLEncoder (UTF-8 bytes; A-Z a-z 0-9 . - * _ kept;
 *     space -> '+', then '+' replaced by %20), joined `name=value` with '&';
 *   - the whole string lower-cased, HMAC-SHA1 with the secret, base64;
 *   - signatureVersion 3 needs `expires` (yyyy-MM-dd'T'HH:mm:ssZ) that has not passed.
 */
import { createHmac, timingSafeEqual } from "crypto";

function javaUrlEncode(value: string): string {
  const bytes = Buffer.from(value, "utf8");
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9.\-*_]/.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

export function unsignedRequest(params: Map<string, string>): string {
  const names = [...params.keys()].filter((n) => n.toLowerCase() !== "signature").sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names.map((n) => `${n}=${javaUrlEncode(params.get(n) as string).replace(/\+/g, "%20")}`).join("&");
}

export function expectedSignature(params: Map<string, string>, secret: string): string {
  return createHmac("sha1", Buffer.from(secret, "utf8")).update(Buffer.from(unsignedRequest(params).toLowerCase(), "utf8")).digest("base64");
}

/** Java's DateUtil.parseTZDateString: yyyy-MM-dd'T'HH:mm:ssZ with an RFC 822 zone (+0530). */
export function parseExpires(text: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2})(\d{2})$/.exec(text);
  if (!m) return undefined;
  const offset = (m[7] === "-" ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) - offset * 60_000);
}

export type VerifyResult = { ok: true; apiKey: string } | { ok: false; reason: string };

export function verifyRequest(params: Map<string, string>, secretFor: (apiKey: string) => string | undefined, now = new Date()): VerifyResult {
  let apiKey: string | undefined;
  let signature: string | undefined;
  let version: string | undefined;
  let expires: string | undefined;
  for (const [k, v] of params) {
    const l = k.toLowerCase();
    if (l === "apikey") apiKey = v;
    else if (l === "signature") signature = v;
    else if (l === "signatureversion") version = v;
    else if (l === "expires") expires = v;
  }
  if (!apiKey || !signature) return { ok: false, reason: "missing apiKey or signature" };
  if (version === "3") {
    if (!expires) return { ok: false, reason: "signature version 3 without expires" };
    const at = parseExpires(expires);
    if (!at) return { ok: false, reason: "bad expires format" };
    if (at.getTime() < now.getTime()) return { ok: false, reason: "request expired" };
  }
  const secret = secretFor(apiKey);
  if (!secret) return { ok: false, reason: "unknown apiKey" };
  const want = Buffer.from(expectedSignature(params, secret));
  const got = Buffer.from(signature);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return { ok: false, reason: "signature mismatch" };
  return { ok: true, apiKey };
}
