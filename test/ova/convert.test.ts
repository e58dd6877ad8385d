import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyPackage } from "../../src/ovf/ova.js";
import { unpackOva } from "../../src/ovf/pack.js";
import { parseOvf } from "../../src/ovf/parse.js";
import { CONVERT_TARGETS, convertAppliance, createOvf } from "../../src/ovf/target-convert.js";
import { validateOvf } from "../../src/ovf/validate.js";
import { ovfkit } from "../helpers/cli.js";
import { CORPUS_OVF, hasCorpus } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-convert-");
const noQemuImg = skipReason("qemu-img");
const COT_INPUT = join(CORPUS_OVF, "cot/COT/tests/input.ovf");
const VIRTUALBOX = join(CORPUS_OVF, "ganeti/test/data/ovfdata/virtualbox.ovf");

/** qemu-img's name for each target's disk format. */
const QEMU_FORMAT = {
  vsphere: "vmdk",
  aws: "vmdk",
  virtualbox: "vmdk",
  azure: "vpc",
  ovirt: "qcow2",
} as const;

describe("convert --target (whole appliance)", { skip: !hasCorpus || Boolean(noQemuImg) }, () => {
  // Azure gets its own smaller appliance below: a fixed VHD of COT's 1 GiB disk is 1 GiB of writing.
  for (const target of CONVERT_TARGETS.filter((t) => t !== "azure")) {
    it(`COT input.ovf → ${target}: validates clean against the ${target} profile, disks pass qemu-img check and compare`, async () => {
      const out = join(dir, `cot-${target}.ova`);
      const result = await convertAppliance(COT_INPUT, out, { target });
      const report = await validateOvf(out, { profiles: [target] });
      expect(report.files[0]!.findings.filter((f) => f.severity !== "info")).toEqual([]);
      expect((await verifyPackage(out)).findings).toEqual([]);
      const folder = join(dir, `cot-${target}`);
      await unpackOva(out, folder);
      for (const disk of result.disks) {
        const path = join(folder, disk.to);
        const info = JSON.parse(run("qemu-img", ["info", "--output=json", path]).stdout) as {
          format: string;
        };
        expect(info.format).toBe(QEMU_FORMAT[target]);
        expect(
          run("qemu-img", ["check", "-f", QEMU_FORMAT[target], path]).status,
          `qemu-img check ${disk.to}`,
        ).toBe(0);
        const compare = run("qemu-img", ["compare", join(CORPUS_OVF, "cot/COT/tests", disk.from), path]);
        expect(compare.stdout).toContain("Images are identical");
      }
    });
  }

  it("fixes a VirtualBox descriptor for vSphere (vmx, PIIX4, duplicate AddressOnParent)", async () => {
    const before = await validateOvf(VIRTUALBOX, { profiles: ["vsphere"] });
    expect(before.files[0]!.findings.some((f) => f.severity === "error")).toBe(true);
    const out = join(dir, "vbox-vsphere.ova");
    const result = await convertAppliance(VIRTUALBOX, out, { target: "vsphere" });
    expect(result.changes).toEqual(
      expect.arrayContaining([
        "VirtualSystemType virtualbox-2.2 → vmx-13",
        "IDE controller subtype PIIX4 removed (vSphere does not know it)",
      ]),
    );
    expect(result.changes.join("\n")).toMatch(/AddressOnParent 0 → 1/);
    const after = await validateOvf(out, { profiles: ["vsphere"] });
    expect(after.files[0]!.findings.filter((f) => f.severity === "error")).toEqual([]);
  });

  it("leaves nothing behind when a conversion fails", async () => {
    const out = join(dir, "broken.ova");
    await expect(
      convertAppliance(join(CORPUS_OVF, "ganeti/test/data/ovfdata/gzip_disk.ovf"), out, {
        target: "vsphere",
      }),
    ).rejects.toMatchObject({
      code: "CONVERT_UNSUPPORTED",
    });
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith(".broken.ova"))).toEqual([]);
  });
});

describe("create-ovf", { skip: Boolean(noQemuImg) }, () => {
  it("turns a qcow2 and a raw image into a vSphere OVA that validates and converts back identical", async () => {
    const qcow2 = join(dir, "root.qcow2");
    const raw = join(dir, "data.raw");
    run("qemu-img", ["create", "-f", "qcow2", qcow2, "32M"]);
    run("qemu-io", ["-c", "write -P 0x5a 1M 64k", qcow2]);
    run("qemu-img", ["create", "-f", "raw", raw, "8M"]);
    const out = join(dir, "created.ova");
    const cli = ovfkit(["create-ovf", qcow2, raw, "-o", out, "--cpus", "2", "--memory", "2G"]);
    expect(cli.status, cli.stderr).toBe(0);
    const report = await validateOvf(out, { profiles: ["vsphere"] });
    expect(report.files[0]!.findings.filter((f) => f.severity !== "info")).toEqual([]);
    const folder = join(dir, "created");
    await unpackOva(out, folder);
    const envelope = parseOvf(readFileSync(join(folder, "created.ovf")));
    expect(envelope.disks.map((d) => d.capacity)).toEqual(["32", "8"]);
    expect(envelope.items.find(({ item }) => item.resourceType === 4)?.item.virtualQuantity).toBe("2048");
    expect(run("qemu-img", ["compare", qcow2, join(folder, "root.vmdk")]).stdout).toContain(
      "Images are identical",
    );
  });

  it("writes an OVF folder for azure with fixed, MiB-aligned VHDs; an OVA converts to azure too", async () => {
    // Azure refuses disks under 20 MiB (the validator says so): 24 MiB + 4 KiB, rounded up to 25 MiB.
    const raw = join(dir, "odd.raw");
    run("qemu-img", ["create", "-f", "raw", raw, `${24 * 1024 * 1024 + 4096}`]);
    const outDir = join(dir, "azure-out");
    mkdirSync(outDir);
    const out = join(outDir, "app.ovf");
    await createOvf([raw], out, { target: "azure" });
    expect((await verifyPackage(out)).findings).toEqual([]);
    const report = await validateOvf(out, { profiles: ["azure"] });
    expect(report.files[0]!.findings.filter((f) => f.severity === "error")).toEqual([]);
    const vhd = join(outDir, "odd.vhd");
    const info = JSON.parse(run("qemu-img", ["info", "-f", "vpc", "--output=json", vhd]).stdout) as {
      "virtual-size": number;
    };
    expect(info["virtual-size"]).toBe(25 * 1024 * 1024);
    // qemu-img has no checker for VHD (exit 63 "not supported"); compare below proves the content.
    expect([0, 63]).toContain(run("qemu-img", ["check", "-f", "vpc", vhd]).status);
    expect(run("qemu-img", ["compare", "-f", "raw", "-F", "vpc", raw, vhd]).stdout).toContain(
      "Images are identical",
    );
    // The same appliance as an OVA, converted OVA → OVA for azure.
    const ova = join(dir, "for-azure.ova");
    await createOvf([raw], ova, { target: "vsphere" });
    const azure = join(dir, "azure.ova");
    await convertAppliance(ova, azure, { target: "azure" });
    const report2 = await validateOvf(azure, { profiles: ["azure"] });
    expect(report2.files[0]!.findings.filter((f) => f.severity === "error")).toEqual([]);
  });
});
