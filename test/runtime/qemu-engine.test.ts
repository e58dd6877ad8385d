import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import { bootTest } from "../../src/runtime/boot.js";
import { qemuArguments, qemuBootTest } from "../../src/runtime/engines/qemu.js";
import { consoleFailure } from "../../src/runtime/verdict.js";
import { tempDir } from "../helpers/tmp.js";
import { skipReason } from "../helpers/tools.js";

/**
 * `--engine qemu`: the same boot test in qemu-system-x86_64, judged by the
 * same rules. The fixtures are the platform's nasm programs; both engines
 * must give the same verdict on each.
 */

const FIXTURES = resolve(import.meta.dirname, "../../fixtures/runtime");
const APPLIANCE_VMDK = join(FIXTURES, "appliance.vmdk");
const APPLIANCE_IMG = join(FIXTURES, "appliance.img");
const MODES = join(FIXTURES, "modes.img");
const noQemu = skipReason("qemu-system-x86_64");

describe("console verdict rules shared by both engines", () => {
  it("recognises a missing root device before the panic it causes", () => {
    expect(consoleFailure("INITRAMFS-OK x\nAPPLIANCE-BOOT-FAIL no-root-device\n")).toEqual({
      verdict: "no-root-device",
      line: "APPLIANCE-BOOT-FAIL no-root-device",
    });
    expect(
      consoleFailure(
        "VFS: Unable to mount root fs on unknown-block(0,0)\nKernel panic - not syncing: VFS: Unable",
      )?.verdict,
    ).toBe("no-root-device");
    expect(consoleFailure("Gave up waiting for root file system device.")?.verdict).toBe("no-root-device");
    expect(consoleFailure("ALERT!  UUID=1234 does not exist.  Dropping to a shell!")?.verdict).toBe(
      "no-root-device",
    );
  });

  it("a panic line is kernel-panic; a clean console is no failure", () => {
    expect(consoleFailure("[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n")).toEqual({
      verdict: "kernel-panic",
      line: "Kernel panic - not syncing: Attempted to kill init!",
    });
    expect(consoleFailure("GRUB-OK a\nINITRAMFS-OK a\n")).toBeUndefined();
  });
});

describe("qemu engine", () => {
  it("builds a read-only (snapshot) command line with the disk bus and memory asked for", () => {
    const args = qemuArguments("/d/a,b.vmdk", "vmdk", { memoryMiB: 256, diskBus: "ide" });
    expect(args).toContain("-no-reboot");
    expect(args.join(" ")).toContain("-accel tcg -m 256");
    expect(args.at(-1)).toBe("file=/d/a,,b.vmdk,format=vmdk,if=ide,snapshot=on");
  });

  it("a missing qemu binary is a typed error, not a crash", async () => {
    const error = await qemuBootTest(APPLIANCE_IMG, { qemuBinary: "/nonexistent/qemu-system-x86_64" }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OvfkitError);
    expect((error as OvfkitError).code).toBe("BOOT_ENGINE_UNAVAILABLE");
  });

  it.skipIf(noQemu)("the tiny appliance VMDK reaches its marker in qemu, as in ovfkit", async () => {
    const [theirs, ours] = await Promise.all([
      qemuBootTest(APPLIANCE_VMDK, { expect: "TINY-APPLIANCE-OK", timeoutSeconds: 30, diskBus: "ide" }),
      bootTest(APPLIANCE_VMDK, { expect: "TINY-APPLIANCE-OK", timeoutSeconds: 5 }),
    ]);
    expect(theirs.verdict, theirs.detail).toBe("passed");
    expect(theirs.verdict).toBe(ours.verdict);
    expect(theirs.consoleTail).toContain("TINY-APPLIANCE-OK");
  });

  it.skipIf(noQemu)(
    "without --expect the appliance's reboot ends the run: guest-reset in both engines",
    async () => {
      const consoleFile = join(tempDir(), "console.txt");
      const [theirs, ours] = await Promise.all([
        qemuBootTest(APPLIANCE_IMG, { timeoutSeconds: 30, format: "raw", consoleFile }),
        bootTest(APPLIANCE_IMG, { timeoutSeconds: 5 }),
      ]);
      expect(theirs.verdict).toBe("guest-reset");
      expect(theirs.passed).toBe(true);
      expect(theirs.verdict).toBe(ours.verdict);
      expect(theirs.passed).toBe(ours.passed);
    },
  );

  it.skipIf(noQemu)(
    "a CPU halted with interrupts off ends the run: guest-halted in both engines",
    async () => {
      const [theirs, ours] = await Promise.all([
        qemuBootTest(MODES, { timeoutSeconds: 60, format: "raw", memoryMiB: 64, diskBus: "ide" }),
        bootTest(MODES, { timeoutSeconds: 5 }),
      ]);
      expect(ours.verdict).toBe("guest-halted");
      expect(theirs.verdict, theirs.detail).toBe("guest-halted");
      expect(theirs.passed).toBe(ours.passed);
      expect(theirs.consoleTail).toContain("DONE");
    },
  );

  it.skipIf(noQemu)("a disk that is not bootable ends in a timeout with the console tail", async () => {
    const blank = join(tempDir(), "blank.img");
    writeFileSync(blank, Buffer.alloc(1024 * 1024));
    const result = await qemuBootTest(blank, { expect: "never", timeoutSeconds: 3, format: "raw" });
    expect(result.verdict).toBe("timeout");
    expect(result.passed).toBe(false);
  });
});
