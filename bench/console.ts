/**
 * Host-side readers of a guest's serial console that timestamp every line on arrival.
 *
 * - PtyTap opens the console's pty (`<serial type='pty'><source path='/dev/pts/N'/>` from
 *   `virsh dumpxml`) in raw mode, no echo, and stamps each line with process.hrtime when it is
 *   read (event-driven, sub-millisecond). Used for the pause and throughput measurements.
 * - LogTail polls the console log file every few ms (coarser: bounded by the poll period). Used
 *   where no pty exists yet - a guest being restored or booted on another host.
 */
import * as fs from "fs";
import * as tty from "tty";
import type { VirshRunner } from "../hypervisor/libvirt/virsh";
import { serialPtyPath } from "../hypervisor/libvirt/domainXml";

export interface Line {
  /** Host time of arrival, ms since the epoch (fractional). */
  at: number;
  text: string;
}

/** Wall-clock ms with sub-ms resolution (hrtime anchored to Date.now() once). */
const anchorWall = Date.now();
const anchorHr = process.hrtime.bigint();
export function nowMs(): number {
  return anchorWall + Number(process.hrtime.bigint() - anchorHr) / 1e6;
}

export interface Tick {
  at: number;
  k: number;
}
export interface Count {
  at: number;
  n: number;
  work: number;
}

abstract class LineSink {
  readonly ticks: Tick[] = [];
  readonly counts: Count[] = [];
  readonly other: Line[] = [];
  private partial = "";
  private waiters: Array<{ re: RegExp; resolve: (l: Line) => void }> = [];

  protected feed(chunk: string, at: number): void {
    const text = this.partial + chunk;
    const parts = text.split(/\r?\n|\r/);
    this.partial = parts.pop() ?? "";
    for (const raw of parts) {
      const t = raw.trim();
      if (!t) continue;
      let m: RegExpExecArray | null;
      if ((m = /^T (\d+)$/.exec(t))) this.ticks.push({ at, k: Number(m[1]) });
      else if ((m = /^PVCOUNT (\d+) (\d+)$/.exec(t))) this.counts.push({ at, n: Number(m[1]), work: Number(m[2]) });
      else this.other.push({ at, text: t });
      if (this.waiters.length) {
        const line = { at, text: t };
        this.waiters = this.waiters.filter((w) => {
          if (!w.re.test(t)) return true;
          w.resolve(line);
          return false;
        });
      }
    }
  }

  /** Resolves with the first line arriving from now on that matches re. */
  next(re: RegExp, timeoutMs: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no console line matching ${re} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (l: Line) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ re, resolve: done });
    });
  }

  /** Counter lines received in [from, to] (host ms). */
  countsBetween(from: number, to: number): Count[] {
    return this.counts.filter((c) => c.at >= from && c.at <= to);
  }

  /** Longest gap between consecutive tick arrivals that overlaps [from, to] (ms); NaN without ticks. */
  longestTickGap(from: number, to: number): { gapMs: number; start: number; end: number } {
    let best = { gapMs: NaN, start: NaN, end: NaN };
    const ts = this.ticks;
    for (let i = 1; i < ts.length; i++) {
      const a = ts[i - 1].at;
      const b = ts[i].at;
      if (b < from || a > to) continue;
      if (!(best.gapMs >= b - a)) best = { gapMs: b - a, start: a, end: b };
    }
    return best;
  }

  abstract close(): void;
}

export class PtyTap extends LineSink {
  private stream?: tty.ReadStream;
  private fd?: number;

  private constructor(readonly ptyPath: string) {
    super();
  }

  /** Open the pty of serial 0 of a running domain. */
  static async open(virsh: VirshRunner, uri: string, name: string): Promise<PtyTap> {
    const { stdout } = await virsh.run(uri, ["dumpxml", name]);
    const pty = serialPtyPath(stdout);
    if (!pty) throw new Error(`no pty serial console in the live XML of ${name} on ${uri}`);
    const tap = new PtyTap(pty);
    tap.fd = fs.openSync(pty, fs.constants.O_RDWR | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
    const s = new tty.ReadStream(tap.fd);
    s.setRawMode(true); // no echo back into the guest, no line discipline delays
    s.setEncoding("latin1");
    s.on("data", (d: string) => tap.feed(d, nowMs()));
    s.on("error", () => undefined); // EIO when the guest goes away
    tap.stream = s;
    return tap;
  }

  close(): void {
    try {
      this.stream?.destroy();
    } catch {
      /* already gone */
    }
    this.stream = undefined;
  }
}

export class LogTail extends LineSink {
  private timer?: NodeJS.Timeout;
  private offset = 0;

  /** Start reading `file` from its current end (fromStart: from its beginning). */
  constructor(readonly file: string, pollMs = 10, fromStart = false) {
    super();
    if (!fromStart) {
      try {
        this.offset = fs.statSync(file).size;
      } catch {
        this.offset = 0;
      }
    }
    this.timer = setInterval(() => this.poll(), pollMs);
  }

  private poll(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, "r");
    } catch {
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < this.offset) this.offset = 0; // truncated / replaced
      if (size === this.offset) return;
      const buf = Buffer.alloc(size - this.offset);
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      this.feed(buf.subarray(0, n).toString("latin1"), nowMs());
    } finally {
      fs.closeSync(fd);
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
