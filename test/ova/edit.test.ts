import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { editPackage } from "../../src/ovf/edit.js";
import { verifyPackage } from "../../src/ovf/ova.js";
import { packOva } from "../../src/ovf/pack.js";
import { parseOvf } from "../../src/ovf/parse.js";
import { validateOvf } from "../../src/ovf/validate.js";
import { ovfkit } from "../helpers/cli.js";
import { CORPUS_OVF, hasCorpus } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-edit-");
const noQemuImg = skipReason("qemu-img");
const noOpenssl = skipReason("openssl");
const COT = join(CORPUS_OVF, "cot/COT/tests");

/** A writable copy of COT's input package (descriptor, manifest, disk, ISO, text file). */
function cotCopy(name: string): string {
  const folder = join(dir, name);
  mkdirSync(folder);
  for (const file of ["input.ovf", "input.mf", "input.vmdk", "input.iso", "sample_cfg.txt"]) {
    copyFileSync(join(COT, file), join(folder, file));
  }
  return join(folder, "input.ovf");
}

/** Lines that differ between two texts (a crude diff: the edit must touch only what it is about). */
function changedLines(before: string, after: string): string[] {
  const old = new Set(before.split("\n").map((l) => l.trim()));
  return after
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => !old.has(l));
}

describe("edit", { skip: !hasCorpus }, () => {
  it("sets name, CPUs, memory, vendor, properties and networks; only those lines change; manifest rewritten", async () => {
    const ovf = cotCopy("basic");
    const before = readFileSync(ovf, "utf8");
    await editPackage(ovf, {
      name: "renamed",
      cpus: 4,
      memoryMiB: 2048,
      vendor: "ACME",
      addNetworks: [{ name: "backend" }],
      addNics: [{ network: "backend", subtype: "E1000" }],
      addProperties: [{ key: "port", type: "uint16", value: "8080" }],
      properties: { "login-username": "admin" },
      product: "Router",
      version: "2.0",
      eula: "You agree to everything.",
    });
    const after = readFileSync(ovf, "utf8");
    const envelope = parseOvf(after);
    const system = envelope.virtualSystems[0]!;
    expect(system.element.elements().find((e) => e.localName === "Name")?.text).toBe("renamed");
    expect(envelope.networks.map((n) => n.name)).toContain("backend");
    expect(system.properties.find((p) => p.key === "port")).toMatchObject({ type: "uint16", value: "8080" });
    expect(system.properties.find((p) => p.key === "login-username")?.value).toBe("admin");
    const product = system.products[0]!;
    const text = (local: string) => product.elements().find((e) => e.localName === local)?.text;
    expect([text("Product"), text("Version")]).toEqual(["Router", "2.0"]);
    const license = system.eulas[0]?.elements().find((e) => e.localName === "License");
    expect(license?.text).toBe("You agree to everything.");
    const cpus = envelope.items
      .filter(({ item }) => item.resourceType === 3)
      .map(({ item }) => item.virtualQuantity);
    expect(new Set(cpus)).toEqual(new Set(["4"]));
    const changed = changedLines(before, after).filter((l) => !/^<\?xml|ovf:(File|Disk) /.test(l));
    expect(changed.length).toBeLessThan(30);
    expect((await verifyPackage(ovf)).findings).toEqual([]);
    // The edited descriptor is still valid OVF (structure, references, semantics), and strict XSD agrees.
    const validation = await validateOvf(ovf, { strictXsd: true });
    expect(validation.files[0]!.layers).toContain(5);
    expect(validation.files[0]!.findings.filter((f) => f.severity === "error")).toEqual([]);
  });

  it("adds a disk (File + Disk + Item on the controller) and removes one, in an OVA rewritten in one pass", {
    skip: Boolean(noQemuImg),
  }, async () => {
    const ovf = cotCopy("disks");
    const ova = join(dir, "disks.ova");
    await packOva(ovf, ova);
    const data = join(dir, "data.qcow2");
    run("qemu-img", ["create", "-f", "qcow2", data, "64M"]);
    const result = await editPackage(ova, {
      addDisks: [data],
      resizeDisks: [{ diskId: "vmdisk1", bytes: 2 * 2 ** 30 }],
    });
    expect(result.added.map((a) => a.href)).toEqual(["data.qcow2"]);
    const report = await verifyPackage(ova);
    expect(report.findings).toEqual([]);
    expect(report.members.map((m) => m.name)).toContain("data.qcow2");
    const cli = ovfkit(["edit", ova, "--remove-disk", "vmdisk1", "--output", "json"]);
    expect(cli.status, cli.stderr).toBe(0);
    const after = await verifyPackage(ova);
    expect(after.ok).toBe(true);
    expect(after.members.map((m) => m.name)).not.toContain("input.vmdk");
    await expect(
      editPackage(ova, { resizeDisks: [{ diskId: "vmdisk3", bytes: 1024 }] }),
    ).rejects.toMatchObject({
      code: "OVF_DISK_SHRINK",
    });
  });

  it("refuses to edit a signed package without the key, re-signs with it", {
    skip: Boolean(noOpenssl),
  }, async () => {
    run(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edit",
      ],
      {
        cwd: dir,
      },
    );
    const sign = {
      privateKey: readFileSync(join(dir, "k.pem")),
      certificate: readFileSync(join(dir, "c.pem")),
    };
    const ova = join(dir, "signed.ova");
    await packOva(cotCopy("signed"), ova, { sign });
    await expect(editPackage(ova, { annotation: "x" })).rejects.toMatchObject({ code: "OVF_EDIT_SIGNED" });
    await editPackage(ova, { annotation: "signed again" }, { sign });
    const report = await verifyPackage(ova);
    expect(report.ok).toBe(true);
    expect(report.certificate).toBe("input.cert");
    await editPackage(ova, { annotation: "unsigned" }, { dropSignature: true });
    expect((await verifyPackage(ova)).certificate).toBeUndefined();
  });

  it("refuses unknown properties and NICs on undeclared networks with typed errors", async () => {
    const ovf = cotCopy("errors");
    const before = readFileSync(ovf);
    await expect(editPackage(ovf, { properties: { nope: "1" } })).rejects.toMatchObject({
      code: "OVF_NO_SUCH_PROPERTY",
    });
    await expect(editPackage(ovf, { addNics: [{ network: "nowhere" }] })).rejects.toMatchObject({
      code: "OVF_NO_SUCH_NETWORK",
    });
    expect(readFileSync(ovf)).toEqual(before);
  });
});
