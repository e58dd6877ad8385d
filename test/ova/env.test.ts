import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildEnvironment, parsePropertyPairs, writeEnvironment } from "../../src/ovf/env.js";
import { buildIso9660, level1Name, SECTOR } from "../../src/ovf/iso9660.js";
import { parseOvf } from "../../src/ovf/parse.js";
import { ovfkit } from "../helpers/cli.js";
import { CORPUS, CORPUS_OVF, hasCorpus } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-env-");
const noIsoinfo = hasTool("isoinfo") ? "" : "isoinfo not installed (apt-get install genisoimage)";
if (noIsoinfo) console.warn(`[skip] ${noIsoinfo}`);
const noXmllint = skipReason("xmllint");
const CLOUD_INIT_OVF = join(CORPUS_OVF, "cloud-init/doc/sources/ovf/example/ubuntu-server.ovf");
const ENV_SCHEMA = join(CORPUS, "schemas/dmtf-ovf-1.0.0/ovf-environment-1-wrapper.xsd");

const DESCRIPTOR = `<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <VirtualSystem ovf:id="web">
    <Info>x</Info>
    <ProductSection ovf:class="com.example" ovf:instance="1">
      <Info>p</Info>
      <Property ovf:key="port" ovf:type="uint16" ovf:value="80"/>
      <Property ovf:key="debug" ovf:type="boolean" ovf:value="false"/>
      <Property ovf:key="mode" ovf:type="string" ovf:qualifiers="ValueMap{&quot;a&quot;,&quot;b&quot;}" ovf:value="a"/>
      <Property ovf:key="name" ovf:type="string" ovf:qualifiers="MaxLen(5)"/>
    </ProductSection>
  </VirtualSystem>
</Envelope>
`;

describe("ovf-env.xml (DSP8027)", () => {
  it("qualifies keys with class/instance, applies defaults, checks types and qualifiers", () => {
    const envelope = parseOvf(DESCRIPTOR);
    const env = buildEnvironment(envelope, { "com.example.port.1": "8080" });
    expect(env.properties).toEqual([
      { key: "com.example.port.1", value: "8080" },
      { key: "com.example.debug.1", value: "false" },
      { key: "com.example.mode.1", value: "a" },
      { key: "com.example.name.1", value: "" },
    ]);
    expect(env.xml).toContain('oe:id="web"');
    for (const [key, value] of [
      ["com.example.port.1", "70000"],
      ["com.example.port.1", "x"],
      ["com.example.debug.1", "maybe"],
      ["com.example.mode.1", "c"],
      ["com.example.name.1", "toolong"],
    ] as const) {
      expect(() => buildEnvironment(envelope, { [key]: value })).toThrow(
        expect.objectContaining({ code: "ENV_BAD_VALUE" }),
      );
    }
    expect(() => buildEnvironment(envelope, { nope: "1" })).toThrow(
      expect.objectContaining({ code: "ENV_UNKNOWN_PROPERTY" }),
    );
    expect(parsePropertyPairs(["a=b=c"])).toEqual({ a: "b=c" });
    expect(() => parsePropertyPairs(["novalue"])).toThrow(expect.objectContaining({ code: "BAD_ARGUMENT" }));
  });

  it("validates against the DSP8027 schema with xmllint", { skip: Boolean(noXmllint) || !hasCorpus }, () => {
    const env = buildEnvironment(parseOvf(readFileSync(CLOUD_INIT_OVF)), {
      hostname: "web1",
      "instance-id": "i-1",
    });
    const path = join(dir, "env.xml");
    writeFileSync(path, env.xml);
    const result = run("xmllint", ["--noout", "--schema", ENV_SCHEMA, path]);
    expect(result.stderr).toContain("validates");
    expect(result.status).toBe(0);
  });
});

describe("ISO 9660 image (transport iso)", () => {
  it("has the ECMA-119 structure: descriptors, path tables, root records, data", () => {
    const data = Buffer.from("<Environment/>\n");
    const iso = buildIso9660([{ name: "ovf-env.xml", data }], { volumeId: "OVF ENV" });
    expect(iso.length % SECTOR).toBe(0);
    expect(iso.toString("latin1", 16 * SECTOR + 1, 16 * SECTOR + 6)).toBe("CD001");
    expect(iso[16 * SECTOR]).toBe(1); // primary
    expect(iso[17 * SECTOR]).toBe(2); // Joliet supplementary
    expect(iso.toString("latin1", 17 * SECTOR + 88, 17 * SECTOR + 91)).toBe("%/E");
    expect(iso[18 * SECTOR]).toBe(255); // terminator
    expect(iso.readUInt32LE(16 * SECTOR + 80)).toBe(iso.length / SECTOR);
    expect(iso.readUInt32BE(16 * SECTOR + 84)).toBe(iso.length / SECTOR);
    expect(level1Name("ovf-env.xml")).toBe("OVF_ENV.XML;1");
    const fileSector = iso.length / SECTOR - 1;
    expect(iso.subarray(fileSector * SECTOR, fileSector * SECTOR + data.length)).toEqual(data);
  });

  it("isoinfo reads the primary and Joliet trees and extracts ovf-env.xml", {
    skip: Boolean(noIsoinfo) || !hasCorpus,
  }, async () => {
    const iso = join(dir, "env.iso");
    const cli = ovfkit(["env", CLOUD_INIT_OVF, "--property", "hostname=web1", "-o", iso]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(run("isoinfo", ["-d", "-i", iso]).stdout).toMatch(/Volume id: OVF ENV[\s\S]*Joliet/);
    expect(run("isoinfo", ["-l", "-i", iso]).stdout).toContain("OVF_ENV.XML;1");
    expect(run("isoinfo", ["-J", "-l", "-i", iso]).stdout).toContain("ovf-env.xml");
    const xml = run("isoinfo", ["-J", "-i", iso, "-x", "/ovf-env.xml"]).stdout;
    expect(xml).toContain('<Property oe:key="hostname" oe:value="web1"/>');
    // Reproducible: the same input gives the same image.
    const again = join(dir, "env2.iso");
    await writeEnvironment(CLOUD_INIT_OVF, { hostname: "web1" }, again);
    expect(readFileSync(again)).toEqual(readFileSync(iso));
  });
});
