import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveProfile } from "../../src/ovf/profiles/index.js";
import { validateDescriptor, validateOvf } from "../../src/ovf/validate.js";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, skipReason } from "../helpers/tools.js";

const NEGATIVE = resolve(import.meta.dirname, "../../fixtures/ovf/negative");
const BASE = readFileSync(join(NEGATIVE, "base.ovf"), "utf8");
const sha1 = (data: Buffer | string): string => createHash("sha1").update(data).digest("hex");

/** base.ovf beside its streamOptimized disk and a SHA1 manifest: what every target accepts. */
function goodFolder(dir: string): string {
  writeFileSync(join(dir, "app.ovf"), BASE);
  copyFileSync(join(NEGATIVE, "disks/stream-optimized.vmdk"), join(dir, "disk1.vmdk"));
  const disk = readFileSync(join(dir, "disk1.vmdk"));
  writeFileSync(join(dir, "app.mf"), `SHA1(app.ovf)= ${sha1(BASE)}\nSHA1(disk1.vmdk)= ${sha1(disk)}\n`);
  return join(dir, "app.ovf");
}

describe("target profiles accept good packages", () => {
  it("a clean folder package passes vSphere 6.0, VirtualBox, AWS and oVirt with no findings", async () => {
    const path = goodFolder(tempDir());
    const report = await validateOvf(path, { profiles: ["vsphere-6.0", "virtualbox", "aws", "ovirt"] });
    expect(report.files[0]!.findings).toEqual([]);
  });

  it.skipIf(!hasTool("tar"))(
    `the same files as a ustar OVA, descriptor first, pass too ${skipReason("tar")}`,
    async () => {
      const dir = tempDir();
      goodFolder(dir);
      execFileSync("tar", ["--format=ustar", "-cf", "app.ova", "app.ovf", "app.mf", "disk1.vmdk"], {
        cwd: dir,
      });
      const report = await validateOvf(join(dir, "app.ova"), { profiles: ["vsphere-8.0", "aws"] });
      expect(report.files[0]!.findings).toEqual([]);
    },
  );

  it.skipIf(!hasTool("tar"))("an OVA whose disk comes first breaks the vSphere tar layout rule", async () => {
    const dir = tempDir();
    goodFolder(dir);
    execFileSync("tar", ["--format=ustar", "-cf", "app.ova", "disk1.vmdk", "app.ovf", "app.mf"], {
      cwd: dir,
    });
    const report = await validateOvf(join(dir, "app.ova"), { profiles: ["vsphere"] });
    expect(report.files[0]!.findings.map((f) => f.ruleId)).toContain("OVF-TGT-001");
  });

  it.skipIf(!hasTool("qemu-img"))(
    `Azure accepts a fixed, MiB-aligned VHD made by qemu-img ${skipReason("qemu-img")}`,
    async () => {
      const dir = tempDir();
      execFileSync("qemu-img", [
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        join(dir, "disk1.vhd"),
        "20M",
      ]);
      const size = readFileSync(join(dir, "disk1.vhd")).length;
      expect(size).toBe(20 * 2 ** 20 + 512);
      writeFileSync(
        join(dir, "app.ovf"),
        BASE.replace('ovf:href="disk1.vmdk"', 'ovf:href="disk1.vhd"')
          .replace('ovf:size="65536"', `ovf:size="${size}"`)
          .replace('ovf:capacity="64"', 'ovf:capacity="20"')
          .replace("vmdk.html#streamOptimized", "vhd"),
      );
      const report = await validateOvf(join(dir, "app.ovf"), { profiles: ["azure"] });
      expect(report.files[0]!.findings).toEqual([]);
      // the same disk made dynamic is refused
      execFileSync("qemu-img", [
        "convert",
        "-O",
        "vpc",
        "-o",
        "subformat=dynamic",
        join(dir, "disk1.vhd"),
        join(dir, "dyn.vhd"),
      ]);
      copyFileSync(join(dir, "dyn.vhd"), join(dir, "disk1.vhd"));
      const dynamic = await validateOvf(join(dir, "app.ovf"), { profiles: ["azure"] });
      expect(dynamic.files[0]!.findings.map((f) => f.ruleId)).toContain("OVF-TGT-007");
    },
  );

  it("vSphere versions bound the hardware version", async () => {
    const vmx14 = BASE.replace("vmx-11", "vmx-14");
    const at = async (profile: string) =>
      (await validateDescriptor(vmx14, { profiles: [profile] })).findings.filter(
        (f) => f.ruleId === "OVF-TGT-005",
      ).length;
    expect(await at("vsphere-6.5")).toBe(1);
    expect(await at("vsphere-6.7")).toBe(0);
    const vbox = BASE.replace("vmx-11", "virtualbox-2.2");
    const family = await validateDescriptor(vbox, { profiles: ["vsphere"] });
    expect(family.findings.find((f) => f.ruleId === "OVF-TGT-005")?.message).toContain(
      "unsupported hardware family 'virtualbox-2.2'",
    );
  });

  it("resolves versioned profile names and refuses unknown ones", () => {
    expect(resolveProfile("vSphere-7.0U2").label).toBe("vsphere-7.0u2");
    expect(() => resolveProfile("vsphere-9.9")).toThrow(
      expect.objectContaining({ code: "OVF_UNKNOWN_PROFILE" }),
    );
    expect(() => resolveProfile("hyperv")).toThrow(expect.objectContaining({ code: "OVF_UNKNOWN_PROFILE" }));
  });
});

describe("layer 5 inside an .ova", () => {
  it.skipIf(!hasTool("xmllint") || !hasTool("tar"))(
    `xmllint judges the descriptor read from the tar (on stdin) ${skipReason("xmllint")}`,
    async () => {
      const dir = tempDir();
      copyFileSync(join(NEGATIVE, "OVF-XSD-001/case.ovf"), join(dir, "app.ovf"));
      execFileSync("tar", ["--format=ustar", "-cf", "bad.ova", "app.ovf"], { cwd: dir });
      writeFileSync(join(dir, "app.ovf"), BASE);
      execFileSync("tar", ["--format=ustar", "-cf", "good.ova", "app.ovf"], { cwd: dir });
      const report = await validateOvf([join(dir, "bad.ova"), join(dir, "good.ova")], { strictXsd: true });
      const [bad, good] = report.files;
      expect(bad!.layers).toContain(5);
      expect(good!.layers).toContain(5);
      const xsd = bad!.findings.find((f) => f.ruleId === "OVF-XSD-001");
      expect(xsd).toMatchObject({ file: join(dir, "bad.ova/app.ovf"), line: 38 });
      expect(xsd!.xpath).toMatch(/rasd:InstanceID\[1\]$/);
      expect(good!.findings.filter((f) => f.layer === 5)).toEqual([]);
    },
  );
});
