/**
 * QEMU's migration stream inside a libvirt save image (`virsh save`, external snapshot memory
 * files): parse it into RAM pages by (block, offset) plus opaque device state, and write a
 * stream back from those parts that `virsh restore` accepts.
 *
 * Why our own parser: no library reads QEMU's stream; it is a private, versioned format, so this
 * reads exactly the subset QEMU 7.2 writes for a precopy save (what this machine runs, see
 * shared/docs/lab-notes.md) and refuses everything else with an error naming the feature, so a
 * stream it does not understand is never stored (the caller then falls back to storing the file
 * as it is). Layout learned from QEMU 7.2 sources (not copied):
 *  - migration/savevm.c: QEMU_VM_FILE_MAGIC "QEVM", QEMU_VM_FILE_VERSION 3, section types
 *    EOF 0x00, SECTION_START 0x01, PART 0x02, END 0x03, FULL 0x04, SUBSECTION 0x05,
 *    VMDESCRIPTION 0x06, CONFIGURATION 0x07, COMMAND 0x08, SECTION_FOOTER 0x7e; START/FULL
 *    headers are be32 section id, u8 length + idstr, be32 instance id, be32 version id;
 *    PART/END carry only the section id; a footer repeats the section id. The configuration
 *    section (vmstate_configuration) is be32 length + machine type, then optional subsections
 *    configuration/target-page-bits, configuration/capabilities, configuration/uuid.
 *    qemu_savevm_state_complete_precopy() writes the END of every iterable section before any
 *    FULL (device) section, then EOF and the JSON VM description.
 *  - migration/ram.c (ram_save_setup, save_zero_page, save_normal_page, ram_load_precopy):
 *    each RAM record starts with be64 (page offset | RAM_SAVE_FLAG_*); without
 *    RAM_SAVE_FLAG_CONTINUE a u8 length + block idstr follows; ZERO (0x02) carries one fill
 *    byte, PAGE (0x08) a 4096-byte page, MEM_SIZE (0x04) the total RAM size and then every
 *    block as u8 length + idstr + be64 used length, EOS (0x10) ends the section's RAM data.
 *    XBZRLE (0x40), HOOK (0x80), COMPRESS_PAGE (0x100), MULTIFD_FLUSH (0x200) and FULL (0x01)
 *    are refused.
 * libvirt's own header (magic, XML, cookie, padding) is ./saveImage.ts.
 */
import * as fs from "fs";

export const PAGE_SIZE = 4096;
const QEVM_MAGIC = 0x5145564d;
const QEVM_VERSION = 3;
const LIBVIRT_MAGIC = "LibvirtQemudSave";
const LIBVIRT_PARTIAL_MAGIC = "LibvirtQemudPart";
const LIBVIRT_HEADER_SIZE = 16 + 4 * 5 + 4 * 14;

export const SECTION = { EOF: 0x00, START: 0x01, PART: 0x02, END: 0x03, FULL: 0x04, SUBSECTION: 0x05, VMDESCRIPTION: 0x06, CONFIGURATION: 0x07, COMMAND: 0x08, FOOTER: 0x7e } as const;
export const RAM_FLAG = { FULL: 0x01, ZERO: 0x02, MEM_SIZE: 0x04, PAGE: 0x08, EOS: 0x10, CONTINUE: 0x20, XBZRLE: 0x40, HOOK: 0x80, COMPRESS_PAGE: 0x100, MULTIFD_FLUSH: 0x200 } as const;
const FLAG_MASK = PAGE_SIZE - 1;

/** The stream uses something this parser does not know: store the file another way. */
export class UnsupportedStreamError extends Error {
  constructor(file: string, what: string) {
    super(`${file}: unsupported QEMU migration stream: ${what}`);
    this.name = "UnsupportedStreamError";
  }
}

export interface RamBlock {
  /** QEMU's RAMBlock idstr, e.g. "pc.ram", "/rom@etc/acpi/tables". */
  id: string;
  /** used_length in bytes. */
  length: number;
  /**
   * Where each page's final content is, by page index: > 0 the file offset of its 4096 bytes,
   * <= 0 a filled page with byte -value (0: a zero page). Pages never sent are zero pages (a
   * precopy save sends every page at least once; the destination's RAM starts zeroed anyway).
   */
  pages: Float64Array;
}

export interface ParsedSaveImage {
  file: string;
  size: number;
  /** Offset of "QEVM" (after libvirt's header and data area). */
  streamStart: number;
  /**
   * Bytes [0, headEnd) are copied verbatim on restore: libvirt header + XML, QEVM header,
   * configuration and the RAM setup section (block list).
   */
  headEnd: number;
  /** Bytes [tailStart, size): device state (FULL sections), EOF, VM description. */
  tailStart: number;
  ramSectionId: number;
  /** Whether sections end with footers (send-section-footer). */
  footers: boolean;
  machineType: string;
  blocks: RamBlock[];
  stats: { pageRecords: number; zeroRecords: number; resentPages: number; sections: number };
}

/** Sequential reader over a file with a large buffer (records are tiny, pages 4 KiB). */
class FileReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
    readonly file: string,
    private readonly blockSize = 8 * 1024 * 1024,
  ) {}

  private ensure(n: number): void {
    const have = this.bufStart + this.buf.length - this.pos;
    if (have >= n) return;
    if (this.pos + n > this.size) throw new UnsupportedStreamError(this.file, `truncated at offset ${this.pos} (need ${n} bytes, file has ${this.size})`);
    const len = Math.min(Math.max(n, this.blockSize), this.size - this.pos);
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const r = fs.readSync(this.fd, b, got, len - got, this.pos + got);
      if (r === 0) throw new UnsupportedStreamError(this.file, `short read at offset ${this.pos + got}`);
      got += r;
    }
    this.buf = b;
    this.bufStart = this.pos;
  }
  u8(): number {
    this.ensure(1);
    return this.buf[this.pos++ - this.bufStart];
  }
  peek(): number | undefined {
    if (this.pos >= this.size) return undefined;
    this.ensure(1);
    return this.buf[this.pos - this.bufStart];
  }
  be32(): number {
    this.ensure(4);
    const v = this.buf.readUInt32BE(this.pos - this.bufStart);
    this.pos += 4;
    return v;
  }
  be64(): number {
    this.ensure(8);
    const hi = this.buf.readUInt32BE(this.pos - this.bufStart);
    const lo = this.buf.readUInt32BE(this.pos - this.bufStart + 4);
    this.pos += 8;
    if (hi >= 0x200000) throw new UnsupportedStreamError(this.file, `64-bit value at offset ${this.pos - 8} is beyond 2^53`);
    return hi * 0x100000000 + lo;
  }
  bytes(n: number): Buffer {
    this.ensure(n);
    const s = this.pos - this.bufStart;
    this.pos += n;
    return Buffer.from(this.buf.subarray(s, s + n));
  }
  str(n: number): string {
    return this.bytes(n).toString("latin1");
  }
  skip(n: number): void {
    if (this.pos + n > this.size) throw new UnsupportedStreamError(this.file, `truncated at offset ${this.pos}`);
    this.pos += n;
  }
}

/** Offset of the QEMU stream in a libvirt save image; refuses compressed or partial images. */
export function libvirtStreamStart(fd: number, file: string): number {
  const h = Buffer.alloc(LIBVIRT_HEADER_SIZE);
  if (fs.readSync(fd, h, 0, h.length, 0) !== h.length) throw new UnsupportedStreamError(file, "too short for a libvirt save image");
  const magic = h.toString("latin1", 0, 16);
  if (magic === LIBVIRT_PARTIAL_MAGIC) throw new UnsupportedStreamError(file, "an incomplete libvirt save image (the save did not finish)");
  if (magic !== LIBVIRT_MAGIC) throw new UnsupportedStreamError(file, `not a libvirt save image (magic ${JSON.stringify(magic)})`);
  const version = h.readUInt32LE(16);
  if (version !== 2) throw new UnsupportedStreamError(file, `libvirt save image version ${version} (known: 2)`);
  const compressed = h.readUInt32LE(28);
  if (compressed !== 0) throw new UnsupportedStreamError(file, `libvirt save image compressed with format ${compressed} (only raw images are parsed)`);
  return LIBVIRT_HEADER_SIZE + h.readUInt32LE(20);
}

const KNOWN_FLAGS = RAM_FLAG.ZERO | RAM_FLAG.MEM_SIZE | RAM_FLAG.PAGE | RAM_FLAG.EOS | RAM_FLAG.CONTINUE;

function flagNames(flags: number): string {
  return Object.entries(RAM_FLAG)
    .filter(([, v]) => flags & v)
    .map(([k]) => k)
    .join("|") || `0x${flags.toString(16)}`;
}

/** Parse a libvirt save image written by QEMU 7.2; see the file comment for what is accepted. */
export function parseSaveImage(file: string): ParsedSaveImage {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const streamStart = libvirtStreamStart(fd, file);
    const r = new FileReader(fd, size, file);
    r.pos = streamStart;
    if (r.be32() !== QEVM_MAGIC) throw new UnsupportedStreamError(file, `no QEVM magic at offset ${streamStart}`);
    const version = r.be32();
    if (version !== QEVM_VERSION) throw new UnsupportedStreamError(file, `stream version ${version} (known: ${QEVM_VERSION})`);

    let machineType = "";
    if (r.peek() === SECTION.CONFIGURATION) {
      r.u8();
      machineType = r.str(r.be32());
      while (r.peek() === SECTION.SUBSECTION) {
        r.u8();
        const name = r.str(r.u8());
        const subVersion = r.be32();
        if (subVersion !== 1) throw new UnsupportedStreamError(file, `configuration subsection ${name} version ${subVersion}`);
        if (name === "configuration/target-page-bits") {
          const bits = r.be32();
          if (bits !== 12) throw new UnsupportedStreamError(file, `target page bits ${bits} (only 4 KiB pages)`);
        } else if (name === "configuration/capabilities") {
          const n = r.be32();
          for (let i = 0; i < n; i++) r.skip(r.u8());
        } else if (name === "configuration/uuid") {
          r.skip(16);
        } else {
          throw new UnsupportedStreamError(file, `configuration subsection ${JSON.stringify(name)}`);
        }
      }
    }

    const blocks: RamBlock[] = [];
    const byId = new Map<string, RamBlock>();
    const stats = { pageRecords: 0, zeroRecords: 0, resentPages: 0, sections: 0 };
    let ramSectionId = -1;
    let footers: boolean | undefined;
    let headEnd = -1;
    let ramEnded = false;
    let tailStart = -1;

    const readFooter = (sid: number): void => {
      if (footers === undefined) footers = r.peek() === SECTION.FOOTER;
      if (!footers) return;
      const t = r.u8();
      if (t !== SECTION.FOOTER) throw new UnsupportedStreamError(file, `missing section footer at offset ${r.pos - 1}`);
      const id = r.be32();
      if (id !== sid) throw new UnsupportedStreamError(file, `section footer for section ${id}, expected ${sid}`);
    };

    // The block of the last record carries over section boundaries (the loader's
    // ram_block_from_stream() keeps it in a static), so CONTINUE may start a section.
    let current: RamBlock | undefined;
    const readRam = (setup: boolean): void => {
      for (;;) {
        const at = r.pos;
        const word = r.be64();
        const flags = word % PAGE_SIZE;
        const addr = word - flags;
        if (flags & ~KNOWN_FLAGS & FLAG_MASK) throw new UnsupportedStreamError(file, `RAM record flags ${flagNames(flags)} at offset ${at}`);
        const kind = flags & ~RAM_FLAG.CONTINUE;
        if (kind === RAM_FLAG.EOS) return;
        if (kind === RAM_FLAG.MEM_SIZE) {
          if (!setup || blocks.length) throw new UnsupportedStreamError(file, `RAM block list outside the setup section at offset ${at}`);
          let left = addr;
          while (left > 0) {
            const id = r.str(r.u8());
            const length = r.be64();
            if (length % PAGE_SIZE || length <= 0 || length > left) throw new UnsupportedStreamError(file, `RAM block ${id} length ${length} (total left ${left})`);
            const b: RamBlock = { id, length, pages: new Float64Array(length / PAGE_SIZE) };
            blocks.push(b);
            byId.set(id, b);
            left -= length;
          }
          continue;
        }
        if (kind !== RAM_FLAG.ZERO && kind !== RAM_FLAG.PAGE) throw new UnsupportedStreamError(file, `RAM record flags ${flagNames(flags)} at offset ${at}`);
        if (!(flags & RAM_FLAG.CONTINUE)) {
          const id = r.str(r.u8());
          current = byId.get(id);
          if (!current) throw new UnsupportedStreamError(file, `page of unknown RAM block ${JSON.stringify(id)} at offset ${at}`);
        } else if (!current) {
          throw new UnsupportedStreamError(file, `CONTINUE page with no block before it at offset ${at}`);
        }
        if (addr >= current.length) throw new UnsupportedStreamError(file, `page offset ${addr} beyond block ${current.id} (${current.length} bytes)`);
        const index = addr / PAGE_SIZE;
        const seen = seenPages.get(current)!;
        if (seen[index]) stats.resentPages++;
        seen[index] = 1;
        if (kind === RAM_FLAG.ZERO) {
          current.pages[index] = -r.u8();
          stats.zeroRecords++;
        } else {
          current.pages[index] = r.pos;
          r.skip(PAGE_SIZE);
          stats.pageRecords++;
        }
      }
    };
    const seenPages = new Map<RamBlock, Uint8Array>();

    for (;;) {
      const at = r.pos;
      const type = r.peek();
      if (type === undefined) throw new UnsupportedStreamError(file, "stream ends without an EOF marker");
      if (ramEnded && (type === SECTION.FULL || type === SECTION.EOF)) {
        tailStart = at;
        break;
      }
      r.u8();
      stats.sections++;
      if (type === SECTION.START) {
        const sid = r.be32();
        const idstr = r.str(r.u8());
        r.be32(); // instance id
        const ver = r.be32();
        if (idstr !== "ram") throw new UnsupportedStreamError(file, `iterable section ${JSON.stringify(idstr)} (only RAM is known)`);
        if (ramSectionId >= 0) throw new UnsupportedStreamError(file, "a second RAM section start");
        if (ver !== 4) throw new UnsupportedStreamError(file, `RAM section version ${ver} (known: 4)`);
        ramSectionId = sid;
        readRam(true);
        if (!blocks.length) throw new UnsupportedStreamError(file, "RAM setup section has no block list");
        for (const b of blocks) seenPages.set(b, new Uint8Array(b.pages.length));
        readFooter(sid);
        headEnd = r.pos;
      } else if (type === SECTION.PART || type === SECTION.END) {
        const sid = r.be32();
        if (sid !== ramSectionId) throw new UnsupportedStreamError(file, `section ${sid} part/end at offset ${at} (not the RAM section)`);
        readRam(false);
        readFooter(sid);
        if (type === SECTION.END) ramEnded = true;
      } else if (type === SECTION.FULL || type === SECTION.EOF) {
        throw new UnsupportedStreamError(file, `device state at offset ${at} before the RAM section ended`);
      } else {
        throw new UnsupportedStreamError(file, `section type 0x${type.toString(16)} at offset ${at}`);
      }
    }
    if (headEnd < 0) throw new UnsupportedStreamError(file, "no RAM section");
    return { file, size, streamStart, headEnd, tailStart, ramSectionId, footers: footers ?? false, machineType, blocks, stats };
  } finally {
    fs.closeSync(fd);
  }
}

/** Groups of `groupPages` pages of one block, read from the parsed image: data or null for all-zero. */
export function* readBlockGroups(img: ParsedSaveImage, block: RamBlock, groupPages: number): Generator<Buffer | null> {
  const fd = fs.openSync(img.file, "r");
  try {
    const pages = block.pages.length;
    for (let g = 0; g * groupPages < pages; g++) {
      const first = g * groupPages;
      const n = Math.min(groupPages, pages - first);
      let allZero = true;
      for (let i = 0; i < n; i++) if (block.pages[first + i] !== 0) allZero = false;
      if (allZero) {
        yield null;
        continue;
      }
      const buf = Buffer.alloc(n * PAGE_SIZE);
      // Consecutive CONTINUE records (8-byte header + page) are read with one call.
      let i = 0;
      while (i < n) {
        const loc = block.pages[first + i];
        if (loc <= 0) {
          if (loc < 0) buf.fill(-loc, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
          i++;
          continue;
        }
        let run = 1;
        while (i + run < n && block.pages[first + i + run] === loc + run * (PAGE_SIZE + 8)) run++;
        if (run > 1) {
          const span = Buffer.allocUnsafe((run - 1) * (PAGE_SIZE + 8) + PAGE_SIZE);
          readExact(fd, span, 0, span.length, loc);
          for (let k = 0; k < run; k++) span.copy(buf, (i + k) * PAGE_SIZE, k * (PAGE_SIZE + 8), k * (PAGE_SIZE + 8) + PAGE_SIZE);
        } else {
          readExact(fd, buf, i * PAGE_SIZE, PAGE_SIZE, loc);
        }
        i += run;
      }
      yield isZero(buf) ? null : buf;
    }
  } finally {
    fs.closeSync(fd);
  }
}

function readExact(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, off + got, len - got, pos + got);
    if (n === 0) throw new Error(`short read at offset ${pos + got}`);
    got += n;
  }
}

/** Byte ranges to copy verbatim from the original image. */
export function readRange(file: string, start: number, end: number): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(end - start);
    readExact(fd, b, 0, b.length, start);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** What the synthesizer needs to know about the RAM section (from ParsedSaveImage). */
export interface StreamShape {
  ramSectionId: number;
  footers: boolean;
  blocks: Array<{ id: string; length: number }>;
}

function be64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(v / 0x100000000), 0);
  b.writeUInt32BE(v % 0x100000000, 4);
  return b;
}

/**
 * Write a save image: `head` (libvirt header + XML + QEVM header + configuration + RAM setup
 * section, verbatim), then one RAM END section carrying every page of every block in order
 * (ZERO records for zero pages, PAGE records otherwise), then `tail` (device state, EOF, VM
 * description, verbatim). `groups(blockIndex)` yields the block's content in groups of whole
 * pages (null = all zero). ram_load_precopy() accepts pages in any RAM section.
 */
export async function writeSaveImage(
  out: fs.promises.FileHandle,
  head: Buffer,
  tail: Buffer,
  shape: StreamShape,
  groups: (blockIndex: number) => AsyncIterable<{ pages: number; data: Buffer | null }>,
): Promise<number> {
  let pos = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (!pendingBytes) return;
    const b = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    let done = 0;
    while (done < b.length) done += (await out.write(b, done, b.length - done, pos + done)).bytesWritten;
    pos += b.length;
  };
  const push = async (b: Buffer) => {
    pending.push(b);
    pendingBytes += b.length;
    if (pendingBytes >= 8 * 1024 * 1024) await flush();
  };
  await push(head);
  const sec = Buffer.alloc(5);
  sec[0] = SECTION.END;
  sec.writeUInt32BE(shape.ramSectionId, 1);
  await push(sec);
  for (let bi = 0; bi < shape.blocks.length; bi++) {
    const block = shape.blocks[bi];
    let page = 0;
    const idBuf = Buffer.from(block.id, "latin1");
    for await (const g of groups(bi)) {
      for (let i = 0; i < g.pages; i++, page++) {
        const zero = g.data === null || isZeroPage(g.data, i * PAGE_SIZE);
        const flags = (zero ? RAM_FLAG.ZERO : RAM_FLAG.PAGE) | (page === 0 ? 0 : RAM_FLAG.CONTINUE);
        await push(be64(page * PAGE_SIZE + flags));
        if (page === 0) await push(Buffer.concat([Buffer.from([idBuf.length]), idBuf]));
        await push(zero ? Buffer.from([0]) : g.data!.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
      }
    }
    if (page * PAGE_SIZE !== block.length) throw new Error(`RAM block ${block.id}: ${page} pages written, block has ${block.length / PAGE_SIZE}`);
  }
  await push(be64(RAM_FLAG.EOS));
  if (shape.footers) {
    const f = Buffer.alloc(5);
    f[0] = SECTION.FOOTER;
    f.writeUInt32BE(shape.ramSectionId, 1);
    await push(f);
  }
  await push(tail);
  await flush();
  return pos;
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
function isZero(b: Buffer): boolean {
  for (let off = 0; off < b.length; off += PAGE_SIZE) if (!isZeroPage(b, off)) return false;
  return true;
}
function isZeroPage(b: Buffer, off: number): boolean {
  return b.compare(ZERO_PAGE, 0, PAGE_SIZE, off, off + PAGE_SIZE) === 0;
}
