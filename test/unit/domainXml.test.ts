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
import type { VmSpec } from "../../core/model";

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
    expect(xml).not.toMatch(/<graphics|<video|<interface/);
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
    expect(() => buildDomainXml(spec, { metadataXml: `<pv:p xmlns:pv="${PV_XMLNS}">` })).toThrow(/not closed/);
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
    const libvirtStyle = built.replace(META_OUT, `<pv:protection xmlns:pv="${PV_XMLNS}">\n      <pv:record>{"version":1}</pv:record>\n    </pv:protection>`);
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
    expect(() => parseXml(`<a x=1/>`)).toThrow(/not quoted/);
    expect(() => parseXml(`<a x='1' x='2'/>`)).toThrow(/duplicate/);
    expect(() => parseXml(`<a/><b/>`)).toThrow(/one root/);
    expect(() => parseXml(`<a>&amp</a>`)).toThrow(/entity/);
    expect(() => parseXml(`text<a/>`)).toThrow(/outside/);
  });
});
