/**
 * A progress line for long work (restore in `recover`/`drill`, bench sections), drawn with
 * cli-progress on stderr - only when stderr is a terminal. On a pipe or in a CI log it draws
 * nothing; `log()` lines are then written as plain lines, so logs stay readable and greppable.
 *
 * The backends report steps, not bytes (a restore is one call), so the bar counts steps and the
 * elapsed time keeps moving while one step runs.
 */
import { MultiBar, Presets, SingleBar } from "cli-progress";

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface Progress {
  /** Move to step `index` (0-based; the bar shows index + 1 of total) with a label. */
  step(index: number, label: string): void;
  /** A line above the bar (TTY), or a plain line on the stream otherwise. */
  log(line: string): void;
  /** Remove the bar (call once, also on errors). */
  stop(): void;
}

export interface ProgressOptions {
  title: string;
  total: number;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Where log() lines go when there is no bar; default: the stream. */
  plain?: (line: string) => void;
}

export function progress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const plain = opts.plain ?? ((line: string) => stream.write(line + "\n"));
  if (!stream.isTTY) {
    return { step: () => undefined, log: plain, stop: () => undefined };
  }
  const bars = new MultiBar(
    {
      stream: stream as NodeJS.WritableStream,
      format: `${opts.title} [{bar}] {value}/{total} {label} | {duration_formatted}`,
      clearOnComplete: true,
      hideCursor: false,
      fps: 4, // elapsed time moves during one long step (a restore)
      autopadding: true,
    },
    Presets.shades_classic,
  );
  const bar: SingleBar = bars.create(opts.total, 0, { label: "starting" });
  let stopped = false;
  return {
    step(index, label) {
      if (!stopped) bar.update(Math.min(opts.total, Math.max(0, index + 1)), { label });
    },
    log(line) {
      if (stopped) plain(line);
      else bars.log(line + "\n");
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bars.update(); // writes log lines still buffered for the next redraw
      bars.stop();
    },
  };
}
