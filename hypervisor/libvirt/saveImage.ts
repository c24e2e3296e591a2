/**
 * libvirt's QEMU save-image header (the format of `virsh save` files and of external snapshot
 * memory files): rewriting the domain XML embedded in it.
 *
 * `virsh restore --xml` may change paths but refuses another name or UUID ("Target domain name
 * ... does not match source"), which a drill needs (a copy under another name). libvirt leaves
 * room after the XML (the data area is padded, 64 KiB here), so the XML is rewritten in place:
 * the QEMU migration stream after the data area does not move.
 *
 * Layout (little-endian): magic[16] "LibvirtQemudSave", u32 version, u32 data_len,
 * u32 was_running, u32 compressed, u32 cookieOffset, u32 unused[14]; then data_len bytes:
 * the XML, NUL, optionally a cookie (at cookieOffset), NUL, zero padding; then the stream.
 */
import * as fs from "fs";

const MAGIC = "LibvirtQemudSave";
const PARTIAL_MAGIC = "LibvirtQemudPart";
const HEADER_SIZE = 16 + 4 * 5 + 4 * 14;

interface SaveImageData {
  dataLen: number;
  xml: string;
  cookie: string | null;
}

function readData(fd: number, file: string): SaveImageData {
  const header = Buffer.alloc(HEADER_SIZE);
  if (fs.readSync(fd, header, 0, HEADER_SIZE, 0) !== HEADER_SIZE) throw new Error(`${file}: too short for a libvirt save image`);
  const magic = header.toString("latin1", 0, 16);
  if (magic === PARTIAL_MAGIC) throw new Error(`${file}: an incomplete libvirt save image (the save did not finish)`);
  if (magic !== MAGIC) throw new Error(`${file}: not a libvirt save image (magic ${JSON.stringify(magic)})`);
  const dataLen = header.readUInt32LE(20);
  const cookieOffset = header.readUInt32LE(32);
  const data = Buffer.alloc(dataLen);
  if (fs.readSync(fd, data, 0, dataLen, HEADER_SIZE) !== dataLen) throw new Error(`${file}: truncated save image header`);
  const xmlEnd = data.indexOf(0);
  const xml = data.toString("utf8", 0, xmlEnd < 0 ? dataLen : xmlEnd);
  let cookie: string | null = null;
  if (cookieOffset > 0) {
    const end = data.indexOf(0, cookieOffset);
    cookie = data.toString("utf8", cookieOffset, end < 0 ? dataLen : end);
  }
  return { dataLen, xml, cookie };
}

/** The domain XML embedded in a save image. */
export function saveImageXml(file: string): string {
  const fd = fs.openSync(file, "r");
  try {
    return readData(fd, file).xml;
  } finally {
    fs.closeSync(fd);
  }
}

/** Replace the embedded domain XML in place; the migration stream is not touched. */
export function rewriteSaveImageXml(file: string, transform: (xml: string) => string): void {
  const fd = fs.openSync(file, "r+");
  try {
    const { dataLen, xml, cookie } = readData(fd, file);
    const newXml = Buffer.from(transform(xml), "utf8");
    const cookieBuf = cookie === null ? null : Buffer.from(cookie, "utf8");
    const needed = newXml.length + 1 + (cookieBuf ? cookieBuf.length + 1 : 0);
    if (needed > dataLen) throw new Error(`${file}: the new domain XML (${newXml.length} bytes) does not fit the image's ${dataLen}-byte data area`);
    const data = Buffer.alloc(dataLen); // zero padding
    newXml.copy(data, 0);
    let cookieOffset = 0;
    if (cookieBuf) {
      cookieOffset = newXml.length + 1;
      cookieBuf.copy(data, cookieOffset);
    }
    const cookieField = Buffer.alloc(4);
    cookieField.writeUInt32LE(cookieOffset);
    fs.writeSync(fd, data, 0, dataLen, HEADER_SIZE);
    fs.writeSync(fd, cookieField, 0, 4, 32);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
