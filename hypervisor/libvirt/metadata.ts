/**
 * The protection record lives in the domain's own <metadata>, in our namespace, so the scheduler
 * finds every protected VM on a host by asking libvirt, with no separate database.
 */
import type { ProtectionRecord } from "../../core/policy";

export const PROTECTION_NS = "https://protected-vm.dev/xmlns/protection/1";
export const PROTECTION_PREFIX = "pv";

function escapeXmlText(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function unescapeXmlText(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&amp;/g, "&");
}

/** The element body for `virsh metadata --set` and for <metadata> in a new domain. */
export function protectionElement(record: ProtectionRecord, withNamespace = true): string {
  const ns = withNamespace ? ` xmlns:${PROTECTION_PREFIX}="${PROTECTION_NS}"` : "";
  return `<${PROTECTION_PREFIX}:protection${ns}>${escapeXmlText(JSON.stringify(record))}</${PROTECTION_PREFIX}:protection>`;
}

/** The element `virsh metadata --set` takes (libvirt adds the namespace from --uri/--key). */
export function protectionElementForSet(record: ProtectionRecord): string {
  return `<protection>${escapeXmlText(JSON.stringify(record))}</protection>`;
}

/** Parse the element that `virsh metadata --uri NS` prints (any prefix); undefined if absent or foreign. */
export function parseProtectionElement(xml: string): ProtectionRecord | undefined {
  const m = /<(?:[\w.-]+:)?protection\b[^>]*>([\s\S]*?)<\/(?:[\w.-]+:)?protection>/.exec(xml);
  if (!m) return undefined;
  try {
    const rec = JSON.parse(unescapeXmlText(m[1].trim()));
    return rec && rec.version === 1 ? (rec as ProtectionRecord) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Remove our protection element from a domain XML: a drill's copy of a VM is not itself
 * protected, so schedulers must not find (and snapshot) it.
 */
export function stripProtectionElement(domainXml: string): string {
  return domainXml.replace(/<([\w.-]+:)?protection\b[^>]*>[\s\S]*?<\/([\w.-]+:)?protection>/g, (el) => (el.includes(PROTECTION_NS) ? "" : el));
}
