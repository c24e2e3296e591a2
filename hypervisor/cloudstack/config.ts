/**
 * CloudStack provider configuration: where the API is, the key pair, the zone, timeouts.
 * Read from an object (Pulumi config / resource inputs) with the environment as fallback;
 * validated without touching the network so errors show at `pulumi preview` (`check`).
 *
 * Environment: CLOUDSTACK_API_URL, CLOUDSTACK_API_KEY, CLOUDSTACK_SECRET_KEY, CLOUDSTACK_ZONE,
 * CLOUDSTACK_VERIFY_TLS ("false" to turn off), CLOUDSTACK_TIMEOUT_MS, CLOUDSTACK_ASYNC_TIMEOUT_MS.
 *
 * The secret key must reach Pulumi as a secret (pulumi.secret / `pulumi config set --secret`);
 * `redactedConfig` is what may be logged or stored.
 */
import type { ValidationError } from "../../core/policy";

export interface CloudStackConfig {
  /** e.g. https://cloud.example.com/client/api */
  endpoint: string;
  apiKey: string;
  secretKey: string;
  /** Zone id (or name) new VMs go to when the VM spec does not say. */
  zone?: string;
  /** Default true. */
  verifyTls?: boolean;
  /** Per HTTP request, ms. Default 60 000. */
  timeoutMs?: number;
  /** Longest wait for one async job, ms. Default 1 800 000 (30 min). */
  asyncTimeoutMs?: number;
  /** First poll interval for async jobs, ms. Default 1 000. */
  pollIntervalMs?: number;
}

export type CloudStackConfigInput = Partial<Record<keyof CloudStackConfig, unknown>>;

export const CLOUDSTACK_ENV = {
  endpoint: "CLOUDSTACK_API_URL",
  apiKey: "CLOUDSTACK_API_KEY",
  secretKey: "CLOUDSTACK_SECRET_KEY",
  zone: "CLOUDSTACK_ZONE",
  verifyTls: "CLOUDSTACK_VERIFY_TLS",
  timeoutMs: "CLOUDSTACK_TIMEOUT_MS",
  asyncTimeoutMs: "CLOUDSTACK_ASYNC_TIMEOUT_MS",
} as const;

function envBool(v: string | undefined): boolean | string | undefined {
  if (v === undefined || v === "") return undefined;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  return v; // left for validation to reject
}

function envNum(v: string | undefined): number | string | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

/**
 * Merge explicit settings (win) with the environment. Values are not checked here; call
 * validateCloudStackConfig on the result.
 */
export function loadCloudStackConfig(input: CloudStackConfigInput = {}, env: NodeJS.ProcessEnv = process.env): CloudStackConfigInput {
  const pick = <T>(v: unknown, fallback: T) => (v === undefined || v === null || v === "" ? fallback : v);
  return {
    endpoint: pick(input.endpoint, env[CLOUDSTACK_ENV.endpoint]),
    apiKey: pick(input.apiKey, env[CLOUDSTACK_ENV.apiKey]),
    secretKey: pick(input.secretKey, env[CLOUDSTACK_ENV.secretKey]),
    zone: pick(input.zone, env[CLOUDSTACK_ENV.zone]),
    verifyTls: pick(input.verifyTls, envBool(env[CLOUDSTACK_ENV.verifyTls])),
    timeoutMs: pick(input.timeoutMs, envNum(env[CLOUDSTACK_ENV.timeoutMs])),
    asyncTimeoutMs: pick(input.asyncTimeoutMs, envNum(env[CLOUDSTACK_ENV.asyncTimeoutMs])),
    pollIntervalMs: input.pollIntervalMs,
  };
}

/** Check every field; each error names it. Pure. Never echoes the key values. */
export function validateCloudStackConfig(cfg: CloudStackConfigInput, prefix = "cloudstack"): ValidationError[] {
  const errs: ValidationError[] = [];
  const f = (n: string) => `${prefix}.${n}`;
  if (typeof cfg.endpoint !== "string" || cfg.endpoint.trim() === "") {
    errs.push({ field: f("endpoint"), message: `is required: the API URL, e.g. https://cloud.example.com/client/api (or set ${CLOUDSTACK_ENV.endpoint})` });
  } else {
    let url: URL | undefined;
    try {
      url = new URL(cfg.endpoint);
    } catch {
      errs.push({ field: f("endpoint"), message: `${JSON.stringify(cfg.endpoint)} is not a URL` });
    }
    if (url) {
      if (url.protocol !== "https:" && url.protocol !== "http:") errs.push({ field: f("endpoint"), message: `must be http(s), got ${url.protocol}` });
      if (url.username || url.password) errs.push({ field: f("endpoint"), message: "must not contain credentials; use apiKey/secretKey" });
      if (url.search) errs.push({ field: f("endpoint"), message: "must not contain a query string (the client adds command and signature)" });
      if (!/\/client\/api\/?$/.test(url.pathname)) {
        errs.push({ field: f("endpoint"), message: `should end with /client/api (CloudStack's API path), got ${url.pathname || "/"}` });
      }
    }
  }
  for (const k of ["apiKey", "secretKey"] as const) {
    const v = cfg[k];
    if (typeof v !== "string" || v.trim() === "") {
      errs.push({ field: f(k), message: `is required (or set ${CLOUDSTACK_ENV[k]})${k === "secretKey" ? "; store it as a Pulumi secret" : ""}` });
    } else if (/\s/.test(v)) {
      errs.push({ field: f(k), message: "contains whitespace; copy the key exactly as CloudStack shows it" });
    }
  }
  if (cfg.zone !== undefined && (typeof cfg.zone !== "string" || cfg.zone.trim() === "")) {
    errs.push({ field: f("zone"), message: "must be a zone id or name" });
  }
  if (cfg.verifyTls !== undefined && typeof cfg.verifyTls !== "boolean") {
    errs.push({ field: f("verifyTls"), message: `must be true or false, got ${JSON.stringify(cfg.verifyTls)}` });
  }
  for (const k of ["timeoutMs", "asyncTimeoutMs", "pollIntervalMs"] as const) {
    const v = cfg[k];
    if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v > 0)) {
      errs.push({ field: f(k), message: `must be a number of milliseconds > 0, got ${JSON.stringify(v)}` });
    }
  }
  if (typeof cfg.timeoutMs === "number" && typeof cfg.asyncTimeoutMs === "number" && cfg.asyncTimeoutMs < cfg.timeoutMs) {
    errs.push({ field: f("asyncTimeoutMs"), message: `(${cfg.asyncTimeoutMs}) is shorter than timeoutMs (${cfg.timeoutMs})` });
  }
  return errs;
}

export class CloudStackConfigError extends Error {
  constructor(readonly errors: ValidationError[]) {
    super("invalid CloudStack provider settings:\n" + errors.map((e) => `  - ${e.field}: ${e.message}`).join("\n"));
    this.name = "CloudStackConfigError";
  }
}

/** Load, validate, and return a complete config, or throw CloudStackConfigError listing every problem. */
export function resolveCloudStackConfig(input: CloudStackConfigInput = {}, env: NodeJS.ProcessEnv = process.env): CloudStackConfig {
  const cfg = loadCloudStackConfig(input, env);
  const errs = validateCloudStackConfig(cfg);
  if (errs.length) throw new CloudStackConfigError(errs);
  return cfg as CloudStackConfig;
}

/** The config with the keys replaced: safe for logs, state and error messages. */
export function redactedConfig(cfg: CloudStackConfigInput): Record<string, unknown> {
  return { ...cfg, apiKey: cfg.apiKey ? "<redacted>" : undefined, secretKey: cfg.secretKey ? "<redacted>" : undefined };
}
