import { basename, join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bootTest } from "../../src/runtime/boot.js";
import { qemuBootTest } from "../../src/runtime/engines/qemu.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";
import { reportLines } from "./qemu.js";

/**
 * fixtures/disk-bus/diskbus.asm drives the boot disk's controller directly
 * from real-mode x86 code (a legacy virtio-pci driver, or ATA PIO), the
 * way a guest driver does. Booted in ovfkit with --disk-bus virtio|ide and
 * in qemu with if=virtio|ide, it must print the same PASS lines: qemu's
 * devices are the oracle for ours.
 */

const SOURCE = resolve(import.meta.dirname, "../../fixtures/disk-bus/diskbus.asm");
const NO_ROOT_SOURCE = resolve(import.meta.dirname, "../../fixtures/disk-bus/noroot.asm");
const INCLUDES = resolve(import.meta.dirname, "../../fixtures/runtime");
const noNasm = skipReason("nasm");
const noQemu = skipReason("qemu-system-x86_64");

const EXPECTED = {
  virtio: [
    "virtio-found",
    "virtio-queue-size",
    "virtio-driver-ok",
    "virtio-used-ring",
    "virtio-used-length",
    "virtio-status-ok",
    "virtio-read-data",
    "virtio-isr",
    "virtio-isr-read-clears",
  ],
  ide: [
    "ide-identify",
    "ide-ata-device",
    "ide-lba",
    "ide-read-sectors",
    "ide-read-data",
    "ide-write-sectors",
    "ide-write-read-back",
  ],
} as const;

function assemble(source: string): string {
  const out = join(tempDir(), `${basename(source, ".asm")}.img`);
  const built = run("nasm", ["-f", "bin", "-I", `${INCLUDES}/`, "-o", out, source]);
  expect(built.stderr).toBe("");
  expect(built.status).toBe(0);
  return out;
}

describe.skipIf(noNasm)("a real-mode driver program on each disk bus", () => {
  let image = "";
  let noRoot = "";
  beforeAll(() => {
    image = assemble(SOURCE);
    noRoot = assemble(NO_ROOT_SOURCE);
  });

  for (const bus of ["virtio", "ide"] as const) {
    it(`--disk-bus ${bus}: every step passes in ovfkit, deterministically`, async () => {
      const a = await bootTest(image, { diskBus: bus, expect: "DONE", timeoutSeconds: 5, format: "raw" });
      expect(a.verdict, a.detail).toBe("passed");
      expect(reportLines(a.consoleTail)).toEqual([...EXPECTED[bus].map((s) => `PASS ${s}`), "DONE"]);
      const b = await bootTest(image, { diskBus: bus, expect: "DONE", timeoutSeconds: 5, format: "raw" });
      expect(b.instructions).toBe(a.instructions);
      expect(b.sectorsWritten).toBe(a.sectorsWritten);
      expect(a.sectorsWritten).toBe(bus === "ide" ? 1 : 0);
    });

    it.skipIf(noQemu)(`--disk-bus ${bus}: qemu (if=${bus}) prints the same lines`, async () => {
      const [ours, theirs] = await Promise.all([
        bootTest(image, { diskBus: bus, expect: "DONE", timeoutSeconds: 5, format: "raw" }),
        qemuBootTest(image, {
          diskBus: bus,
          expect: "DONE",
          timeoutSeconds: 30,
          format: "raw",
          memoryMiB: 64,
        }),
      ]);
      expect(theirs.verdict, theirs.consoleTail).toBe("passed");
      expect(reportLines(theirs.consoleTail)).toEqual(reportLines(ours.consoleTail));
    });
  }

  it("the verdict of a guest that finds no root disk is no-root-device, with the virtio driver's progress", async () => {
    const result = await bootTest(noRoot, { expect: "APPLIANCE-BOOT-OK", timeoutSeconds: 5, format: "raw" });
    expect(result.verdict).toBe("no-root-device");
    expect(result.passed).toBe(false);
    // This guest never touched the device: no config reads beyond the BIOS's, no DRIVER_OK.
    expect(result.detail).toMatch(
      /^APPLIANCE-BOOT-FAIL no-root-device; disk: .*DRIVER_OK no, queues set up 0/,
    );
  });

  it.skipIf(noQemu)("qemu gives the same no-root-device verdict for the same console", async () => {
    const result = await qemuBootTest(noRoot, {
      expect: "APPLIANCE-BOOT-OK",
      timeoutSeconds: 30,
      format: "raw",
      memoryMiB: 64,
    });
    expect(result.verdict).toBe("no-root-device");
    expect(result.detail).toBe("APPLIANCE-BOOT-FAIL no-root-device");
  });

  it("ovfkit boot --disk-bus ide: exit 0 and a JSON report whose detail shows the IDE commands", () => {
    const out = ovfkit([
      "boot",
      image,
      "-f",
      "raw",
      "--disk-bus",
      "ide",
      "--expect",
      "DONE",
      "--timeout",
      "5",
      "--output",
      "json",
    ]);
    expect(out.status, out.stderr).toBe(0);
    const report = JSON.parse(out.stdout) as { verdict: string; detail: string };
    expect(report.verdict).toBe("passed");
    expect(report.detail).toMatch(/disk: IDE commands 0xec×1 0x20×2 0x30×1/);
  });

  it.skipIf(noQemu)(
    "ovfkit boot --engine qemu: exit 1 and verdict no-root-device; a bad --engine is a usage error",
    () => {
      const out = ovfkit([
        "boot",
        noRoot,
        "-f",
        "raw",
        "--engine",
        "qemu",
        "--expect",
        "APPLIANCE-BOOT-OK",
        "--timeout",
        "30",
        "--output",
        "json",
      ]);
      expect(out.status, out.stderr).toBe(1);
      expect((JSON.parse(out.stdout) as { verdict: string }).verdict).toBe("no-root-device");
      const bad = ovfkit(["boot", noRoot, "--engine", "bochs"]);
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(/engine/);
    },
  );
});
