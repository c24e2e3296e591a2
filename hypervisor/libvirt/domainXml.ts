/**
 * libvirt domain XML: build it from a VmSpec, rewrite it for another host, read it back.
 * Pure functions: no I/O.
 *
 * A small, strict XML reader/writer is included (elements, attributes, text, comments, CDATA,
 * processing instructions; no DTDs) so a domain XML from libvirt (`dumpxml`,
 * `save-image-dumpxml`) can be edited structurally and written back without losing anything
 * we did not touch. Every value we interpolate is escaped; characters that XML 1.0 cannot
 * carry at all (NUL and most C0 controls) are rejected rather than silently dropped.
 */
import type { VmSpec } from "../backend";
import { PROTECTION_NS as PV_XMLNS, PROTECTION_PREFIX as PV_PREFIX } from "./metadata";

export { PV_XMLNS, PV_PREFIX };

export class DomainXmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DomainXmlError";
  }
}

// ------------------------------------------------------------------------------------------
// Escaping

// XML 1.0 Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
// Lone surrogates are excluded too (a JS string can hold them; UTF-8 cannot encode them).
const INVALID_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

function checkChars(value: string, what: string): void {
  const m = INVALID_XML_CHAR.exec(value);
  if (m) {
    const code = m[0].codePointAt(0) ?? 0;
    throw new DomainXmlError(`${what} contains a character XML cannot represent (U+${code.toString(16).toUpperCase().padStart(4, "0")})`);
  }
}

/** Escape text content. */
export function escapeXmlText(value: string, what = "value"): string {
  checkChars(value, what);
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

/** Escape an attribute value (safe in either quote style; whitespace kept through normalisation). */
export function escapeXmlAttr(value: string, what = "attribute"): string {
  checkChars(value, what);
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    .replace(/\t/g, "&#9;")
    .replace(/\n/g, "&#10;")
    .replace(/\r/g, "&#13;");
}

// ------------------------------------------------------------------------------------------
// A minimal XML tree

export interface XmlElement {
  kind: "element";
  /** Qualified name as written, e.g. "disk" or "pv:protection". */
  name: string;
  /** Attributes in document order, values decoded. */
  attrs: Array<[string, string]>;
  children: XmlNode[];
}
interface XmlText {
  kind: "text";
  /** Decoded text. */
  text: string;
}
interface XmlRaw {
  kind: "raw";
  /** Comments, CDATA sections, processing instructions: kept verbatim. */
  raw: string;
}
export type XmlNode = XmlElement | XmlText | XmlRaw;

const NAME_START = "A-Za-z_:\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD";
const NAME_RE = new RegExp(`[${NAME_START}][${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040]*`, "y");

function decodeEntities(s: string, where: number): string {
  if (!s.includes("&")) return s;
  return s.replace(/&([^;&\s]*);?/g, (whole, ent: string) => {
    if (!whole.endsWith(";")) throw new DomainXmlError(`XML: unterminated entity near offset ${where}`);
    switch (ent) {
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "amp":
        return "&";
      case "quot":
        return '"';
      case "apos":
        return "'";
    }
    let code: number | undefined;
    if (/^#[0-9]+$/.test(ent)) code = parseInt(ent.slice(1), 10);
    else if (/^#x[0-9a-fA-F]+$/.test(ent)) code = parseInt(ent.slice(2), 16);
    if (code === undefined || code > 0x10ffff) throw new DomainXmlError(`XML: unknown entity &${ent}; near offset ${where}`);
    const ch = String.fromCodePoint(code);
    checkChars(ch, "XML character reference");
    return ch;
  });
}

/** Parse an XML document (or fragment with exactly one root element) into its root element. */
export function parseXml(xml: string): XmlElement {
  checkChars(xml, "XML document");
  let i = 0;
  const n = xml.length;
  const roots: XmlNode[] = [];
  const stack: XmlElement[] = [];
  const push = (node: XmlNode) => {
    if (stack.length) stack[stack.length - 1].children.push(node);
    else roots.push(node);
  };
  const readName = (): string => {
    NAME_RE.lastIndex = i;
    const m = NAME_RE.exec(xml);
    if (!m) throw new DomainXmlError(`XML: expected a name at offset ${i}`);
    i += m[0].length;
    return m[0];
  };
  const skipWs = () => {
    while (i < n && /\s/.test(xml[i])) i++;
  };

  while (i < n) {
    const lt = xml.indexOf("<", i);
    if (lt !== i) {
      const end = lt < 0 ? n : lt;
      const raw = xml.slice(i, end);
      if (raw.includes(">") && /]]>/.test(raw)) throw new DomainXmlError(`XML: ']]>' in text at offset ${i}`);
      if (stack.length) push({ kind: "text", text: decodeEntities(raw, i) });
      else if (raw.trim() !== "") throw new DomainXmlError(`XML: text outside the root element at offset ${i}`);
      i = end;
      continue;
    }
    if (xml.startsWith("<!--", i)) {
      const end = xml.indexOf("-->", i + 4);
      if (end < 0) throw new DomainXmlError(`XML: unterminated comment at offset ${i}`);
      push({ kind: "raw", raw: xml.slice(i, end + 3) });
      i = end + 3;
    } else if (xml.startsWith("<![CDATA[", i)) {
      if (!stack.length) throw new DomainXmlError(`XML: CDATA outside the root element at offset ${i}`);
      const end = xml.indexOf("]]>", i + 9);
      if (end < 0) throw new DomainXmlError(`XML: unterminated CDATA at offset ${i}`);
      push({ kind: "raw", raw: xml.slice(i, end + 3) });
      i = end + 3;
    } else if (xml.startsWith("<?", i)) {
      const end = xml.indexOf("?>", i + 2);
      if (end < 0) throw new DomainXmlError(`XML: unterminated processing instruction at offset ${i}`);
      // The XML declaration is dropped (we always write UTF-8 without one); other PIs are kept.
      const raw = xml.slice(i, end + 2);
      if (!/^<\?xml[\s?]/.test(raw)) push({ kind: "raw", raw });
      i = end + 2;
    } else if (xml.startsWith("<!", i)) {
      throw new DomainXmlError(`XML: DOCTYPE and other declarations are not supported (offset ${i})`);
    } else if (xml.startsWith("</", i)) {
      i += 2;
      const name = readName();
      skipWs();
      if (xml[i] !== ">") throw new DomainXmlError(`XML: malformed end tag </${name}> at offset ${i}`);
      i++;
      const open = stack.pop();
      if (!open || open.name !== name) {
        throw new DomainXmlError(`XML: end tag </${name}> does not match <${open ? open.name : "(none)"}>`);
      }
      push(open); // to its parent (now the top of the stack), or to the roots
    } else {
      i++;
      const el: XmlElement = { kind: "element", name: readName(), attrs: [], children: [] };
      for (;;) {
        const before = i;
        skipWs();
        if (xml.startsWith("/>", i)) {
          i += 2;
          push(el);
          break;
        }
        if (xml[i] === ">") {
          i++;
          stack.push(el);
          break;
        }
        if (i >= n) throw new DomainXmlError(`XML: unterminated start tag <${el.name}>`);
        if (i === before) throw new DomainXmlError(`XML: expected whitespace before an attribute in <${el.name}> at offset ${i}`);
        const an = readName();
        skipWs();
        if (xml[i] !== "=") throw new DomainXmlError(`XML: attribute ${an} of <${el.name}> has no value`);
        i++;
        skipWs();
        const q = xml[i];
        if (q !== '"' && q !== "'") throw new DomainXmlError(`XML: attribute ${an} of <${el.name}> is not quoted`);
        const end = xml.indexOf(q, i + 1);
        if (end < 0) throw new DomainXmlError(`XML: unterminated attribute ${an} of <${el.name}>`);
        const rawVal = xml.slice(i + 1, end);
        if (rawVal.includes("<")) throw new DomainXmlError(`XML: '<' in attribute ${an} of <${el.name}>`);
        if (el.attrs.some(([k]) => k === an)) throw new DomainXmlError(`XML: duplicate attribute ${an} in <${el.name}>`);
        // Attribute-value normalisation: literal whitespace characters become spaces.
        el.attrs.push([an, decodeEntities(rawVal.replace(/[\t\n\r]/g, " "), i)]);
        i = end + 1;
      }
    }
  }
  if (stack.length) throw new DomainXmlError(`XML: element <${stack[stack.length - 1].name}> is not closed`);
  const elements = roots.filter((r): r is XmlElement => r.kind === "element");
  if (elements.length !== 1) throw new DomainXmlError(`XML: expected exactly one root element, found ${elements.length}`);
  return elements[0];
}

/** Serialise a tree. indent = "" keeps the existing whitespace (text nodes) as it is. */
export function serializeXml(node: XmlNode, indent = "", depth = 0): string {
  if (node.kind === "text") return escapeXmlText(node.text);
  if (node.kind === "raw") return node.raw;
  const attrs = node.attrs.map(([k, v]) => ` ${k}='${escapeXmlAttr(v, `attribute ${k} of <${node.name}>`)}'`).join("");
  if (node.children.length === 0) return `<${node.name}${attrs}/>`;
  // Pretty-print only our own structure: a foreign-namespace subtree (metadata) is written as given.
  const foreign = node.name.includes(":") || node.attrs.some(([k]) => k === "xmlns" || k.startsWith("xmlns:"));
  if (foreign) indent = "";
  const onlyElements = indent !== "" && node.children.every((c) => c.kind !== "text");
  if (onlyElements) {
    const pad = "\n" + indent.repeat(depth + 1);
    const inner = node.children.map((c) => pad + serializeXml(c, indent, depth + 1)).join("");
    return `<${node.name}${attrs}>${inner}\n${indent.repeat(depth)}</${node.name}>`;
  }
  return `<${node.name}${attrs}>${node.children.map((c) => serializeXml(c, indent, depth + 1)).join("")}</${node.name}>`;
}

// ------------------------------------------------------------------------------------------
// Tree helpers

function el(name: string, attrs: Record<string, string | undefined> = {}, children: Array<XmlNode | string> = []): XmlElement {
  return {
    kind: "element",
    name,
    attrs: Object.entries(attrs).filter((e): e is [string, string] => e[1] !== undefined),
    children: children.map((c) => (typeof c === "string" ? { kind: "text", text: c } : c)),
  };
}

function childElements(parent: XmlElement, name?: string): XmlElement[] {
  return parent.children.filter((c): c is XmlElement => c.kind === "element" && (name === undefined || c.name === name));
}

function child(parent: XmlElement, name: string): XmlElement | undefined {
  return childElements(parent, name)[0];
}

function textOf(e: XmlElement | undefined): string | undefined {
  if (!e) return undefined;
  return e.children
    .map((c) => (c.kind === "text" ? c.text : c.kind === "raw" && c.raw.startsWith("<![CDATA[") ? c.raw.slice(9, -3) : ""))
    .join("");
}

function setText(e: XmlElement, text: string): void {
  e.children = [{ kind: "text", text }];
}

function getAttr(e: XmlElement, name: string): string | undefined {
  const a = e.attrs.find(([k]) => k === name);
  return a ? a[1] : undefined;
}

function setAttr(e: XmlElement, name: string, value: string): void {
  const a = e.attrs.find(([k]) => k === name);
  if (a) a[1] = value;
  else e.attrs.push([name, value]);
}

/** Remove child elements by name, with the indentation text just before each. */
function removeChildren(parent: XmlElement, name: string): void {
  const out: XmlNode[] = [];
  for (const c of parent.children) {
    if (c.kind === "element" && c.name === name) {
      const prev = out[out.length - 1];
      if (prev && prev.kind === "text" && prev.text.trim() === "") out.pop();
      continue;
    }
    out.push(c);
  }
  parent.children = out;
}

/** Copy of a tree without indentation: whitespace-only text next to child elements is dropped. */
function stripIndentation(e: XmlElement): XmlElement {
  const hasElements = e.children.some((c) => c.kind === "element");
  return {
    ...e,
    attrs: e.attrs.map(([k, v]) => [k, v] as [string, string]),
    children: e.children
      .filter((c) => !(hasElements && c.kind === "text" && c.text.trim() === ""))
      .map((c) => (c.kind === "element" ? stripIndentation(c) : c)),
  };
}

/** Insert `node` after the last existing child named one of `after` (else first), with no whitespace games. */
function insertAfter(parent: XmlElement, node: XmlElement, after: string[]): void {
  let idx = -1;
  parent.children.forEach((c, k) => {
    if (c.kind === "element" && after.includes(c.name)) idx = k;
  });
  parent.children.splice(idx + 1, 0, node);
}

/** Namespace URI of an element, resolving its prefix on itself and its ancestors (path = root..element). */
function namespaceOf(path: XmlElement[]): string | undefined {
  const e = path[path.length - 1];
  const colon = e.name.indexOf(":");
  const attr = colon >= 0 ? `xmlns:${e.name.slice(0, colon)}` : "xmlns";
  for (let k = path.length - 1; k >= 0; k--) {
    const v = getAttr(path[k], attr);
    if (v !== undefined) return v;
  }
  return undefined;
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
  const domain = parseXml(domainXml);
  if (domain.name !== "domain") throw new DomainXmlError(`expected a <domain> document, got <${domain.name}>`);

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
  const domain = parseXml(xml);
  if (domain.name !== "domain") throw new DomainXmlError(`expected a <domain> document, got <${domain.name}>`);
  const name = (textOf(child(domain, "name")) ?? "").trim();
  if (!name) throw new DomainXmlError("domain XML has no <name>");
  const vcpuEl = child(domain, "vcpu");
  const vcpus = vcpuEl ? Number(getAttr(vcpuEl, "current") ?? (textOf(vcpuEl) ?? "").trim()) : 1;

  const devices = child(domain, "devices");
  const diskPaths: string[] = [];
  let consoleLog: string | undefined;
  if (devices) {
    for (const d of childElements(devices, "disk")) {
      if ((getAttr(d, "device") ?? "disk") !== "disk") continue;
      const s = child(d, "source");
      const p = s && (getAttr(s, "file") ?? getAttr(s, "dev") ?? getAttr(s, "name") ?? getAttr(s, "volume"));
      if (p) diskPaths.push(p);
    }
    for (const s of [...childElements(devices, "serial"), ...childElements(devices, "console")]) {
      const f = getAttr(child(s, "log") ?? s, "file");
      if (child(s, "log") && f) {
        consoleLog = f;
        break;
      }
    }
  }

  let metadataXml: string | undefined;
  const metadata = child(domain, "metadata");
  if (metadata) {
    for (const m of childElements(metadata)) {
      const ns = namespaceOf([domain, metadata, m]);
      if (ns !== PV_XMLNS) continue;
      // Make the element self-contained: declare its namespace on it if an ancestor did.
      const colon = m.name.indexOf(":");
      const attr = colon >= 0 ? `xmlns:${m.name.slice(0, colon)}` : "xmlns";
      // libvirt re-indents metadata it stores: drop indentation so what we read back equals what we wrote.
      const copy = stripIndentation(m);
      if (getAttr(copy, attr) === undefined) copy.attrs.unshift([attr, ns]);
      metadataXml = serializeXml(copy);
      break;
    }
  }

  return {
    name,
    uuid: (textOf(child(domain, "uuid")) ?? "").trim(),
    memoryMiB: memoryMiBOf(child(domain, "memory")),
    vcpus: Number.isFinite(vcpus) ? vcpus : 1,
    diskPaths,
    consoleLog,
    metadataXml,
  };
}
