import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bootTest } from "../../src/runtime/boot.js";
import { APPLIANCES } from "../helpers/corpus.js";

/**
 * The i386 reference appliance (../shared/appliances/README.md) all the
 * way to its marker in the embedded PC: GRUB, Linux 6.1 (686), the
 * initramfs loads virtio_pci + virtio_blk, binds our transitional
 * virtio-blk device (modern interface), mounts the ext4 root from it and
 * runs its init. Minutes of host time.
 */

const image = join(APPLIANCES, "appliance-i386.vmdk");
const skip = existsSync(image) ? "" : `appliance missing: ${image}`;
if (skip) console.warn(`[skip] ${skip}`);

describe.skipIf(skip)("the i386 reference appliance on virtio-blk", () => {
  it("reaches APPLIANCE-BOOT-OK with the virtio-blk driver at DRIVER_OK", async () => {
    const result = await bootTest(image, {
      expect: "APPLIANCE-BOOT-OK",
      timeoutSeconds: 60,
      wallTimeoutSeconds: 3000,
      diskBus: "virtio",
    });
    expect(result.verdict, `${result.detail}\n${result.consoleTail}`).toBe("passed");
    expect(result.consoleTail).toMatch(/GRUB-OK \S+[\s\S]*INITRAMFS-OK \S+[\s\S]*APPLIANCE-BOOT-OK/);
    expect(result.detail).toMatch(/driver interface modern, .*DRIVER_OK yes, queues set up 1/);
    console.log(
      `i386 appliance: ${result.instructions} instructions, ${result.wallSeconds.toFixed(0)} s, ${result.detail}`,
    );
  }, 3_600_000);
});
