import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bootTest } from "../../src/runtime/boot.js";
import { APPLIANCES } from "../helpers/corpus.js";

/**
 * Long boots of the reference appliances in ../shared/appliances (see its
 * README): GRUB 2 from the MBR, its config from the ext4 partition, then
 * the kernel. Markers are matched without the appliance's name (the same
 * images can be built with any name).
 */

const images = ["appliance.vmdk", "appliance.vhd", "appliance-i386.vmdk", "appliance-i386.vhd"];
const missing = images.filter((name) => !existsSync(join(APPLIANCES, name)));
const skip = missing.length > 0 ? `appliances missing in ${APPLIANCES}: ${missing.join(", ")}` : "";
if (skip) console.warn(`[skip] ${skip}`);

describe.skipIf(skip)("reference appliances", () => {
  for (const name of images) {
    it(`GRUB on ${name} reads grub.cfg from ext4 and prints GRUB-OK`, async () => {
      const result = await bootTest(join(APPLIANCES, name), { expect: "GRUB-OK ", timeoutSeconds: 20 });
      expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("passed");
      expect(result.unhandledBiosCalls).toEqual([]);
      expect(result.sectorsWritten).toBe(0);
    });
  }

  it("GRUB-OK is deterministic: the same instruction count from the VMDK and the VHD of one appliance", async () => {
    const a = await bootTest(join(APPLIANCES, "appliance-i386.vmdk"), {
      expect: "GRUB-OK ",
      timeoutSeconds: 20,
    });
    const b = await bootTest(join(APPLIANCES, "appliance-i386.vhd"), {
      expect: "GRUB-OK ",
      timeoutSeconds: 20,
    });
    expect(a.verdict).toBe("passed");
    expect(b.instructions).toBe(a.instructions);
    expect(b.consoleTail).toBe(a.consoleTail);
  });

  it("the i386 appliance boots GRUB -> Linux 6.1 (686) into its initramfs: INITRAMFS-OK", async () => {
    // About 7 G instructions: minutes of host time. Deterministic, so the count is stable.
    const result = await bootTest(join(APPLIANCES, "appliance-i386.vmdk"), {
      expect: "INITRAMFS-OK ",
      timeoutSeconds: 30,
      wallTimeoutSeconds: 3000,
    });
    expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("passed");
    expect(result.consoleTail).toMatch(/GRUB-OK \S+[\s\S]*INITRAMFS-OK /);
  }, 3_600_000);
});
