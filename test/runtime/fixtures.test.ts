import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { compareDisks, openDisk } from "../../src/formats/index.js";
import { bootTest } from "../../src/runtime/boot.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";
import { qemuSerial, reportLines } from "./qemu.js";

const FIXTURES = resolve(import.meta.dirname, "../../fixtures/runtime");
const MODES = join(FIXTURES, "modes.img");
const APPLIANCE = join(FIXTURES, "appliance.img");
const APPLIANCE_VMDK = join(FIXTURES, "appliance.vmdk");
const noNasm = skipReason("nasm");
const noQemu = skipReason("qemu-system-i386");

/** The steps modes.asm reports, in order. */
const MODES_STEPS = [
  "bios-disk-read",
  "real-mode-arithmetic",
  "bios-int12",
  "bios-e820",
  "a20-off-wraps",
  "a20-on",
  "cmos-memory-size",
  "uart-loopback",
  "protected-mode",
  "paging-4k",
  "paging-pse-4m",
  "exception-divide",
  "exception-page-fault",
  "exception-general-protection",
  "pit-irq0",
  "pic-in-service",
  "rtc-irq8-cascade",
  "pit-channel2-gate",
  "back-to-real-mode",
];

describe("runtime fixture programs", () => {
  it.skipIf(noNasm)("committed images are built from their sources", () => {
    const dir = tempDir();
    for (const source of readdirSync(FIXTURES).filter((f) => f.endsWith(".asm"))) {
      const out = join(dir, source.replace(/\.asm$/, ".img"));
      const result = run("nasm", ["-f", "bin", "-I", `${FIXTURES}/`, "-o", out, join(FIXTURES, source)]);
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(readFileSync(out).equals(readFileSync(join(FIXTURES, source.replace(/\.asm$/, ".img"))))).toBe(
        true,
      );
    }
  });

  it("modes.img passes every step in ovfkit and ends halted (CLI; HLT)", async () => {
    const result = await bootTest(MODES, { timeoutSeconds: 5 });
    expect(reportLines(result.consoleTail)).toEqual([...MODES_STEPS.map((s) => `PASS ${s}`), "DONE"]);
    expect(result.verdict).toBe("guest-halted");
    expect(result.passed).toBe(false); // no --expect: only a reset or power-off is a clean end
    expect(result.skippedSeconds).toBeGreaterThan(0); // the HLT waits were fast-forwarded
  });

  it.skipIf(noQemu)("modes.img prints the same lines in qemu-system-i386 as in ovfkit", async () => {
    const [ours, theirs] = await Promise.all([
      bootTest(MODES, { timeoutSeconds: 5 }),
      qemuSerial(MODES, { until: "DONE" }),
    ]);
    expect(reportLines(theirs)).toEqual(reportLines(ours.consoleTail));
    expect(reportLines(theirs)).toContain("DONE");
  });

  it("a boot is deterministic: same console, same instruction count, same virtual time", async () => {
    const a = await bootTest(MODES, { timeoutSeconds: 5 });
    const b = await bootTest(MODES, { timeoutSeconds: 5 });
    expect(b.instructions).toBe(a.instructions);
    expect(b.virtualSeconds).toBe(a.virtualSeconds);
    expect(b.consoleTail).toBe(a.consoleTail);
  });

  it("the tiny appliance boots to its marker from the raw image and from its streamOptimized VMDK", async () => {
    const raw = await bootTest(APPLIANCE, { expect: "TINY-APPLIANCE-OK", timeoutSeconds: 5 });
    expect(raw.verdict).toBe("passed");
    const vmdk = await bootTest(APPLIANCE_VMDK, { expect: "TINY-APPLIANCE-OK", timeoutSeconds: 5 });
    expect(vmdk.verdict).toBe("passed");
    expect(vmdk.instructions).toBe(raw.instructions);
    const a = await openDisk(APPLIANCE);
    const b = await openDisk(APPLIANCE_VMDK);
    expect(b.formatSpecific).toMatchObject({ "create-type": "streamOptimized" });
    expect((await compareDisks(a, b)).identical).toBe(true);
    await a.close();
    await b.close();
    // Without --expect, its reboot is a clean end of the run.
    const end = await bootTest(APPLIANCE_VMDK, { timeoutSeconds: 5 });
    expect(end.verdict).toBe("guest-reset");
    expect(end.passed).toBe(true);
  });

  it.skipIf(noQemu)("qemu boots the tiny appliance's VMDK to the same marker", async () => {
    const output = await qemuSerial(APPLIANCE_VMDK, {
      format: "vmdk",
      until: "TINY-APPLIANCE-OK tiny-appliance",
    });
    expect(output).toContain("TINY-APPLIANCE-OK tiny-appliance");
  });
});
