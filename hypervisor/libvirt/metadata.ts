/**
 * The protection record lives in the domain's own <metadata>, in our namespace, so the scheduler
 * finds every protected VM on a host by asking libvirt, with no separate database. The record
 * is JSON, the text of one element; the element is read and written through the XML model (./xml).
 */
import type { ProtectionRecord } from "../../core/policy";
import { XmlElement, child, childElements, el, localName, namespaceOf, parseXml, removeChildren, serializeXml, textOf } from "./xml";

export const PROTECTION_NS = "https://protected-vm.dev/xmlns/protection/1";
export const PROTECTION_PREFIX = "pv";

/** The element body for `virsh metadata --set` and for <metadata> in a new domain. */
export function protectionElement(record: ProtectionRecord, withNamespace = true): string {
  const attrs = withNamespace ? { [`xmlns:${PROTECTION_PREFIX}`]: PROTECTION_NS } : {};
  return serializeXml(el(`${PROTECTION_PREFIX}:protection`, attrs, [JSON.stringify(record)]));
}

/** The element `virsh metadata --set` takes (libvirt adds the namespace from --uri/--key). */
export function protectionElementForSet(record: ProtectionRecord): string {
  return serializeXml(el("protection", {}, [JSON.stringify(record)]));
}

/** The first element named protection (any prefix): the root itself, else the first one below it. */
function findProtection(e: XmlElement): XmlElement | undefined {
  if (localName(e) === "protection") return e;
  for (const c of childElements(e)) {
    const found = findProtection(c);
    if (found) return found;
  }
  return undefined;
}

/** Parse the element that `virsh metadata --uri NS` prints (any prefix); undefined if absent, foreign or not XML. */
export function parseProtectionElement(xml: string): ProtectionRecord | undefined {
  try {
    const e = findProtection(parseXml(xml));
    if (!e) return undefined;
    const rec = JSON.parse((textOf(e) ?? "").trim());
    return rec && rec.version === 1 ? (rec as ProtectionRecord) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Remove our protection element from a domain XML: a drill's copy of a VM is not itself
 * protected, so schedulers must not find (and snapshot) it. Other metadata is kept.
 */
export function stripProtectionElement(domainXml: string): string {
  const domain = parseXml(domainXml);
  const metadata = child(domain, "metadata");
  if (metadata) removeChildren(metadata, (m) => namespaceOf([domain, metadata, m]) === PROTECTION_NS);
  return serializeXml(domain) + "\n";
}
