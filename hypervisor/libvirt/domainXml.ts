/**
 * libvirt domain XML: build it from a VmSpec, rewrite it for another host, read it back, and
 * the accessors the rest of hypervisor/libvirt uses (disks, serial console, protection
 * metadata, pool target path). Pure functions: no I/O. Every document goes through the one
 * XML model in ./xml (fast-xml-parser underneath), so what we did not touch is written back
 * as it was; every value we put in is escaped, and characters XML 1.0 cannot carry (NUL and
 * most C0 controls) are rejected rather than silently dropped.
 */
import type { VmSpec } from "../backend";
import { PROTECTION_NS as PV_XMLNS, PROTECTION_PREFIX as PV_PREFIX } from "./metadata";
import {
  XmlElement,
  XmlError,
  checkChars,
  child,
  childAt,
  childElements,
  el,
  getAttr,
  insertAfter,
  namespaceAttr,
  namespaceOf,
  parseXml,
  removeChildren,
  serializeXml,
  setAttr,
  setText,
  stripIndentation,
  textOf,
} from "./xml";

export { PV_XMLNS, PV_PREFIX };
export { escapeXmlAttr, escapeXmlText, parseXml, serializeXml } from "./xml";
export type { XmlElement, XmlNode } from "./xml";
/** Errors about XML, the document's or a value's (the one error class of ./xml, under its older name). */
export const DomainXmlError = XmlError;
export type DomainXmlError = XmlError;

/** Parse a document whose root must be <rootName>. */
export function parseRoot(xml: string, rootName: string): XmlElement {
  const root = parseXml(xml);
  if (root.name !== rootName) throw new DomainXmlError(`expected a <${rootName}> document, got <${root.name}>`);
  return root;
}

// ------------------------------------------------------------------------------------------
// Build

export interface BuildDomainXmlOptions {
  /** Path of the VM's qcow2 disk on the host; adds virtio disk vda. */
  diskPath?: string;
  /** File the serial console is logged to (appended). */
  consoleLog?: string;
  /** One element in the PV_XMLNS namespace (declared on itself), put into <metadata>. */
  metadataXml?: string;
}

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v <= 0) throw new DomainXmlError(`${what} must be a positive integer, got ${v}`);
  return v;
}

function nonEmpty(v: string, what: string): string {
  if (typeof v !== "string" || v === "") throw new DomainXmlError(`${what} must be a non-empty string`);
  checkChars(v, what);
  return v;
}

/** Parse and check metadata XML: one element whose namespace is declared on the element itself. */
function metadataElement(metadataXml: string): XmlElement {
  const e = parseXml(metadataXml);
  const ns = namespaceOf([e]);
  if (ns === undefined) {
    throw new DomainXmlError(`metadataXml <${e.name}> must declare its namespace on itself (xmlns:${PV_PREFIX}='${PV_XMLNS}')`);
  }
  if (ns !== PV_XMLNS) throw new DomainXmlError(`metadataXml <${e.name}> is in namespace '${ns}', expected '${PV_XMLNS}'`);
  return e;
}

/** A <domain type='qemu'> for the spec (TCG; libvirt picks the default emulator). */
export function buildDomainXml(spec: VmSpec, opts: BuildDomainXmlOptions = {}): string {
  const name = nonEmpty(spec.name, "VM name");
  const memory = positiveInt(spec.memoryMiB, "memoryMiB");
  const vcpus = positiveInt(spec.vcpus, "vcpus");

  const os = el("os", {}, [el("type", { arch: "x86_64", machine: "pc" }, ["hvm"])]);
  if (spec.boot) {
    os.children.push(el("kernel", {}, [nonEmpty(spec.boot.kernel, "boot.kernel")]));
    if (spec.boot.initrd !== undefined) os.children.push(el("initrd", {}, [nonEmpty(spec.boot.initrd, "boot.initrd")]));
    if (spec.boot.cmdline !== undefined) {
      checkChars(spec.boot.cmdline, "boot.cmdline");
      os.children.push(el("cmdline", {}, [spec.boot.cmdline]));
    }
  } else {
    os.children.push(el("boot", { dev: "hd" }));
  }

  const devices = el("devices");
  if (opts.diskPath !== undefined) {
    devices.children.push(
      el("disk", { type: "file", device: "disk" }, [
        el("driver", { name: "qemu", type: "qcow2" }),
        el("source", { file: nonEmpty(opts.diskPath, "diskPath") }),
        el("target", { dev: "vda", bus: "virtio" }),
      ]),
    );
  }
  if (spec.network !== undefined) {
    devices.children.push(
      el("interface", { type: "network" }, [el("source", { network: nonEmpty(spec.network, "network") }), el("model", { type: "virtio" })]),
    );
  }
  const serial = el("serial", { type: "pty" });
  if (opts.consoleLog !== undefined) serial.children.push(el("log", { file: nonEmpty(opts.consoleLog, "consoleLog"), append: "on" }));
  serial.children.push(el("target", { port: "0" }));
  devices.children.push(serial);
  devices.children.push(el("console", { type: "pty" }, [el("target", { type: "serial", port: "0" })]));
  // No graphics, no video, no USB, no balloon: fewer devices, smaller and faster save/restore.
  devices.children.push(el("controller", { type: "usb", model: "none" }));
  devices.children.push(el("memballoon", { model: "none" }));

  const domain = el("domain", { type: "qemu" }, [el("name", {}, [name])]);
  if (opts.metadataXml !== undefined) domain.children.push(el("metadata", {}, [metadataElement(opts.metadataXml)]));
  domain.children.push(
    el("memory", { unit: "MiB" }, [String(memory)]),
    el("currentMemory", { unit: "MiB" }, [String(memory)]),
    el("vcpu", { placement: "static" }, [String(vcpus)]),
    os,
    el("features", {}, [el("acpi"), el("apic")]),
    el("on_poweroff", {}, ["destroy"]),
    el("on_reboot", {}, ["restart"]),
    el("on_crash", {}, ["destroy"]),
    devices,
  );
  return serializeXml(domain, "  ") + "\n";
}

// ------------------------------------------------------------------------------------------
// Rewrite

export interface RewriteChanges {
  /** New domain name. */
  name?: string;
  /** New UUID; null removes <uuid> so libvirt generates one (restoring a copy under another name). */
  uuid?: string | null;
  /** New source file of the VM's disk (target vda, else the first disk device). */
  diskPath?: string;
  /** New console log file (every serial/console <log>; added to the first serial if absent). */
  consoleLog?: string;
  kernel?: string;
  initrd?: string;
}

const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

/**
 * Rewrite a domain XML (e.g. from `virsh save-image-dumpxml`) so it can be defined or restored
 * on another host. Everything not named in `changes` is kept as it was.
 */
export function rewriteForHost(domainXml: string, changes: RewriteChanges): string {
  const domain = parseRoot(domainXml, "domain");

  if (changes.name !== undefined) {
    const nameEl = child(domain, "name");
    if (nameEl) setText(nameEl, nonEmpty(changes.name, "name"));
    else domain.children.unshift(el("name", {}, [nonEmpty(changes.name, "name")]));
  }

  if (changes.uuid === null) {
    removeChildren(domain, "uuid");
  } else if (changes.uuid !== undefined) {
    if (!UUID_RE.test(changes.uuid)) throw new DomainXmlError(`uuid '${changes.uuid}' is not a UUID`);
    const u = child(domain, "uuid");
    if (u) setText(u, changes.uuid);
    else insertAfter(domain, el("uuid", {}, [changes.uuid]), ["name"]);
  }

  if (changes.diskPath !== undefined) {
    const path = nonEmpty(changes.diskPath, "diskPath");
    const devices = child(domain, "devices");
    const disks = devices ? childElements(devices, "disk").filter((d) => (getAttr(d, "device") ?? "disk") === "disk") : [];
    const disk = disks.find((d) => getAttr(child(d, "target") ?? d, "dev") === "vda") ?? disks[0];
    if (!disk) throw new DomainXmlError("diskPath given but the domain has no disk");
    const wasFile = (getAttr(disk, "type") ?? "file") === "file";
    setAttr(disk, "type", "file");
    let source = child(disk, "source");
    if (!source) {
      source = el("source");
      insertAfter(disk, source, ["driver"]);
    }
    if (!wasFile) source.attrs = source.attrs.filter(([k]) => k === "index" || k === "startupPolicy");
    setAttr(source, "file", path);
    // The backing chain recorded for the old path means nothing on the new host; libvirt re-probes it.
    removeChildren(disk, "backingStore");
  }

  if (changes.consoleLog !== undefined) {
    const file = nonEmpty(changes.consoleLog, "consoleLog");
    const devices = child(domain, "devices");
    const serials = devices ? childElements(devices, "serial") : [];
    const consoles = devices ? childElements(devices, "console") : [];
    if (!serials.length && !consoles.length) throw new DomainXmlError("consoleLog given but the domain has no serial console");
    let changed = false;
    for (const s of [...serials, ...consoles]) {
      const log = child(s, "log");
      if (log) {
        setAttr(log, "file", file);
        changed = true;
      }
    }
    if (!changed) {
      const s = serials[0] ?? consoles[0];
      insertAfter(s, el("log", { file, append: "on" }), ["source"]);
    }
  }

  for (const key of ["kernel", "initrd"] as const) {
    const value = changes[key];
    if (value === undefined) continue;
    let os = child(domain, "os");
    if (!os) {
      os = el("os");
      insertAfter(domain, os, ["vcpu", "currentMemory", "memory"]);
    }
    const e = child(os, key);
    if (e) setText(e, nonEmpty(value, key));
    else insertAfter(os, el(key, {}, [nonEmpty(value, key)]), key === "kernel" ? ["loader", "nvram", "type"] : ["kernel"]);
  }

  return serializeXml(domain) + "\n";
}

// ------------------------------------------------------------------------------------------
// Parse

export interface ParsedDomain {
  name: string;
  /** "" when the XML has no <uuid>. */
  uuid: string;
  memoryMiB: number;
  vcpus: number;
  /** Source of every disk (device='disk'), in document order. */
  diskPaths: string[];
  /** Log file of the serial console (first serial with a <log>, else console). */
  consoleLog?: string;
  /** The first <metadata> element in PV_XMLNS, serialised with its namespace declaration and
   * without indentation (libvirt re-indents what it stores). */
  metadataXml?: string;
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1e3,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

function memoryMiBOf(e: XmlElement | undefined): number {
  if (!e) return 0;
  const value = Number((textOf(e) ?? "").trim());
  const unit = (getAttr(e, "unit") ?? "KiB").toLowerCase();
  const factor = UNIT_BYTES[unit];
  if (!Number.isFinite(value) || factor === undefined) throw new DomainXmlError(`cannot read <${e.name}> '${textOf(e)}' unit '${unit}'`);
  return Math.round((value * factor) / 1024 ** 2);
}

export function parseDomainXml(xml: string): ParsedDomain {
  const domain = parseRoot(xml, "domain");
  const name = (textOf(child(domain, "name")) ?? "").trim();
  if (!name) throw new DomainXmlError("domain XML has no <name>");
  const vcpuEl = child(domain, "vcpu");
  const vcpus = vcpuEl ? Number(getAttr(vcpuEl, "current") ?? (textOf(vcpuEl) ?? "").trim()) : 1;
  const metadata = protectionMetadata(domain);
  return {
    name,
    uuid: (textOf(child(domain, "uuid")) ?? "").trim(),
    memoryMiB: memoryMiBOf(child(domain, "memory")),
    vcpus: Number.isFinite(vcpus) ? vcpus : 1,
    diskPaths: domainDisks(domain)
      .filter((d) => d.device === "disk" && d.source !== undefined)
      .map((d) => d.source as string),
    consoleLog: consoleLogOf(domain),
    // libvirt re-indents metadata it stores: without indentation, what we read back equals what we wrote.
    metadataXml: metadata && serializeXml(stripIndentation(metadata)),
  };
}

// ------------------------------------------------------------------------------------------
// Accessors over a parsed <domain> (and a <pool>)

export interface DomainDisk {
  element: XmlElement;
  /** disk/@type: file, block, network, volume ... (default file). */
  type: string;
  /** disk/@device: disk, cdrom, floppy, lun (default disk). */
  device: string;
  /** The source: file, dev, name or volume attribute, whichever the type uses. */
  source?: string;
  /** target/@dev, e.g. vda. */
  target?: string;
  /** target/@bus, e.g. virtio. */
  bus?: string;
}

/** Every <disk> under <devices>, in document order. */
export function domainDisks(domain: XmlElement): DomainDisk[] {
  const devices = child(domain, "devices");
  if (!devices) return [];
  return childElements(devices, "disk").map((d) => {
    const s = child(d, "source");
    const t = child(d, "target");
    return {
      element: d,
      type: getAttr(d, "type") ?? "file",
      device: getAttr(d, "device") ?? "disk",
      source: s && (getAttr(s, "file") ?? getAttr(s, "dev") ?? getAttr(s, "name") ?? getAttr(s, "volume")),
      target: t && getAttr(t, "dev"),
      bus: t && getAttr(t, "bus"),
    };
  });
}

/** The first file-backed disk device (not a cdrom) with a source file and a target. */
export function primaryFileDisk(domainXml: string): { target: string; path: string } | undefined {
  const d = domainDisks(parseRoot(domainXml, "domain")).find((x) => x.device === "disk" && x.type === "file" && x.source && x.target);
  return d && { target: d.target as string, path: d.source as string };
}

/** Log file of the serial console: the first serial with a <log>, else the first console with one. */
export function consoleLogOf(domain: XmlElement): string | undefined {
  const devices = child(domain, "devices");
  if (!devices) return undefined;
  for (const s of [...childElements(devices, "serial"), ...childElements(devices, "console")]) {
    const log = child(s, "log");
    const file = log && getAttr(log, "file");
    if (file) return file;
  }
  return undefined;
}

/** The pty of the first pty-type <serial> of a running domain (its live XML), e.g. /dev/pts/3. */
export function serialPtyPath(domainXml: string): string | undefined {
  const devices = child(parseRoot(domainXml, "domain"), "devices");
  const serial = devices && childElements(devices, "serial").find((s) => getAttr(s, "type") === "pty");
  const source = serial && child(serial, "source");
  return source && getAttr(source, "path");
}

/**
 * The first element of <metadata> in our namespace, as a self-contained copy: its namespace is
 * declared on itself even when the document declared it on an ancestor.
 */
export function protectionMetadata(domain: XmlElement): XmlElement | undefined {
  const metadata = child(domain, "metadata");
  if (!metadata) return undefined;
  for (const m of childElements(metadata)) {
    const ns = namespaceOf([domain, metadata, m]);
    if (ns !== PV_XMLNS) continue;
    const attr = namespaceAttr(m);
    const self: XmlElement = { ...m, attrs: m.attrs.map(([k, v]) => [k, v] as [string, string]) };
    if (getAttr(self, attr) === undefined) self.attrs.unshift([attr, ns]);
    return self;
  }
  return undefined;
}

/** The target directory of a storage pool (<pool><target><path>), from `pool-dumpxml`. */
export function poolTargetPath(poolXml: string): string | undefined {
  const p = textOf(childAt(parseRoot(poolXml, "pool"), "target", "path"))?.trim();
  return p || undefined;
}
