/**
 * The CloudStack API client: signs every request (signature version 3), sends it with axios
 * (GET, or POST for large requests), turns CloudStack's error JSON into CloudStackError,
 * retries what is safe to retry, and waits for asynchronous jobs.
 *
 * The secret key lives in a private field: it is not enumerable, not in JSON.stringify or
 * util.inspect output, and never in a log line or an error message. Neither are the API key,
 * the signature or the request URL; logs name the command and its non-sensitive parameters.
 */
import axios, { AxiosInstance, AxiosError } from "axios";
import * as http from "http";
import * as https from "https";
import { ApiParams, encodeQuery, signRequest } from "./signing";
import { CloudStackError } from "./errors";
import { DEFAULT_RETRY_POLICY, RetryPolicy, commandKind, isAmbiguous, isRetryable, withRetry } from "./retry";

export interface CloudStackLogger {
  debug?(msg: string): void;
  info?(msg: string): void;
  warn?(msg: string): void;
}

export interface CloudStackClientOptions {
  /** The API endpoint, e.g. https://cloud.example.com/client/api */
  endpoint: string;
  apiKey: string;
  secretKey: string;
  /** Verify the server's TLS certificate. Default true; turn off only for a lab with a self-signed cert. */
  verifyTls?: boolean;
  /** Per HTTP request. Default 60 000 ms. */
  timeoutMs?: number;
  /** Longest wait for one asynchronous job. Default 30 min. */
  asyncTimeoutMs?: number;
  /** First and longest pause between queryAsyncJobResult polls. Default 1 000 / 10 000 ms. */
  pollIntervalMs?: number;
  maxPollIntervalMs?: number;
  /** Lifetime of a signed request (signature version 3 `expires`). Default 300 s. */
  signatureTtlSeconds?: number;
  retry?: Partial<RetryPolicy>;
  /** Requests whose encoded parameters are longer than this are sent as POST. Default 2 000. */
  postThresholdBytes?: number;
  logger?: CloudStackLogger;
}

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface AsyncResult {
  jobId: string;
  /** The id CloudStack returned with the job id (the new resource's id for creates), if any. */
  id?: string;
  /** `jobresult` of the finished job, e.g. { virtualmachine: {...} } or { success: true }. */
  result: Json;
}

export interface CallOptions {
  /** Force POST (CloudStack accepts both; POST carries large userdata). */
  post?: boolean;
  /** Do not retry at all. */
  noRetry?: boolean;
}

/** Parameter names whose values never appear in logs. */
const SENSITIVE = /^(apikey|secretkey|signature|password|userdata|sessionkey|token)$/i;

export function describeParams(params: ApiParams): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${SENSITIVE.test(k) ? "<redacted>" : v.length > 80 ? v.slice(0, 77) + "..." : v}`)
    .join(" ");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Convert any parameter value to CloudStack's string form; undefined values are dropped. */
export function toApiParams(params: Record<string, unknown>): ApiParams {
  const out: ApiParams = {};
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(",") : String(v);
  }
  return out;
}

export class CloudStackClient {
  readonly endpoint: string;
  readonly verifyTls: boolean;
  readonly timeoutMs: number;
  readonly asyncTimeoutMs: number;
  private readonly pollIntervalMs: number;
  /** First poll interval (for callers that poll resources themselves). */
  get pollMs(): number {
    return this.pollIntervalMs;
  }
  private readonly maxPollIntervalMs: number;
  private readonly ttl: number;
  private readonly policy: RetryPolicy;
  private readonly postThreshold: number;
  private readonly log: CloudStackLogger;
  private readonly http: AxiosInstance;
  readonly #apiKey: string;
  readonly #secretKey: string;

  constructor(opts: CloudStackClientOptions) {
    if (!opts.endpoint) throw new Error("CloudStackClient: endpoint is required");
    if (!opts.apiKey || !opts.secretKey) throw new Error("CloudStackClient: apiKey and secretKey are required");
    this.endpoint = opts.endpoint;
    this.verifyTls = opts.verifyTls ?? true;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.asyncTimeoutMs = opts.asyncTimeoutMs ?? 30 * 60_000;
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000;
    this.maxPollIntervalMs = opts.maxPollIntervalMs ?? 10_000;
    this.ttl = opts.signatureTtlSeconds ?? 300;
    this.policy = { ...DEFAULT_RETRY_POLICY, ...(opts.retry ?? {}) };
    this.postThreshold = opts.postThresholdBytes ?? 2000;
    this.log = opts.logger ?? {};
    this.#apiKey = opts.apiKey;
    this.#secretKey = opts.secretKey;
    this.http = axios.create({
      timeout: this.timeoutMs,
      // Keep-alive off: a dropped connection must not poison the next request.
      httpAgent: new http.Agent({ keepAlive: false }),
      httpsAgent: new https.Agent({ keepAlive: false, rejectUnauthorized: this.verifyTls }),
      validateStatus: () => true,
      responseType: "text",
      transformResponse: (d: unknown) => d,
      maxRedirects: 0,
    });
  }

  /** What this client is, without credentials (safe to log or serialise). */
  toJSON(): Record<string, unknown> {
    return { endpoint: this.endpoint, verifyTls: this.verifyTls, apiKey: "<redacted>", secretKey: "<redacted>" };
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `CloudStackClient(${this.endpoint})`;
  }

  /** Replace any credential that slipped into a text (e.g. a low-level error message). */
  private scrub(text: string): string {
    let out = text;
    for (const s of [this.#secretKey, this.#apiKey, encodeURIComponent(this.#secretKey), encodeURIComponent(this.#apiKey)]) {
      if (s) out = out.split(s).join("<redacted>");
    }
    return out.replace(/signature=[^&\s]+/gi, "signature=<redacted>").replace(/https?:\/\/\S+\?\S+/g, "<url redacted>");
  }

  /** One synchronous API call; returns the body under `<command>response`. Retries what is safe. */
  async call<T extends Json = Json>(command: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    const apiParams = toApiParams(params);
    return withRetry(
      () => this.send<T>(command, apiParams, opts),
      (e) => !opts.noRetry && isRetryable(e, command),
      this.policy,
      (e, n) => this.log.warn?.(`cloudstack: ${command} attempt ${n} failed (${(e as CloudStackError).errorCode}); retrying`),
    );
  }

  /**
   * A create that must not be repeated blindly. On an ambiguous failure (connection dropped,
   * timeout, a proxy's 502-504) `lookup` is asked whether the resource exists after all; if it
   * does, its value is returned, otherwise the create is sent again (within the retry policy).
   * A CloudStack answer (530 for vmsnapshot.max, 431...) is final and thrown at once.
   */
  async create<T>(
    attempt: () => Promise<T>,
    lookup: () => Promise<T | undefined>,
    command: string,
  ): Promise<T> {
    return withRetry(
      async () => {
        try {
          return await attempt();
        } catch (e) {
          if (isAmbiguous(e)) {
            const found = await lookup();
            if (found !== undefined) {
              this.log.info?.(`cloudstack: ${command} failed ambiguously (${e.errorCode}) but the resource exists; using it`);
              return found;
            }
          }
          throw e;
        }
      },
      (e) => isAmbiguous(e) || isRetryable(e, command),
      this.policy,
      (e, n) => this.log.warn?.(`cloudstack: ${command} attempt ${n} failed (${(e as CloudStackError).errorCode}); not found on lookup, sending again`),
    );
  }

  /**
   * An asynchronous command: send it, then poll queryAsyncJobResult with backoff until the job
   * succeeds (returns its jobresult) or fails (throws CloudStackError with the job's errorcode
   * and errortext), or asyncTimeoutMs passes (throws JOB_TIMEOUT).
   */
  async callAsync(command: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<AsyncResult> {
    const started = await this.call(command, params, opts);
    const jobId = started.jobid as string | undefined;
    if (!jobId) {
      throw new CloudStackError({ command, errorCode: "BAD_RESPONSE", errorText: `expected a jobid in the ${command} response` });
    }
    const result = await this.waitForJob(jobId, command);
    return { jobId, id: started.id as string | undefined, result };
  }

  /** Poll one job to its end. */
  async waitForJob(jobId: string, command = "queryAsyncJobResult"): Promise<Json> {
    const deadline = Date.now() + this.asyncTimeoutMs;
    let wait = this.pollIntervalMs;
    for (;;) {
      const r = await this.call("queryAsyncJobResult", { jobid: jobId });
      const status = Number(r.jobstatus);
      if (status === 1) {
        this.log.debug?.(`cloudstack: job ${jobId} (${command}) succeeded`);
        return (r.jobresult ?? {}) as Json;
      }
      if (status === 2) {
        const jr = (r.jobresult ?? {}) as Json;
        throw new CloudStackError({
          command,
          jobId,
          errorCode: typeof jr.errorcode === "number" ? jr.errorcode : Number(r.jobresultcode) || 530,
          errorText: this.scrub(String(jr.errortext ?? "the job failed without an error text")),
          csErrorCode: jr.cserrorcode,
        });
      }
      if (Date.now() + wait > deadline) {
        throw new CloudStackError({
          command,
          jobId,
          errorCode: "JOB_TIMEOUT",
          errorText: `job ${jobId} still pending after ${Math.round(this.asyncTimeoutMs / 1000)} s`,
        });
      }
      await sleep(wait);
      wait = Math.min(Math.ceil(wait * 1.5), this.maxPollIntervalMs);
    }
  }

  /** List every page of a list command; returns the array under `key` (empty when CloudStack returns {}). */
  async listAll<T = Json>(command: string, key: string, params: Record<string, unknown> = {}, pageSize = 500): Promise<T[]> {
    const out: T[] = [];
    for (let page = 1; ; page++) {
      const r = await this.call(command, { ...params, page, pagesize: pageSize });
      const items = (r[key] ?? []) as T[];
      out.push(...items);
      const count = typeof r.count === "number" ? r.count : undefined;
      if (items.length < pageSize || (count !== undefined && out.length >= count)) return out;
    }
  }

  private async send<T>(command: string, params: ApiParams, opts: CallOptions): Promise<T> {
    const signed = signRequest(command, params, { apiKey: this.#apiKey, secretKey: this.#secretKey, ttlSeconds: this.ttl });
    const body = encodeQuery(signed);
    const post = opts.post || body.length > this.postThreshold;
    this.log.debug?.(`cloudstack: ${post ? "POST" : "GET"} ${command} ${describeParams(params)}`);
    let res;
    try {
      res = post
        ? await this.http.post(this.endpoint, body, { headers: { "Content-Type": "application/x-www-form-urlencoded" } })
        : await this.http.get(`${this.endpoint}?${body}`);
    } catch (e) {
      const ax = e as AxiosError;
      const code = ax.code ?? "";
      const timeout = code === "ECONNABORTED" || code === "ETIMEDOUT" || /timeout/i.test(ax.message);
      const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/i.test(code);
      throw new CloudStackError({
        command,
        errorCode: tls ? "TLS" : timeout ? "TIMEOUT" : "NETWORK",
        networkCode: code || undefined,
        errorText: this.scrub(`${code ? code + ": " : ""}${ax.message || "request failed"}`),
      });
    }
    const text = typeof res.data === "string" ? res.data : JSON.stringify(res.data);
    let json: Json | undefined;
    try {
      json = JSON.parse(text) as Json;
    } catch {
      json = undefined;
    }
    const keyName = `${command.toLowerCase()}response`;
    const payload: Json | undefined =
      json && typeof json === "object"
        ? (json[keyName] ?? Object.entries(json).find(([k]) => k.endsWith("response") || k === "errorresponse")?.[1])
        : undefined;
    if (payload && typeof payload === "object" && payload.errorcode !== undefined) {
      throw new CloudStackError({
        command,
        errorCode: Number(payload.errorcode),
        errorText: this.scrub(String(payload.errortext ?? "no error text")),
        httpStatus: res.status,
        csErrorCode: payload.cserrorcode,
      });
    }
    if (res.status >= 400) {
      throw new CloudStackError({ command, errorCode: "HTTP", httpStatus: res.status, errorText: `HTTP ${res.status}` });
    }
    if (!payload || typeof payload !== "object") {
      throw new CloudStackError({ command, errorCode: "BAD_RESPONSE", httpStatus: res.status, errorText: `no ${keyName} in the answer` });
    }
    return payload as T;
  }

  /** Which commands this client treats as safe to repeat (exposed for tests and docs). */
  static kindOf(command: string) {
    return commandKind(command);
  }
}
