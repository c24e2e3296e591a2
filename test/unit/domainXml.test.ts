import { XMLParser, XMLValidator } from "fast-xml-parser";
import {
  DomainXmlError,
  PV_XMLNS,
  buildDomainXml,
  escapeXmlAttr,
  escapeXmlText,
  parseDomainXml,
  parseXml,
  rewriteForHost,
  serializeXml,
} from "../../hypervisor/libvirt/domainXml";
import * as fs from "fs";
import * as path from "path";
import type { VmSpec } from "../../core/model";
import { withPolicyDefaults } from "../../core/policy";
import { XmlElement, child, childElements, getAttr, textOf } from "../../hypervisor/libvirt/xml";
import { poolTargetPath, primaryFileDisk, serialPtyPath } from "../../hypervisor/libvirt/domainXml";
import { parseProtectionElement, protectionElement, stripProtectionElement } from "../../hypervisor/libvirt/metadata";

const META = `<pv:protection xmlns:pv="${PV_XMLNS}"><pv:record>{"version":1}</pv:record></pv:protection>`;
/** META as we write it back (attributes in single quotes). */
const META_OUT = `<pv:protection xmlns:pv='${PV_XMLNS}'><pv:record>{"version":1}</pv:record></pv:protection>`;

const spec: VmSpec = {
  name: "vm1",
  memoryMiB: 256,
  vcpus: 2,
  boot: { kernel: "/k/vmlinuz", initrd: "/k/initrd.gz", cmdline: "quiet console=ttyS0 pv.mem=64" },
};

/** An independent reading of the XML (fast-xml-parser), to check what we wrote. */
function read(xml: string): any {
  expect(XMLValidator.validate(xml)).toBe(true);
  return new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@", parseTagValue: false, isArray: (n) => ["disk", "interface", "serial", "console", "log"].includes(n) }).parse(xml);
}

/** Shaped like `virsh save-image-dumpxml` output from libvirt 9 (session mode, TCG). */
const SAVED = `<domain type='qemu'>
  <name>guest-1</name>
  <uuid>7d1c3a1e-0b0f-4c1e-9d8c-2f6e4b5a6c7d</uuid>
  <metadata>
    <pv:protection xmlns:pv="${PV_XMLNS}">
      <pv:record>{"primaryHost":"a &amp; b"}</pv:record>
    </pv:protection>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/old/.lab/guest/vmlinuz</kernel>
    <initrd>/old/.lab/guest/initrd.gz</initrd>
    <cmdline>quiet console=ttyS0 pv.mem=64</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/old/a/storage/guest-1.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/x.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <!-- a comment libvirt would not write, kept anyway -->
    <serial type='pty'>
      <source path='/dev/pts/3'/>
      <log file='/old/a/storage/guest-1.console.log' append='on'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial0'/>
    </serial>
    <console type='pty' tty='/dev/pts/3'>
      <source path='/dev/pts/3'/>
      <log file='/old/a/storage/guest-1.console.log' append='on'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
`;

describe("escaping", () => {
  test("text and attributes", () => {
    expect(escapeXmlText(`a<b>&c"'`)).toBe(`a&lt;b&gt;&amp;c"'`);
    expect(escapeXmlAttr(`a<b>&c"'\n`)).toBe("a&lt;b&gt;&amp;c&quot;&apos;&#10;");
  });
  test("characters XML cannot carry are rejected, not dropped", () => {
    expect(() => escapeXmlText("a\u0000b")).toThrow(DomainXmlError);
    expect(() => escapeXmlAttr("a\u0007b")).toThrow(/U\+0007/);
    expect(() => escapeXmlText("\uD800")).toThrow(DomainXmlError);
    expect(escapeXmlText("héllo 😀")).toBe("héllo 😀");
  });
});

describe("buildDomainXml", () => {
  test("kernel boot, memory, vcpus, no disk/NIC/graphics by default", () => {
    const xml = buildDomainXml(spec, {});
    const d = read(xml).domain;
    expect(d["@type"]).toBe("qemu");
    expect(d.name).toBe("vm1");
    expect(d.memory).toEqual({ "#text": "256", "@unit": "MiB" });
    expect(d.vcpu["#text"]).toBe("2");
    expect(d.os.kernel).toBe("/k/vmlinuz");
    expect(d.os.initrd).toBe("/k/initrd.gz");
    expect(d.os.cmdline).toBe("quiet console=ttyS0 pv.mem=64");
    expect(d.on_crash).toBe("destroy");
    expect(d.devices.disk).toBeUndefined();
    expect(d.devices.interface).toBeUndefined();
    expect(d.devices.graphics).toBeUndefined();
    expect(d.devices.serial[0]["@type"]).toBe("pty");
    expect(d.devices.serial[0].target["@port"]).toBe("0");
    expect(d.devices.serial[0].log).toBeUndefined();
    expect(d.devices.console[0]["@type"]).toBe("pty");
    expect(d.metadata).toBeUndefined();
    const deviceNames = childElements(child(parseXml(xml), "devices")!).map((e) => e.name);
    expect(deviceNames).toEqual(["serial", "console", "controller", "memballoon"]);
  });

  test("disk, console log, network, metadata", () => {
    const xml = buildDomainXml({ ...spec, network: "default" }, { diskPath: "/s/vm1.qcow2", consoleLog: "/s/vm1.log", metadataXml: META });
    const d = read(xml).domain;
    const disk = d.devices.disk[0];
    expect(disk["@type"]).toBe("file");
    expect(disk["@device"]).toBe("disk");
    expect(disk.driver).toEqual({ "@name": "qemu", "@type": "qcow2" });
    expect(disk.source["@file"]).toBe("/s/vm1.qcow2");
    expect(disk.target).toEqual({ "@dev": "vda", "@bus": "virtio" });
    expect(d.devices.serial[0].log[0]).toEqual({ "@file": "/s/vm1.log", "@append": "on" });
    expect(d.devices.interface[0].source["@network"]).toBe("default");
    expect(d.metadata["pv:protection"]["@xmlns:pv"]).toBe(PV_XMLNS);
    expect(parseDomainXml(xml).metadataXml).toBe(META_OUT);
  });

  test("no boot spec: boots from disk", () => {
    const d = read(buildDomainXml({ name: "x", memoryMiB: 64, vcpus: 1 }, { diskPath: "/d.qcow2" })).domain;
    expect(d.os.kernel).toBeUndefined();
    expect(d.os.boot["@dev"]).toBe("hd");
  });

  test("every interpolated value is escaped", () => {
    const evil = `a'b"c<d>&e`;
    const xml = buildDomainXml(
      { name: `n${evil}`, memoryMiB: 64, vcpus: 1, network: `net${evil}`, boot: { kernel: `/k${evil}`, initrd: `/i${evil}`, cmdline: `x=${evil} </cmdline><on_crash>restart</on_crash>` } },
      { diskPath: `/d${evil}`, consoleLog: `/l${evil}` },
    );
    const d = read(xml).domain;
    expect(d.name).toBe(`n${evil}`);
    expect(d.os.kernel).toBe(`/k${evil}`);
    expect(d.os.initrd).toBe(`/i${evil}`);
    expect(d.os.cmdline).toBe(`x=${evil} </cmdline><on_crash>restart</on_crash>`);
    expect(d.on_crash).toBe("destroy");
    expect(d.devices.disk[0].source["@file"]).toBe(`/d${evil}`);
    expect(d.devices.serial[0].log[0]["@file"]).toBe(`/l${evil}`);
    expect(d.devices.interface[0].source["@network"]).toBe(`net${evil}`);
    // Round trip through our own reader too.
    const p = parseDomainXml(xml);
    expect(p.name).toBe(`n${evil}`);
    expect(p.diskPaths).toEqual([`/d${evil}`]);
    expect(p.consoleLog).toBe(`/l${evil}`);
  });

  test("rejects bad input", () => {
    expect(() => buildDomainXml({ ...spec, memoryMiB: 0 }, {})).toThrow(/memoryMiB/);
    expect(() => buildDomainXml({ ...spec, vcpus: 1.5 }, {})).toThrow(/vcpus/);
    expect(() => buildDomainXml({ ...spec, name: "" }, {})).toThrow(/name/);
    expect(() => buildDomainXml({ ...spec, name: "a\u0001" }, {})).toThrow(DomainXmlError);
    expect(() => buildDomainXml(spec, { metadataXml: "<protection/>" })).toThrow(/namespace/);
    expect(() => buildDomainXml(spec, { metadataXml: `<x:p xmlns:x="urn:other"/>` })).toThrow(/urn:other/);
    expect(() => buildDomainXml(spec, { metadataXml: `<pv:p xmlns:pv="${PV_XMLNS}">` })).toThrow(/Unclosed tag 'pv:p'/);
    expect(() => buildDomainXml(spec, { metadataXml: `<pv:p xmlns:pv="${PV_XMLNS}"/><pv:q xmlns:pv="${PV_XMLNS}"/>` })).toThrow(/one root/);
  });
});

describe("rewriteForHost", () => {
  test("new disk, console log, kernel and initrd; everything else kept", () => {
    const out = rewriteForHost(SAVED, {
      diskPath: "/new/b/storage/guest-1.qcow2",
      consoleLog: "/new/b/storage/guest-1.console.log",
      kernel: "/new/guest/vmlinuz",
      initrd: "/new/guest/initrd.gz",
    });
    const d = read(out).domain;
    expect(d.name).toBe("guest-1");
    expect(d.uuid).toBe("7d1c3a1e-0b0f-4c1e-9d8c-2f6e4b5a6c7d");
    const vda = d.devices.disk[0];
    expect(vda.source["@file"]).toBe("/new/b/storage/guest-1.qcow2");
    expect(vda.source["@index"]).toBe("1");
    expect(vda.backingStore).toBeUndefined();
    expect(d.devices.disk[1].source["@file"]).toBe("/iso/x.iso");
    expect(d.devices.serial[0].log[0]["@file"]).toBe("/new/b/storage/guest-1.console.log");
    expect(d.devices.console[0].log[0]["@file"]).toBe("/new/b/storage/guest-1.console.log");
    expect(d.os.kernel).toBe("/new/guest/vmlinuz");
    expect(d.os.initrd).toBe("/new/guest/initrd.gz");
    expect(d.os.cmdline).toBe("quiet console=ttyS0 pv.mem=64");
    expect(d.os.type["@machine"]).toBe("pc-i440fx-7.2");
    expect(out).toContain("<!-- a comment libvirt would not write, kept anyway -->");
    const p = parseDomainXml(out);
    expect(p.metadataXml).toContain(`{"primaryHost":"a &amp; b"}`);
  });

  test("no changes: same document (modulo quoting and the XML declaration)", () => {
    const out = rewriteForHost(`<?xml version="1.0"?>\n` + SAVED, {});
    expect(parseXml(out)).toEqual(parseXml(SAVED));
  });

  test("metadata read back from libvirt (re-indented) equals what we wrote", () => {
    const built = buildDomainXml(spec, { metadataXml: META });
    // As libvirt stores it: re-indented inside <metadata>.
    const doc = parseXml(built);
    const reindented = parseXml(`<pv:protection xmlns:pv="${PV_XMLNS}">\n      <pv:record>{"version":1}</pv:record>\n    </pv:protection>`);
    child(doc, "metadata")!.children = [{ kind: "text", text: "\n    " }, reindented, { kind: "text", text: "\n  " }];
    const libvirtStyle = serializeXml(doc);
    expect(libvirtStyle).not.toBe(built);
    expect(parseDomainXml(libvirtStyle).metadataXml).toBe(META_OUT);
    // whitespace inside a leaf value is data and is kept
    const leaf = `<pv:p xmlns:pv="${PV_XMLNS}"><pv:v>  a  </pv:v></pv:p>`;
    expect(parseDomainXml(buildDomainXml(spec, { metadataXml: leaf })).metadataXml).toBe(`<pv:p xmlns:pv='${PV_XMLNS}'><pv:v>  a  </pv:v></pv:p>`);
  });

  test("rename and drop the uuid for a copy", () => {
    const out = rewriteForHost(SAVED, { name: "guest-1-drill", uuid: null });
    expect(out).toContain("<name>guest-1-drill</name>\n  <metadata>");
    const d = read(out).domain;
    expect(d.name).toBe("guest-1-drill");
    expect(d.uuid).toBeUndefined();
    expect(parseDomainXml(out).uuid).toBe("");
  });

  test("set a uuid, validated", () => {
    const u = "11111111-2222-3333-4444-555555555555";
    expect(parseDomainXml(rewriteForHost(SAVED, { uuid: u })).uuid).toBe(u);
    const noUuid = rewriteForHost(SAVED, { uuid: null });
    const out = rewriteForHost(noUuid, { uuid: u });
    expect(parseDomainXml(out).uuid).toBe(u);
    expect(out.indexOf("<uuid>")).toBeGreaterThan(out.indexOf("<name>"));
    expect(() => rewriteForHost(SAVED, { uuid: "nope" })).toThrow(/not a UUID/);
  });

  test("escapes new values", () => {
    const out = rewriteForHost(SAVED, { name: "a<b", diskPath: "/x'y\"&z.qcow2", consoleLog: "/l&<.log" });
    const p = parseDomainXml(out);
    expect(p.name).toBe("a<b");
    expect(p.diskPaths).toEqual(["/x'y\"&z.qcow2"]);
    expect(p.consoleLog).toBe("/l&<.log");
    read(out);
  });

  test("block disk becomes a file disk; log added when the serial had none", () => {
    const xml = `<domain type='kvm'><name>v</name><devices>
      <disk type='block' device='disk'><source dev='/dev/vg/v'/><target dev='vda' bus='virtio'/></disk>
      <serial type='pty'><target port='0'/></serial></devices></domain>`;
    const out = rewriteForHost(xml, { diskPath: "/s/v.qcow2", consoleLog: "/s/v.log" });
    const d = read(out).domain;
    expect(d.devices.disk[0]["@type"]).toBe("file");
    expect(d.devices.disk[0].source).toEqual({ "@file": "/s/v.qcow2" });
    expect(d.devices.serial[0].log[0]).toEqual({ "@file": "/s/v.log", "@append": "on" });
  });

  test("adds kernel/initrd when the os element lacks them", () => {
    const out = rewriteForHost(`<domain type='qemu'><name>v</name><os><type>hvm</type></os></domain>`, { kernel: "/k", initrd: "/i" });
    expect(out).toContain("<os><type>hvm</type><kernel>/k</kernel><initrd>/i</initrd></os>");
  });

  test("errors name what is wrong", () => {
    expect(() => rewriteForHost(`<domain><name>v</name></domain>`, { diskPath: "/x" })).toThrow(/no disk/);
    expect(() => rewriteForHost(`<domain><name>v</name></domain>`, { consoleLog: "/x" })).toThrow(/no serial/);
    expect(() => rewriteForHost(`<pool/>`, {})).toThrow(/<domain>/);
    expect(() => rewriteForHost(`<domain><name>v</name>`, {})).toThrow(/Unclosed tag 'domain'/);
    expect(() => rewriteForHost(`<domain><name>v&bogus;</name></domain>`, {})).toThrow(/entity/);
    expect(() => rewriteForHost(`<!DOCTYPE x [<!ENTITY e "boom">]><domain/>`, {})).toThrow(/DOCTYPE/);
  });
});

describe("parseDomainXml", () => {
  test("reads a libvirt dump", () => {
    const p = parseDomainXml(SAVED);
    expect(p).toEqual({
      name: "guest-1",
      uuid: "7d1c3a1e-0b0f-4c1e-9d8c-2f6e4b5a6c7d",
      memoryMiB: 256,
      vcpus: 1,
      diskPaths: ["/old/a/storage/guest-1.qcow2"],
      consoleLog: "/old/a/storage/guest-1.console.log",
      metadataXml: `<pv:protection xmlns:pv='${PV_XMLNS}'><pv:record>{"primaryHost":"a &amp; b"}</pv:record></pv:protection>`,
    });
    expect(parseXml(p.metadataXml!).name).toBe("pv:protection");
  });

  test("memory units, current vcpus, namespace declared on an ancestor", () => {
    const xml = `<domain xmlns:p="${PV_XMLNS}"><name>v</name><memory unit='GiB'>2</memory><vcpu current='2'>4</vcpu>
      <metadata><other:x xmlns:other="urn:x"/><p:protection><p:k>1</p:k></p:protection></metadata></domain>`;
    const p = parseDomainXml(xml);
    expect(p.memoryMiB).toBe(2048);
    expect(p.vcpus).toBe(2);
    expect(p.diskPaths).toEqual([]);
    expect(p.consoleLog).toBeUndefined();
    expect(p.metadataXml).toBe(`<p:protection xmlns:p='${PV_XMLNS}'><p:k>1</p:k></p:protection>`);
    expect(parseDomainXml(`<domain><name>v</name><memory>524288</memory></domain>`).memoryMiB).toBe(512);
    expect(parseDomainXml(`<domain><name>v</name><memory unit='bytes'>1073741824</memory></domain>`).memoryMiB).toBe(1024);
  });

  test("build -> parse round trip", () => {
    const xml = buildDomainXml(spec, { diskPath: "/s/d.qcow2", consoleLog: "/s/c.log", metadataXml: META });
    expect(parseDomainXml(xml)).toEqual({
      name: "vm1",
      uuid: "",
      memoryMiB: 256,
      vcpus: 2,
      diskPaths: ["/s/d.qcow2"],
      consoleLog: "/s/c.log",
      metadataXml: META_OUT,
    });
  });

  test("requires a name", () => {
    expect(() => parseDomainXml(`<domain/>`)).toThrow(/no <name>/);
  });
});

describe("xml reader/writer", () => {
  test("entities, character references, CDATA, comments survive", () => {
    const src = `<a x="1 &amp; 2" y='&#65;&#x42;'><!-- c --><b><![CDATA[<raw>]]></b>t&lt;&gt;&quot;&apos;</a>`;
    const e = parseXml(src);
    expect(e.attrs).toEqual([["x", "1 & 2"], ["y", "AB"]]);
    expect(serializeXml(e)).toBe(`<a x='1 &amp; 2' y='AB'><!-- c --><b><![CDATA[<raw>]]></b>t&lt;&gt;"'</a>`);
  });
  test("malformed input is rejected", () => {
    expect(() => parseXml(`<a><b></a></b>`)).toThrow(/Expected closing tag 'b'.*instead of closing tag 'a'/);
    expect(() => parseXml(`<a x=1/>`)).toThrow(/Attribute 'x' is without value/);
    expect(() => parseXml(`<a x='1' x='2'/>`)).toThrow(/Attribute 'x' is repeated/);
    expect(() => parseXml(`<a/><b/>`)).toThrow(/one root/);
    expect(() => parseXml(`<a>&amp</a>`)).toThrow(/char '&' is not expected/);
    expect(() => parseXml(`text<a/>`)).toThrow(/char 't' is not expected/);
  });
});

// ------------------------------------------------------------------------------------------
// The one XML model: round trips over real documents

const FIXTURES = path.join(__dirname, "..", "fixtures", "domain-xml");
const fixture = (rel: string) => fs.readFileSync(path.join(FIXTURES, rel), "utf8");
/** Every .xml file under dir (recursively); none when dir does not exist. */
const xmlFilesUnder = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) return xmlFilesUnder(full);
        return e.isFile() && e.name.endsWith(".xml") ? [full] : [];
      })
    : [];
const fixtureFiles = (dir: string) =>
  fs
    .readdirSync(path.join(FIXTURES, dir))
    .filter((f) => f.endsWith(".xml"))
    .map((f) => `${dir}/${f}`);

/** A second reading with other options (numeric + named entities decoded by the library), to check our writer. */
const independent = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  commentPropName: "#comment",
  cdataPropName: "#cdata",
  htmlEntities: true,
});
// The model is the root element: comments, the XML declaration and processing instructions
// outside it (libvirt's "auto-generated file" header in /etc, cpu_map's editing notes) are not
// kept - libvirt ignores them too - so compare the root element.
const rootItems = (xml: string) =>
  (independent.parse(xml) as Array<Record<string, unknown>>).filter((i) => !Object.keys(i).some((k) => k.startsWith("#") || k.startsWith("?")));

/** parse -> serialize -> parse: the same model, a stable text, and the same document to another reader. */
function roundTrip(text: string): { model: XmlElement; text: string } {
  const m1 = parseXml(text);
  const s1 = serializeXml(m1);
  const m2 = parseXml(s1);
  expect(m2).toEqual(m1);
  expect(serializeXml(m2)).toBe(s1);
  expect(rootItems(s1)).toEqual(rootItems(text));
  return { model: m1, text: s1 };
}

const LAB = { storage: "/work/pv/.lab/a/storage", repo: "/work/pv/.lab/repo", kernel: "/work/pv/.lab/guest/vmlinux", initrd: "/work/pv/.lab/guest/initrd.gz" };
const labBoot = (mem: number) => ({ kernel: LAB.kernel, initrd: LAB.initrd, cmdline: `quiet console=ttyS0 pv.mem=${mem}` });
const labProtection = {
  version: 1 as const,
  backend: "libvirt" as const,
  primaryHost: "qemu:///session?socket=/work/pv/.lab/a/run/libvirt/libvirt-sock",
  recoveryHosts: ["qemu:///session?socket=/work/pv/.lab/b/run/libvirt/libvirt-sock"],
  policy: withPolicyDefaults({ repository: LAB.repo }),
  pool: "pvlab",
};
/** The guests the lab tests and the example stack define (test/lab/*, lab/exampleStack.ts), as LibvirtBackend.defineVm builds them. */
const LAB_GUESTS: Array<{ what: string; spec: VmSpec; disk: boolean; protected: boolean }> = [
  { what: "saveRestore (256 MiB, raw disk file)", spec: { name: "pvt-sr-1", memoryMiB: 256, vcpus: 1, boot: labBoot(64) }, disk: true, protected: false },
  { what: "domainTakeover (64 MiB, pool disk)", spec: { name: "pvt-dt-1", memoryMiB: 64, vcpus: 1, boot: labBoot(16) }, disk: true, protected: false },
  { what: "streamTransfer / drill / example stack (128 MiB, protected)", spec: { name: "pvt-ex-1", memoryMiB: 128, vcpus: 1, boot: labBoot(32) }, disk: true, protected: true },
  { what: "no disk, no boot spec", spec: { name: "pvt-nodisk", memoryMiB: 64, vcpus: 2 }, disk: false, protected: false },
];

describe("round trip parse -> serialize -> parse", () => {
  test.each(LAB_GUESTS)("lab guest built by buildDomainXml: $what", ({ spec: s, disk, protected: prot }) => {
    const xml = buildDomainXml(s, {
      diskPath: disk ? `${LAB.storage}/${s.name}.qcow2` : undefined,
      consoleLog: `${LAB.storage}/${s.name}.console.log`,
      metadataXml: prot ? protectionElement(labProtection) : undefined,
    });
    const { text } = roundTrip(xml);
    const p = parseDomainXml(text);
    expect(p).toMatchObject({ name: s.name, memoryMiB: s.memoryMiB, vcpus: s.vcpus, consoleLog: `${LAB.storage}/${s.name}.console.log` });
    expect(p.diskPaths).toEqual(disk ? [`${LAB.storage}/${s.name}.qcow2`] : []);
    expect(p.metadataXml ? parseProtectionElement(p.metadataXml) : undefined).toEqual(prot ? labProtection : undefined);
  });

  test.each(fixtureFiles("lab"))("lab capture (virsh): %s", (file) => {
    roundTrip(fixture(file));
  });

  // libvirt's own XML as Debian's libvirt packages install it (networks, nwfilters, CPU maps,
  // the RelaxNG schemas - namespaces, comments, entities), read where it is installed rather than
  // copied into this repository. The lab installs these packages, so CI always has them.
  const installedLibvirtXml = ["/usr/share/libvirt", "/etc/libvirt"].flatMap((dir) => xmlFilesUnder(dir));
  test("libvirt's installed XML is present to round-trip", () => {
    expect(installedLibvirtXml.length).toBeGreaterThan(20);
  });
  test.each(installedLibvirtXml)("libvirt's installed XML: %s", (file) => {
    roundTrip(fs.readFileSync(file, "utf8"));
  });

  test.each(fixtureFiles("features"))("domain feature document: %s", (file) => {
    const original = fixture(file);
    const { model } = roundTrip(original);
    // A rewrite with no changes is the same document.
    if (model.name === "domain") expect(parseXml(rewriteForHost(original, {}))).toEqual(model);
  });
});

describe("real libvirt output read through the model", () => {
  const NAME = "pvt-xml-o'brien";
  const live = fixture("lab/running-live.xml");

  test("live dumpxml: name with an apostrophe (libvirt writes &apos;), disk, console, pty, protection record", () => {
    const p = parseDomainXml(live);
    expect(p.name).toBe(NAME);
    expect(p.memoryMiB).toBe(64);
    expect(p.vcpus).toBe(1);
    expect(p.diskPaths).toEqual([expect.stringMatching(/\/pvt-xml-o'brien\.qcow2$/)]);
    expect(p.consoleLog).toMatch(/\/pvt-xml-o'brien\.console\.log$/);
    const rec = parseProtectionElement(p.metadataXml!);
    expect(rec).toMatchObject({ version: 1, backend: "libvirt", pool: "pvlab" });
    expect(primaryFileDisk(live)).toEqual({ target: "vda", path: p.diskPaths[0] });
    expect(serialPtyPath(live)).toBe("/dev/pts/1");
    // The inactive definition has no pty yet.
    expect(serialPtyPath(fixture("lab/defined-inactive.xml"))).toBeUndefined();
  });

  test("`virsh metadata --uri` output (no prefix, no namespace) is the same record as the one in the domain", () => {
    const fromMetadata = parseProtectionElement(fixture("lab/metadata-protection.xml"));
    expect(fromMetadata).toEqual(parseProtectionElement(parseDomainXml(live).metadataXml!));
  });

  test("pool-dumpxml: the target path; a pool without one is undefined", () => {
    expect(poolTargetPath(fixture("lab/pool.xml"))).toMatch(/\/\.lab\/a\/storage$/);
    expect(poolTargetPath(`<pool type='logical'><name>vg</name><source/></pool>`)).toBeUndefined();
    expect(() => poolTargetPath(live)).toThrow(/expected a <pool> document/);
  });

  test("primaryFileDisk skips cdroms and non-file disks; none when there is no file disk", () => {
    expect(primaryFileDisk(fixture("features/disk-cdrom.xml"))).toBeUndefined();
    expect(primaryFileDisk(fixture("features/disk-network.xml"))).toBeUndefined();
    const cdromFirst = `<domain><name>v</name><devices>
      <disk type='file' device='cdrom'><source file='/iso'/><target dev='hdc'/></disk>
      <disk type='file' device='disk'><source file='/d.qcow2'/><target dev='vdb'/></disk></devices></domain>`;
    expect(primaryFileDisk(cdromFirst)).toEqual({ target: "vdb", path: "/d.qcow2" });
  });

  test("our namespace's metadata survives a rewrite for another host; other namespaces survive a drill's strip", () => {
    const record = parseProtectionElement(fixture("lab/metadata-protection.xml"));
    const moved = rewriteForHost(live, { diskPath: "/b/storage/x.qcow2", consoleLog: "/b/storage/x.log" });
    expect(parseProtectionElement(parseDomainXml(moved).metadataXml!)).toEqual(record);

    const foreign = fixture("features/metadata-foreign.xml");
    const stripped = parseXml(stripProtectionElement(foreign));
    expect(stripped).toEqual(parseXml(foreign));
    const meta = child(stripped, "metadata")!;
    expect(childElements(meta).map((e) => [e.name, getAttr(e, `xmlns:${e.name.split(":")[0]}`), textOf(e)])).toEqual([
      ["inv:asset", "http://inventory.example/", "rack-7"],
      ["mon:probe", "http://monitor.example/ns", "ping"],
    ]);
    // The comment inside <metadata> is kept as a comment.
    expect(meta.children.some((c) => c.kind === "comment" && c.text === " two other applications' records, indented oddly on purpose ")).toBe(true);
  });

  test("a drill copy of a save image: new name, no uuid, new paths, no protection record; the rest as it was", () => {
    const saved = fixture("lab/save-image.xml");
    const name = `drill & <copy> "1" 'x'`;
    const out = stripProtectionElement(rewriteForHost(saved, { name, uuid: null, diskPath: "/b/it's & <x>.qcow2", consoleLog: "/b/l&g.log" }));
    const p = parseDomainXml(out);
    expect(p).toMatchObject({ name, uuid: "", diskPaths: ["/b/it's & <x>.qcow2"], consoleLog: "/b/l&g.log", metadataXml: undefined });
    const before = parseXml(saved);
    const after = parseXml(out);
    for (const keep of ["memory", "vcpu", "os", "cpu", "features", "clock"]) expect(child(after, keep)).toEqual(child(before, keep));
    expect(childElements(child(after, "devices")!).map((e) => e.name)).toEqual(childElements(child(before, "devices")!).map((e) => e.name));
    roundTrip(out);
  });

  test("qemu namespace elements are kept with their prefix", () => {
    const xml = fixture("features/qemu-ns.xml");
    const out = parseXml(rewriteForHost(xml, { name: "renamed" }));
    expect(getAttr(out, "xmlns:qemu")).toBe("http://libvirt.org/schemas/domain/qemu/1.0");
    const args = childElements(child(out, "qemu:commandline")!, "qemu:arg").map((e) => getAttr(e, "value"));
    expect(args).toEqual(["-global", "kvm-pit.lost_tick_policy=delay"]);
  });
});

describe("entities and special characters", () => {
  test("names and paths with XML's special characters survive build -> parse and a second reader", () => {
    const odd = `a&b<c>'d"e é 😀 ]]> &amp;`;
    const xml = buildDomainXml(
      { name: `vm ${odd}`, memoryMiB: 64, vcpus: 1, boot: { kernel: `/k/${odd}`, initrd: `/i/${odd}`, cmdline: `x=${odd}` } },
      { diskPath: `/d/${odd}.qcow2`, consoleLog: `/l/${odd}.log`, metadataXml: protectionElement({ ...labProtection, pool: odd }) },
    );
    roundTrip(xml);
    const p = parseDomainXml(xml);
    expect(p.name).toBe(`vm ${odd}`);
    expect(p.diskPaths).toEqual([`/d/${odd}.qcow2`]);
    expect(p.consoleLog).toBe(`/l/${odd}.log`);
    expect(parseProtectionElement(p.metadataXml!)?.pool).toBe(odd);
    const d = read(xml).domain;
    expect(d.name).toBe(`vm ${odd}`);
    expect(d.devices.disk[0].source["@file"]).toBe(`/d/${odd}.qcow2`);
  });

  test("libvirt's entities (&amp; &quot; &apos;) and character references decode; the writer re-escapes them", () => {
    const http = parseXml(fixture("features/disk-network.xml"));
    const sources = childElements(child(http, "devices")!, "disk").map((d) => child(d, "source")!);
    expect(getAttr(sources[1], "query")).toBe("token=abc&region=eu");
    const cookies = childElements(child(sources[1], "cookies")!, "cookie").map((c) => textOf(c));
    expect(cookies).toEqual(["s3ss10n", '"value"']);
    expect(serializeXml(sources[1])).toContain("query='token=abc&amp;region=eu'");

    const refs = parseXml(`<a t="tab&#9;nl&#10;cr&#13;" u='&#x1F600;'>x&#10;&#65;&#x42;</a>`);
    expect(refs.attrs).toEqual([["t", "tab\tnl\ncr\r"], ["u", "😀"]]);
    expect(textOf(refs)).toBe("x\nAB");
    // Whitespace in attributes is written as references, so another reader keeps it.
    expect(serializeXml(refs)).toBe(`<a t='tab&#9;nl&#10;cr&#13;' u='😀'>x\nAB</a>`);
    roundTrip(serializeXml(refs));
  });

  test("CDATA, comments and processing instructions are kept; ']]>' inside CDATA is split safely", () => {
    const src = `<d><!-- keep me --><?app k="v" flag?><c><![CDATA[if (a < b && c) { x = "]]" }]]></c></d>`;
    const { model, text } = roundTrip(src);
    expect(textOf(child(model, "c"))).toBe(`if (a < b && c) { x = "]]" }`);
    expect(text).toBe(`<d><!-- keep me --><?app k='v' flag?><c><![CDATA[if (a < b && c) { x = "]]" }]]></c></d>`);
    const tricky: XmlElement = { kind: "element", name: "c", attrs: [], children: [{ kind: "cdata", text: "a]]>b" }] };
    expect(textOf(parseXml(serializeXml(tricky)))).toBe("a]]>b");
  });

  test("what XML cannot carry, or what we do not read, is refused with a reason", () => {
    expect(() => parseXml(`<a>&nbsp;</a>`)).toThrow(/unknown entity &nbsp;/);
    expect(() => parseXml(`<a>&#0;</a>`)).toThrow(/U\+0000/);
    expect(() => parseXml(`<a>&#x110000;</a>`)).toThrow(/out of range/);
    expect(() => parseXml(`<!DOCTYPE domain><domain/>`)).toThrow(/DOCTYPE/);
    expect(() => parseXml(`<a b/>`)).toThrow(/boolean attribute/);
    expect(() => parseXml(`<a>\u0001</a>`)).toThrow(/U\+0001/);
  });
});

describe("no regular expression reads XML", () => {
  // Obvious patterns only: a regular expression, sed/grep/awk, or a string replace whose pattern
  // names a libvirt element. XML is read through hypervisor/libvirt/xml.ts instead.
  const ELEMENT = "(disk|source|target|path|domain|serial|console|metadata|protection|pool|name|uuid|memory|devices|log|os|kernel|graphics|video|interface|driver)";
  // <disk, <\/path, <pv:protection, and a prefix group such as <(?:[\w.-]+:)?protection
  const xmlTagInPattern = new RegExp(`<\\\\?/?(?:[\\w.-]+:)?${ELEMENT}\\b|<\\((?:\\?:)?\\[[^\\]]*\\][^)]*\\)\\??${ELEMENT}\\b`);
  const readsText = /\.(exec|test|match|matchAll|replace|replaceAll|search|split)\(|new RegExp|toMatch\(|\b(sed|grep|awk)\b/;
  const ROOT = path.join(__dirname, "..", "..");
  const SKIP = new Set(["node_modules", "dist", ".cache", ".lab", ".git", "fixtures"]);

  function sourceFiles(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      if (SKIP.has(e.name)) return [];
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return sourceFiles(full);
      return /\.(ts|js|sh)$/.test(e.name) && full !== __filename ? [full] : [];
    });
  }

  test("the detector itself catches the patterns it is meant to", () => {
    const bad = [
      String.raw`const m = /<disk\b[^>]*device=['"]disk['"]/.exec(xml);`,
      String.raw`const m = /<target>[\s\S]*?<path>([^<]+)<\/path>/.exec(stdout);`,
      String.raw`xml.replace(/<(?:[\w.-]+:)?protection\b[^>]*>/g, "")`,
      String.raw`return domainXml.replace(/<([\w.-]+:)?protection\b[^>]*>[\s\S]*?<\/([\w.-]+:)?protection>/g, (el) => el);`,
      String.raw`const libvirtStyle = built.replace(META_OUT, \`<pv:protection xmlns:pv="\${PV_XMLNS}">\`);`,
      String.raw`target="$(virsh pool-dumpxml p | sed -n 's:.*<path>\(.*\)</path>.*:\1:p')"`,
    ];
    for (const line of bad) expect(xmlTagInPattern.test(line) && readsText.test(line)).toBe(true);
    expect(xmlTagInPattern.test(`return s.replace(/</g, "&lt;")`)).toBe(false);
  });

  test("no source file matches", () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(ROOT)) {
      fs.readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (xmlTagInPattern.test(line) && readsText.test(line)) offenders.push(`${path.relative(ROOT, file)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });
});
