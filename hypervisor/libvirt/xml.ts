/**
 * The one XML model for libvirt documents (domain, pool, save-image and metadata XML):
 * parse -> typed node tree -> serialize, plus small helpers to find and edit elements and
 * attributes. Every read and every edit of libvirt XML in this package goes through here.
 *
 * Reading is fast-xml-parser (v5) with `preserveOrder: true`, which keeps what a structural
 * edit must not lose: element order, mixed text and whitespace, comments and CDATA. Its
 * validator checks well-formedness first, because the parser itself is lenient (it accepts
 * mismatched end tags and duplicate attributes silently).
 *
 * Two parts are our own, on purpose:
 *  - Entity decoding (an `entityDecoder` handed to the parser). fast-xml-parser leaves an unknown
 *    reference such as `&bogus;` in the text as it was, and decodes numeric references only
 *    together with the HTML entity set (`&nbsp;` ...), which XML does not have. libvirt
 *    (libxml2) rejects both, so we do too: the five XML entities and character references,
 *    nothing else. A DOCTYPE (the only way to declare more entities) is refused outright.
 *  - Serialization. fast-xml-parser's XMLBuilder always writes attributes in double quotes and
 *    writes tab/newline in attribute values literally (an XML reader turns those into spaces);
 *    libvirt writes single quotes and we want an edited document to differ from libvirt's only
 *    where we changed it, so a 40-line writer over the typed tree below does it.
 *
 * Not kept: the XML declaration (we always write UTF-8 without one, as libvirt does), and
 * attribute-value whitespace normalisation (a literal newline in an attribute stays a newline;
 * libvirt escapes them as &#10; when it writes, so its documents never have one).
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";

export class XmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XmlError";
  }
}

// ------------------------------------------------------------------------------------------
// The typed tree

export interface XmlElement {
  kind: "element";
  /** Qualified name as written, e.g. "disk" or "pv:protection". */
  name: string;
  /** Attributes in document order, values decoded. */
  attrs: Array<[string, string]>;
  children: XmlNode[];
}
export interface XmlText {
  kind: "text";
  /** Decoded text. */
  text: string;
}
export interface XmlComment {
  kind: "comment";
  text: string;
}
export interface XmlCData {
  kind: "cdata";
  text: string;
}
/** A processing instruction; its content as pseudo-attributes (`true` = a bare word). */
export interface XmlPI {
  kind: "pi";
  target: string;
  attrs: Array<[string, string | true]>;
}
export type XmlNode = XmlElement | XmlText | XmlComment | XmlCData | XmlPI;

// ------------------------------------------------------------------------------------------
// Characters and escaping

// XML 1.0 Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
// Lone surrogates are excluded too (a JS string can hold them; UTF-8 cannot encode them).
// (A check of characters, not a reading of XML structure.)
const INVALID_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** Throw if `value` holds a character XML 1.0 cannot carry at all (they are never dropped silently). */
export function checkChars(value: string, what: string): void {
  const m = INVALID_XML_CHAR.exec(value);
  if (m) {
    const code = m[0].codePointAt(0) ?? 0;
    throw new XmlError(`${what} contains a character XML cannot represent (U+${code.toString(16).toUpperCase().padStart(4, "0")})`);
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
// Parse

const PREDEFINED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decodeCharRef(ref: string): string {
  const hex = ref.startsWith("#x");
  const digits = ref.slice(hex ? 2 : 1);
  const allowed = hex ? "0123456789abcdefABCDEF" : "0123456789";
  if (digits === "" || [...digits].some((c) => !allowed.includes(c))) throw new XmlError(`XML: unknown entity &${ref};`);
  const code = parseInt(digits, hex ? 16 : 10);
  if (code > 0x10ffff) throw new XmlError(`XML: character reference &${ref}; is out of range`);
  const ch = String.fromCodePoint(code);
  checkChars(ch, `XML character reference &${ref};`);
  return ch;
}

/** XML 1.0 entity decoding for fast-xml-parser (see the header for why it is ours). */
const xmlEntityDecoder = {
  reset(): void {},
  setXmlVersion(): void {},
  setExternalEntities(): void {},
  addInputEntities(): void {
    // Called when the parser meets a DOCTYPE. libvirt never writes one; refusing it means no
    // entity expansion (billion laughs) and no entity we would silently not round-trip.
    throw new XmlError("XML: DOCTYPE declarations are not supported");
  },
  decode(raw: string): string {
    if (!raw.includes("&")) return raw;
    let out = "";
    let from = 0;
    for (let amp = raw.indexOf("&"); amp >= 0; amp = raw.indexOf("&", from)) {
      const semi = raw.indexOf(";", amp);
      if (semi < 0) throw new XmlError(`XML: unterminated entity reference in '${raw}'`);
      const ref = raw.slice(amp + 1, semi);
      out += raw.slice(from, amp) + (ref.startsWith("#") ? decodeCharRef(ref) : PREDEFINED[ref] ?? unknownEntity(ref));
      from = semi + 1;
    }
    return out + raw.slice(from);
  },
};

function unknownEntity(ref: string): never {
  throw new XmlError(`XML: unknown entity &${ref};`);
}

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  allowBooleanAttributes: true, // only processing instructions can have them: the validator refuses them on elements
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  commentPropName: "#comment",
  cdataPropName: "#cdata",
  removeNSPrefix: false,
  processEntities: true,
  entityDecoder: xmlEntityDecoder,
  // libvirt's schemas nest far less deeply; fast-xml-parser's default (100) is only a guard.
  maxNestedTags: 100,
});

type OrderedItem = Record<string, unknown> & { ":@"?: Record<string, string | true> };

function textInside(value: unknown): string {
  return (value as OrderedItem[]).map((t) => String(t["#text"] ?? "")).join("");
}

function toNodes(items: OrderedItem[]): XmlNode[] {
  const nodes: XmlNode[] = [];
  for (const item of items) {
    const key = Object.keys(item).find((k) => k !== ":@");
    if (key === undefined) continue;
    const value = item[key];
    const attrs = Object.entries(item[":@"] ?? {});
    if (key === "#text") nodes.push({ kind: "text", text: String(value) });
    else if (key === "#comment") nodes.push({ kind: "comment", text: textInside(value) });
    else if (key === "#cdata") nodes.push({ kind: "cdata", text: textInside(value) });
    else if (key.startsWith("?")) {
      if (key !== "?xml") nodes.push({ kind: "pi", target: key.slice(1), attrs });
    } else {
      const stringAttrs = attrs.map(([k, v]): [string, string] => {
        if (typeof v !== "string") throw new XmlError(`XML: attribute ${k} of <${key}> has no value`);
        return [k, v];
      });
      nodes.push({ kind: "element", name: key, attrs: stringAttrs, children: toNodes(value as OrderedItem[]) });
    }
  }
  return nodes;
}

/** Parse an XML document (or fragment with exactly one root element) into its root element. */
export function parseXml(xml: string): XmlElement {
  checkChars(xml, "XML document");
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new XmlError(`XML: ${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`);
  let items: OrderedItem[];
  try {
    items = parser.parse(xml) as OrderedItem[];
  } catch (e) {
    if (e instanceof XmlError) throw e;
    throw new XmlError(`XML: ${(e as Error).message}`);
  }
  const top = toNodes(items);
  const elements = top.filter((n): n is XmlElement => n.kind === "element");
  if (elements.length !== 1) throw new XmlError(`XML: expected exactly one root element, found ${elements.length}`);
  const stray = top.find((n) => n.kind === "text" && n.text.trim() !== "");
  if (stray) throw new XmlError("XML: text outside the root element");
  return elements[0];
}

// ------------------------------------------------------------------------------------------
// Serialize

function serializeAttrs(owner: string, attrs: Array<[string, string | true]>): string {
  return attrs.map(([k, v]) => (v === true ? ` ${k}` : ` ${k}='${escapeXmlAttr(v, `attribute ${k} of <${owner}>`)}'`)).join("");
}

/** Serialise a tree. indent = "" keeps the existing whitespace (text nodes) as it is. */
export function serializeXml(node: XmlNode, indent = "", depth = 0): string {
  switch (node.kind) {
    case "text":
      return escapeXmlText(node.text);
    case "comment":
      if (node.text.includes("--")) throw new XmlError("XML: a comment cannot contain '--'");
      return `<!--${node.text}-->`;
    case "cdata":
      checkChars(node.text, "CDATA section");
      // "]]>" cannot appear inside one section: split it across two.
      return `<![CDATA[${node.text.split("]]>").join("]]]]><![CDATA[>")}]]>`;
    case "pi":
      return `<?${node.target}${serializeAttrs(node.target, node.attrs)}?>`;
  }
  const attrs = serializeAttrs(node.name, node.attrs);
  if (node.children.length === 0) return `<${node.name}${attrs}/>`;
  // Pretty-print only our own structure: a foreign-namespace subtree (metadata) is written as given.
  const foreign = node.name.includes(":") || node.attrs.some(([k]) => k === "xmlns" || k.startsWith("xmlns:"));
  if (foreign) indent = "";
  const onlyElements = indent !== "" && node.children.every((c) => c.kind !== "text" && c.kind !== "cdata");
  if (onlyElements) {
    const pad = "\n" + indent.repeat(depth + 1);
    const inner = node.children.map((c) => pad + serializeXml(c, indent, depth + 1)).join("");
    return `<${node.name}${attrs}>${inner}\n${indent.repeat(depth)}</${node.name}>`;
  }
  return `<${node.name}${attrs}>${node.children.map((c) => serializeXml(c, indent, depth + 1)).join("")}</${node.name}>`;
}

// ------------------------------------------------------------------------------------------
// Finding and editing

/** A new element; undefined attribute values are left out, strings become text nodes. */
export function el(name: string, attrs: Record<string, string | undefined> = {}, children: Array<XmlNode | string> = []): XmlElement {
  return {
    kind: "element",
    name,
    attrs: Object.entries(attrs).filter((e): e is [string, string] => e[1] !== undefined),
    children: children.map((c) => (typeof c === "string" ? { kind: "text", text: c } : c)),
  };
}

export function childElements(parent: XmlElement, name?: string): XmlElement[] {
  return parent.children.filter((c): c is XmlElement => c.kind === "element" && (name === undefined || c.name === name));
}

export function child(parent: XmlElement, name: string): XmlElement | undefined {
  return childElements(parent, name)[0];
}

/** Follow a path of child names, e.g. childAt(pool, "target", "path"). */
export function childAt(parent: XmlElement | undefined, ...names: string[]): XmlElement | undefined {
  let at = parent;
  for (const n of names) at = at && child(at, n);
  return at;
}

/** Text content (text and CDATA) of an element's own children. */
export function textOf(e: XmlElement | undefined): string | undefined {
  if (!e) return undefined;
  return e.children.map((c) => (c.kind === "text" || c.kind === "cdata" ? c.text : "")).join("");
}

export function setText(e: XmlElement, text: string): void {
  e.children = [{ kind: "text", text }];
}

export function getAttr(e: XmlElement, name: string): string | undefined {
  const a = e.attrs.find(([k]) => k === name);
  return a ? a[1] : undefined;
}

export function setAttr(e: XmlElement, name: string, value: string): void {
  const a = e.attrs.find(([k]) => k === name);
  if (a) a[1] = value;
  else e.attrs.push([name, value]);
}

/** Remove child elements matching `which` (a name or a predicate), with the indentation text just before each. */
export function removeChildren(parent: XmlElement, which: string | ((e: XmlElement) => boolean)): void {
  const match = typeof which === "string" ? (e: XmlElement) => e.name === which : which;
  const out: XmlNode[] = [];
  for (const c of parent.children) {
    if (c.kind === "element" && match(c)) {
      const prev = out[out.length - 1];
      if (prev && prev.kind === "text" && prev.text.trim() === "") out.pop();
      continue;
    }
    out.push(c);
  }
  parent.children = out;
}

/** Insert `node` after the last existing child named one of `after` (else first), with no whitespace games. */
export function insertAfter(parent: XmlElement, node: XmlElement, after: string[]): void {
  let idx = -1;
  parent.children.forEach((c, k) => {
    if (c.kind === "element" && after.includes(c.name)) idx = k;
  });
  parent.children.splice(idx + 1, 0, node);
}

/** Copy of a tree without indentation: whitespace-only text next to child elements is dropped. */
export function stripIndentation(e: XmlElement): XmlElement {
  const hasElements = e.children.some((c) => c.kind === "element");
  return {
    ...e,
    attrs: e.attrs.map(([k, v]) => [k, v] as [string, string]),
    children: e.children
      .filter((c) => !(hasElements && c.kind === "text" && c.text.trim() === ""))
      .map((c) => (c.kind === "element" ? stripIndentation(c) : { ...c })),
  };
}

/** The name without its prefix ("pv:protection" -> "protection"). */
export function localName(e: XmlElement): string {
  const colon = e.name.indexOf(":");
  return colon >= 0 ? e.name.slice(colon + 1) : e.name;
}

/** The attribute that declares an element's namespace: xmlns:prefix, or xmlns. */
export function namespaceAttr(e: XmlElement): string {
  const colon = e.name.indexOf(":");
  return colon >= 0 ? `xmlns:${e.name.slice(0, colon)}` : "xmlns";
}

/** Namespace URI of an element, resolving its prefix on itself and its ancestors (path = root..element). */
export function namespaceOf(path: XmlElement[]): string | undefined {
  const attr = namespaceAttr(path[path.length - 1]);
  for (let k = path.length - 1; k >= 0; k--) {
    const v = getAttr(path[k], attr);
    if (v !== undefined) return v;
  }
  return undefined;
}
