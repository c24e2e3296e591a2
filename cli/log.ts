/**
 * Structured logs (pino), created here so ops/ stays free of logging libraries: the scheduler
 * takes an event sink, recover/drill an onEvent callback.
 *
 * Lines are the events themselves plus `level`: no pid/hostname/time of pino's own (each event
 * carries `at`, ISO time), so `{"level":"info","event":"snapshot","at":...,"vm":...}` keeps
 * every field the scheduler wrote before the move to pino. Keys that could hold a secret are
 * redacted whatever event carries them.
 */
import pino, { Logger } from "pino";
import type { SchedulerEvent, SchedulerEventSink } from "../ops/scheduler";
import type { OutputStream } from "./program";
import { progress, Progress } from "../lib/progress";

const SECRET_KEYS = ["apiKey", "secretKey", "password", "passphrase", "token", "signature"];

export function jsonLogger(stream: OutputStream): Logger {
  return pino(
    {
      base: null,
      timestamp: false,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`)], censor: "[redacted]" },
    },
    { write: (line: string) => void stream.write(line) },
  );
}

/** Events that mean something needs attention are warnings; the rest are info. */
export function levelOf(e: SchedulerEvent): "info" | "warn" {
  return e.event === "snapshot-failed" || e.event === "host-down" ? "warn" : "info";
}

/** The scheduler's events as one JSON line each on `stream` (the CLI: stdout). */
export function schedulerSink(stream: OutputStream): SchedulerEventSink {
  const log = jsonLogger(stream);
  return (e) => log[levelOf(e)](e);
}

export interface StepEvent {
  step: string;
  at: string;
  detail: string;
}

export interface StepReporter {
  onEvent(e: StepEvent): void;
  stop(): void;
}

/**
 * Progress of a multi-step operation on stderr: with --json one JSON line per step (pino);
 * otherwise `[step] detail` lines, under a progress bar when stderr is a terminal.
 */
export function stepReporter(stderr: OutputStream, opts: { json: boolean; title: string; steps: readonly string[] }): StepReporter {
  if (opts.json) {
    const log = jsonLogger(stderr);
    return { onEvent: (e) => log.info(e), stop: () => undefined };
  }
  const bar: Progress = progress({ title: opts.title, total: opts.steps.length, stream: stderr });
  return {
    onEvent(e) {
      const i = opts.steps.indexOf(e.step);
      if (i >= 0) bar.step(i, e.step);
      bar.log(`[${e.step}] ${e.detail}`);
    },
    stop: () => bar.stop(),
  };
}
