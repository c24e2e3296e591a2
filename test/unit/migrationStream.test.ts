/**
 * The migration-stream parser, the page-group store and the synthesizer on small streams built
 * here byte by byte in QEMU 7.2's layout (a real image is tens of MB; the lab test uses real
 * ones): what goes in comes back page for page, unchanged groups cost nothing, and every
 * feature the parser does not know is refused by name.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { PAGE_SIZE, parseSaveImage, RAM_FLAG, readBlockGroups, readRange, SECTION, UnsupportedStreamError, writeSaveImage } from "../../hypervisor/libvirt/migrationStream";
import { planRepair } from "../../hypervisor/libvirt/diffSnapshot";
import { ChunkStore } from "../../repository/chunks";
import { GROUP_BYTES, KnownGroups, readRegion, storeRegion } from "../../repository/pages";

const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const be64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(v / 2 ** 32), 0);
  b.writeUInt32BE(v % 2 ** 32, 4);
  return b;
};
const str8 = (s: string) => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, "latin1")]);

interface Opts {
  /** RAM record flags to inject (e.g. XBZRLE) into the first page record. */
  extraFlag?: number;
  compressed?: number;
  magic?: string;
  iterable?: string;
  subsection?: string;
  /** Send page 3 of block 0 twice (second with other content). */
  resend?: boolean;
}

/** A libvirt save image: 2 blocks (64 pages + 3 pages), some zero pages, device state "DEV". */
function buildImage(content: (block: number, page: number) => number, opts: Opts = {}): { image: Buffer; blocks: Array<{ id: string; pages: number }> } {
  const blocks = [
    { id: "pc.ram", pages: 70 },
    { id: "/rom@etc/acpi/tables", pages: 3 },
  ];
  const xml = Buffer.from("<domain><name>t</name></domain>");
  const dataLen = 4096;
  const header = Buffer.alloc(92);
  header.write(opts.magic ?? "LibvirtQemudSave", 0, "latin1");
  header.writeUInt32LE(2, 16);
  header.writeUInt32LE(dataLen, 20);
  header.writeUInt32LE(1, 24);
  header.writeUInt32LE(opts.compressed ?? 0, 28);
  const data = Buffer.alloc(dataLen);
  xml.copy(data);
  const parts: Buffer[] = [header, data, be32(0x5145564d), be32(3)];
  parts.push(Buffer.from([SECTION.CONFIGURATION]), be32(13), Buffer.from("pc-i440fx-7.2"));
  if (opts.subsection) parts.push(Buffer.from([SECTION.SUBSECTION]), str8(opts.subsection), be32(1), be32(0));
  const sid = 3;
  parts.push(Buffer.from([SECTION.START]), be32(sid), str8(opts.iterable ?? "ram"), be32(0), be32(4));
  const total = blocks.reduce((s, b) => s + b.pages * PAGE_SIZE, 0);
  parts.push(be64(total | RAM_FLAG.MEM_SIZE));
  for (const b of blocks) parts.push(str8(b.id), be64(b.pages * PAGE_SIZE));
  parts.push(be64(RAM_FLAG.EOS), Buffer.from([SECTION.FOOTER]), be32(sid));
  // Pages split over a PART and the END section; CONTINUE carries over the section boundary.
  let first = true;
  const pageRecords = (b: number, from: number, to: number, withId: boolean) => {
    for (let p = from; p < to; p++) {
      const v = content(b, p);
      const cont = p === from && withId ? 0 : RAM_FLAG.CONTINUE;
      let flags = (v === 0 ? RAM_FLAG.ZERO : RAM_FLAG.PAGE) | cont;
      if (first && opts.extraFlag) flags |= opts.extraFlag;
      first = false;
      parts.push(be64(p * PAGE_SIZE + flags));
      if (!cont) parts.push(str8(blocks[b].id));
      parts.push(v === 0 ? Buffer.from([0]) : Buffer.alloc(PAGE_SIZE, v));
    }
  };
  parts.push(Buffer.from([SECTION.PART]), be32(sid));
  pageRecords(0, 0, 40, true);
  parts.push(be64(RAM_FLAG.EOS), Buffer.from([SECTION.FOOTER]), be32(sid));
  parts.push(Buffer.from([SECTION.END]), be32(sid));
  pageRecords(0, 40, 70, false);
  pageRecords(1, 0, 3, true);
  if (opts.resend) {
    parts.push(be64(3 * PAGE_SIZE + RAM_FLAG.PAGE), str8(blocks[0].id), Buffer.alloc(PAGE_SIZE, 0xee));
  }
  parts.push(be64(RAM_FLAG.EOS), Buffer.from([SECTION.FOOTER]), be32(sid));
  parts.push(Buffer.from([SECTION.FULL]), be32(4), str8("timer"), be32(0), be32(2), Buffer.from("DEV"), Buffer.from([SECTION.FOOTER]), be32(4));
  parts.push(Buffer.from([SECTION.EOF]));
  return { image: Buffer.concat(parts), blocks };
}

const pattern = (b: number, p: number) => (b === 0 && p % 5 === 0 ? 0 : ((b * 31 + p) % 250) + 1);

describe("QEMU migration stream in a libvirt save image", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-ms-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (b: Buffer) => {
    const f = path.join(dir, `img-${Math.random().toString(36).slice(2)}.sav`);
    fs.writeFileSync(f, b);
    return f;
  };

  test("parses blocks, pages and the device-state tail", () => {
    const { image } = buildImage(pattern);
    const p = parseSaveImage(write(image));
    expect(p.machineType).toBe("pc-i440fx-7.2");
    expect(p.blocks.map((b) => [b.id, b.length])).toEqual([["pc.ram", 70 * PAGE_SIZE], ["/rom@etc/acpi/tables", 3 * PAGE_SIZE]]);
    expect(p.footers).toBe(true);
    expect(p.stats.zeroRecords).toBe(14);
    expect(p.stats.pageRecords).toBe(73 - 14);
    const tail = readRange(p.file, p.tailStart, p.size);
    expect(tail[0]).toBe(SECTION.FULL);
    expect(tail.subarray(tail.length - 1)[0]).toBe(SECTION.EOF);
    const groups = [...readBlockGroups(p, p.blocks[0], 64)];
    expect(groups.length).toBe(2);
    expect(groups[0]!.length).toBe(64 * PAGE_SIZE);
    expect(groups[1]!.length).toBe(6 * PAGE_SIZE);
    for (let pg = 0; pg < 70; pg++) {
      const g = groups[Math.floor(pg / 64)]!;
      expect(g[(pg % 64) * PAGE_SIZE]).toBe(pattern(0, pg));
    }
  });

  test("a page sent twice keeps its last content", () => {
    const p = parseSaveImage(write(buildImage(pattern, { resend: true }).image));
    expect(p.stats.resentPages).toBe(1);
    const g = [...readBlockGroups(p, p.blocks[0], 64)][0]!;
    expect(g[3 * PAGE_SIZE]).toBe(0xee);
  });

  test.each([
    ["XBZRLE pages", { extraFlag: RAM_FLAG.XBZRLE }, /XBZRLE/],
    ["compressed pages", { extraFlag: RAM_FLAG.COMPRESS_PAGE }, /COMPRESS_PAGE/],
    ["a compressed libvirt image", { compressed: 1 }, /compressed with format 1/],
    ["an unfinished save", { magic: "LibvirtQemudPart" }, /incomplete/],
    ["an iterable section other than RAM", { iterable: "block" }, /iterable section "block"/],
    ["an unknown configuration subsection", { subsection: "configuration/new-thing" }, /configuration\/new-thing/],
  ])("refuses %s with an error naming it", (_what, opts, message) => {
    const f = write(buildImage(pattern, opts as Opts).image);
    expect(() => parseSaveImage(f)).toThrow(UnsupportedStreamError);
    expect(() => parseSaveImage(f)).toThrow(message);
  });

  test("a truncated stream is refused", () => {
    const { image } = buildImage(pattern);
    const f = write(image.subarray(0, image.length - 200));
    expect(() => parseSaveImage(f)).toThrow(UnsupportedStreamError);
  });

  test("store as page groups, then synthesize: the new image parses to the same pages and tail", async () => {
    const { image } = buildImage(pattern);
    const p = parseSaveImage(write(image));
    const store = new ChunkStore(path.join(dir, "chunks"));
    const known = new KnownGroups();
    const regions = [];
    for (let i = 0; i < p.blocks.length; i++) {
      regions.push(await storeRegion(store, known, `ram:${i}`, p.blocks[i].length, readBlockGroups(p, p.blocks[i], GROUP_BYTES / PAGE_SIZE)));
    }
    const files = new Map(regions.flatMap((r) => r.files).map((f) => [f.role, f]));
    const out = path.join(dir, "synth.sav");
    const fh = await fs.promises.open(out, "w");
    await writeSaveImage(fh, readRange(p.file, 0, p.headEnd), readRange(p.file, p.tailStart, p.size), p, (bi) =>
      (async function* () {
        for await (const g of readRegion(store, regions[bi].layout, files)) yield { pages: g.length / PAGE_SIZE, data: g.data };
      })(),
    );
    await fh.close();
    const q = parseSaveImage(out);
    expect(q.blocks.map((b) => [b.id, b.length])).toEqual(p.blocks.map((b) => [b.id, b.length]));
    expect(readRange(q.file, q.tailStart, q.size).equals(readRange(p.file, p.tailStart, p.size))).toBe(true);
    for (let i = 0; i < p.blocks.length; i++) {
      const pagesOf = (img: typeof p) => Buffer.concat([...readBlockGroups(img, img.blocks[i], 64)].map((g, k) => g ?? Buffer.alloc(Math.min(64, img.blocks[i].pages.length - k * 64) * PAGE_SIZE)));
      expect(pagesOf(q).equals(pagesOf(p))).toBe(true);
    }
  });
});

describe("fixed page groups", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-pg-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const region = (size: number, fill: (g: number) => number) => {
    const out: Array<Buffer | null> = [];
    for (let g = 0; g * GROUP_BYTES < size; g++) {
      const v = fill(g);
      out.push(v === 0 ? null : Buffer.alloc(Math.min(GROUP_BYTES, size - g * GROUP_BYTES), v));
    }
    return out;
  };

  test("zero groups cost nothing; a second snapshot with one changed group stores one group and reuses untouched segments", async () => {
    const store = new ChunkStore(path.join(dir, "chunks"));
    const size = 520 * GROUP_BYTES + 4096; // 3 segments, last group short
    const first = await storeRegion(store, new KnownGroups(), "ram:0", size, region(size, (g) => (g % 3 === 0 ? 0 : (g % 200) + 1)));
    const nonZero = region(size, (g) => (g % 3 === 0 ? 0 : 1)).filter((g) => g).length;
    // Groups with equal content are one chunk (g % 200 repeats).
    expect(first.storedBytes).toBeLessThan(nonZero * GROUP_BYTES);
    expect(first.files.map((f) => f.role)).toEqual(["ram:0:0000", "ram:0:0001", "ram:0:0002"]);

    const known = new KnownGroups();
    const prev = { layout: first.layout, files: new Map(first.files.map((f) => [f.role, f])) };
    known.addRegion(prev);
    const changed = region(size, (g) => (g === 300 ? 251 : g % 3 === 0 ? 0 : (g % 200) + 1));
    const second = await storeRegion(store, known, "ram:0", size, changed, prev);
    expect(second.storedBytes).toBe(GROUP_BYTES);
    expect(second.newGroups).toBe(1);
    expect(second.reusedSegments).toBe(2);
    // And it reads back as written.
    const back: Buffer[] = [];
    for await (const g of readRegion(store, second.layout, new Map(second.files.map((f) => [f.role, f])))) back.push(g.data ?? Buffer.alloc(g.length));
    // (Buffer.equals: jest's toEqual on 150 MB buffers takes minutes)
    expect(Buffer.concat(back).equals(Buffer.concat(changed.map((g, i) => g ?? Buffer.alloc(Math.min(GROUP_BYTES, size - i * GROUP_BYTES)))))).toBe(true);
  });

  test("'unchanged' groups (disk clusters nobody wrote) are references to the previous snapshot", async () => {
    const store = new ChunkStore(path.join(dir, "chunks"));
    const size = 300 * GROUP_BYTES;
    const first = await storeRegion(store, new KnownGroups(), "vdisk:vda", size, region(size, (g) => (g < 10 ? g + 1 : 0)));
    const prev = { layout: first.layout, files: new Map(first.files.map((f) => [f.role, f])) };
    const known = new KnownGroups();
    known.addRegion(prev);
    const inputs = Array.from({ length: 300 }, (_, g) => (g === 5 ? Buffer.alloc(GROUP_BYTES, 99) : ("unchanged" as const)));
    const second = await storeRegion(store, known, "vdisk:vda", size, inputs, prev);
    expect(second.storedBytes).toBe(GROUP_BYTES);
    expect(second.reusedSegments).toBe(1); // the second segment; the first was rebuilt from the store
    const back: Buffer[] = [];
    for await (const g of readRegion(store, second.layout, new Map(second.files.map((f) => [f.role, f])))) back.push(g.data ?? Buffer.alloc(g.length));
    expect(back[5][0]).toBe(99);
    expect(back[4][0]).toBe(5);
    expect(back[20][0]).toBe(0);
  });
});

describe("repair before a take (planRepair)", () => {
  const pool = "/pool";
  const p = (f: string) => `${pool}/${f}`;
  const files = ["vm.qcow2", "vm.console.log", "vm.pvsnap-1.overlay.qcow2", "vm.pvsnap-2.overlay.qcow2", "vm.pvsnap-2.mem", "vm2.pvsnap-9.mem", "other.qcow2"];

  test("the chain a completed take leaves: keep it, remove only other staging files of this VM", () => {
    const plan = planRepair("vm", [p("vm.pvsnap-1.overlay.qcow2"), p("vm.qcow2")], p("vm.pvsnap-1.overlay.qcow2"), files, pool);
    expect(plan.foldAll).toBe(false);
    expect(plan.removeFiles).toEqual(["vm.pvsnap-2.overlay.qcow2", "vm.pvsnap-2.mem"]);
  });

  test("a take killed after its capture (its overlay on top of the kept one): fold everything, remove every staging file", () => {
    const plan = planRepair("vm", [p("vm.pvsnap-2.overlay.qcow2"), p("vm.pvsnap-1.overlay.qcow2"), p("vm.qcow2")], p("vm.pvsnap-1.overlay.qcow2"), files, pool);
    expect(plan.foldAll).toBe(true);
    expect(plan.removeFiles).toEqual(["vm.pvsnap-1.overlay.qcow2", "vm.pvsnap-2.overlay.qcow2", "vm.pvsnap-2.mem"]);
  });

  test("an overlay with no complete snapshot that kept it (first take killed): fold it", () => {
    expect(planRepair("vm", [p("vm.pvsnap-2.overlay.qcow2"), p("vm.qcow2")], undefined, files, pool).foldAll).toBe(true);
  });

  test("the base alone: nothing to fold; another VM's files are never touched", () => {
    const plan = planRepair("vm", [p("vm.qcow2")], p("vm.pvsnap-1.overlay.qcow2"), files, pool);
    expect(plan.foldAll).toBe(false);
    expect(plan.removeFiles).not.toContain("vm2.pvsnap-9.mem");
    expect(plan.removeFiles).not.toContain("other.qcow2");
  });
});
