/** Rewriting the domain XML inside a libvirt save image, in place, without moving the stream. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { rewriteSaveImageXml, saveImageXml } from "../../hypervisor/libvirt/saveImage";
import { rewriteForHost } from "../../hypervisor/libvirt/domainXml";
import { protectionElement, stripProtectionElement } from "../../hypervisor/libvirt/metadata";
import { withPolicyDefaults } from "../../core/policy";

/** A save image as libvirt writes one: header, XML NUL cookie NUL padding, then the QEMU stream. */
function makeImage(file: string, xml: string, cookie: string | null, dataLen = 4096, stream = Buffer.from("QEVM\0\0\0\x03stream-bytes")) {
  const header = Buffer.alloc(92);
  header.write("LibvirtQemudSave", 0, "latin1");
  header.writeUInt32LE(2, 16);
  header.writeUInt32LE(dataLen, 20);
  header.writeUInt32LE(1, 24);
  header.writeUInt32LE(0, 28);
  const data = Buffer.alloc(dataLen);
  data.write(xml, 0, "utf8");
  if (cookie) {
    header.writeUInt32LE(Buffer.byteLength(xml) + 1, 32);
    data.write(cookie, Buffer.byteLength(xml) + 1, "utf8");
  }
  fs.writeFileSync(file, Buffer.concat([header, data, stream]));
  return stream;
}

describe("save image XML", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-saveimg-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("a longer XML is written in place; the cookie moves with it; the stream is untouched", () => {
    const file = path.join(dir, "a.img");
    const stream = makeImage(file, "<domain><name>vm</name></domain>", "<cookie>cpu</cookie>");
    const before = fs.statSync(file).size;
    rewriteSaveImageXml(file, (x) => rewriteForHost(x, { name: "vm-drill-0123456789" }));
    expect(saveImageXml(file)).toBe("<domain><name>vm-drill-0123456789</name></domain>\n");
    const buf = fs.readFileSync(file);
    expect(buf.length).toBe(before);
    expect(buf.subarray(buf.length - stream.length)).toEqual(stream);
    const cookieOffset = buf.readUInt32LE(32);
    expect(cookieOffset).toBe(Buffer.byteLength("<domain><name>vm-drill-0123456789</name></domain>\n") + 1);
    expect(buf.toString("utf8", 92 + cookieOffset, 92 + cookieOffset + 20)).toBe("<cookie>cpu</cookie>");
  });

  test("refuses what is not a complete save image, and XML that does not fit", () => {
    const partial = path.join(dir, "p.img");
    makeImage(partial, "<domain/>", null);
    const b = fs.readFileSync(partial);
    b.write("LibvirtQemudPart", 0, "latin1");
    fs.writeFileSync(partial, b);
    expect(() => saveImageXml(partial)).toThrow(/incomplete/);
    fs.writeFileSync(path.join(dir, "x.img"), "not an image at all, just some text padding it out to size".repeat(3));
    expect(() => saveImageXml(path.join(dir, "x.img"))).toThrow(/not a libvirt save image/);
    const small = path.join(dir, "s.img");
    makeImage(small, "<domain/>", null, 64);
    expect(() => rewriteSaveImageXml(small, () => `<domain>${"x".repeat(100)}</domain>`)).toThrow(/does not fit/);
  });

  test("a drill copy loses the protection record, nothing else", () => {
    const rec = { version: 1 as const, backend: "libvirt" as const, primaryHost: "qemu:///system", recoveryHosts: [], policy: withPolicyDefaults({ repository: "/r" }) };
    const xml = `<domain><name>c</name><metadata>${protectionElement(rec)}<other:x xmlns:other="urn:x">keep</other:x></metadata></domain>`;
    expect(stripProtectionElement(xml)).toBe(`<domain><name>c</name><metadata><other:x xmlns:other='urn:x'>keep</other:x></metadata></domain>\n`);
  });
});
