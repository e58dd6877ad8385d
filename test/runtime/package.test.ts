import { copyFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { bootTest } from "../../src/runtime/boot.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { run } from "../helpers/tools.js";

const APPLIANCE_VMDK = resolve(import.meta.dirname, "../../fixtures/runtime/appliance.vmdk");
const dir = tempDir();

/** An OVF 1.0 descriptor with a CD-ROM item first and the hard disk second. */
function descriptor(diskHref: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:id="tools" ovf:href="tools.iso"/>
    <File ovf:id="file1" ovf:href="${diskHref}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1048576"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="tiny">
    <Info>The tiny appliance</Info>
    <VirtualHardwareSection>
      <Info>Hardware</Info>
      <Item>
        <rasd:ElementName>CD-ROM</rasd:ElementName>
        <rasd:HostResource>ovf:/file/tools</rasd:HostResource>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}

describe("booting OVF and OVA packages", () => {
  it("boots the first hard disk of an OVF folder package", async () => {
    const folder = join(dir, "folder");
    run("mkdir", ["-p", folder]);
    copyFileSync(APPLIANCE_VMDK, join(folder, "tiny-disk1.vmdk"));
    writeFileSync(join(folder, "tiny.ovf"), descriptor("tiny-disk1.vmdk"));
    const result = await bootTest(join(folder, "tiny.ovf"), {
      expect: "TINY-APPLIANCE-OK",
      timeoutSeconds: 1,
    });
    expect(result.verdict).toBe("passed");
  });

  it("boots the first hard disk of an OVA (its VMDK streamed out of the tar), through the CLI", () => {
    const staging = join(dir, "ova");
    run("mkdir", ["-p", staging]);
    copyFileSync(APPLIANCE_VMDK, join(staging, "tiny-disk1.vmdk"));
    writeFileSync(join(staging, "tiny.ovf"), descriptor("tiny-disk1.vmdk"));
    writeFileSync(join(staging, "tools.iso"), Buffer.alloc(2048));
    const ova = join(dir, "tiny.ova");
    const tar = run("tar", [
      "--format=ustar",
      "-cf",
      ova,
      "-C",
      staging,
      "tiny.ovf",
      "tools.iso",
      "tiny-disk1.vmdk",
    ]);
    expect(tar.status).toBe(0);
    const result = ovfkit([
      "boot",
      ova,
      "--expect",
      "TINY-APPLIANCE-OK",
      "--output",
      "json",
      "--timeout",
      "1",
    ]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ verdict: "passed", target: ova });
  });

  it("says which disk is missing", async () => {
    const folder = join(dir, "broken");
    run("mkdir", ["-p", folder]);
    writeFileSync(join(folder, "broken.ovf"), descriptor("absent.vmdk"));
    await expect(bootTest(join(folder, "broken.ovf"), { timeoutSeconds: 1 })).rejects.toMatchObject({
      code: "FILE_NOT_FOUND",
    });
  });
});
