import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { qemuBootTest } from "../../src/runtime/engines/qemu.js";
import { APPLIANCES } from "../helpers/corpus.js";
import { skipReason } from "../helpers/tools.js";

/**
 * The reference appliances (../shared/appliances/README.md) under
 * `--engine qemu`: the oracle the embedded engine's verdicts are compared
 * with. qemu TCG takes 5-7.5 s to the marker on a quiet 2-core machine.
 */

const images = ["appliance.vmdk", "appliance-novirtio.vmdk"];
const missing = images.filter((name) => !existsSync(join(APPLIANCES, name)));
const skip =
  skipReason("qemu-system-x86_64") ||
  (missing.length > 0 ? `appliances missing in ${APPLIANCES}: ${missing.join(", ")}` : "");
if (skip) console.warn(`[skip] ${skip}`);

describe.skipIf(skip)("reference appliances under --engine qemu", () => {
  it("appliance.vmdk on virtio-blk reaches APPLIANCE-BOOT-OK", async () => {
    const result = await qemuBootTest(join(APPLIANCES, "appliance.vmdk"), {
      expect: "APPLIANCE-BOOT-OK",
      timeoutSeconds: 120,
      memoryMiB: 256,
    });
    expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("passed");
    expect(result.consoleTail).toMatch(/GRUB-OK \S+[\s\S]*INITRAMFS-OK \S+[\s\S]*APPLIANCE-BOOT-OK/);
  }, 180_000);

  it("appliance-novirtio.vmdk gives the verdict no-root-device", async () => {
    const result = await qemuBootTest(join(APPLIANCES, "appliance-novirtio.vmdk"), {
      expect: "APPLIANCE-BOOT-OK",
      timeoutSeconds: 120,
      memoryMiB: 256,
    });
    expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("no-root-device");
    expect(result.detail).toBe("APPLIANCE-BOOT-FAIL no-root-device");
    expect(result.passed).toBe(false);
  }, 180_000);

  it("appliance.vmdk on IDE: its initramfs has only virtio drivers, so the verdict is no-root-device", async () => {
    const result = await qemuBootTest(join(APPLIANCES, "appliance.vmdk"), {
      expect: "APPLIANCE-BOOT-OK",
      timeoutSeconds: 120,
      memoryMiB: 256,
      diskBus: "ide",
    });
    // MANIFEST.txt: the initramfs loads virtio_pci and virtio_blk only; nothing drives an ATA disk.
    expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("no-root-device");
  }, 180_000);
});
