import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, skipReason } from "../helpers/tools.js";
import { GROUPS, Rng } from "./differential/cases.js";
import { buildHostHarness, compare, describeCase, EmulatorRunner, runOnHost } from "./differential/run.js";

/**
 * Differential test against the host CPU: random instructions per opcode
 * group, run natively (x86-64 Linux host, 32-bit compatibility mode) and in
 * the emulator (32-bit protected mode), compared register by register with
 * the flags the SDM leaves undefined masked out. Deterministic seeds.
 */
const CASES_PER_GROUP = 3000;
const hostIsX86Linux = process.arch === "x64" && process.platform === "linux";
const missing = !hostIsX86Linux
  ? "host is not x86-64 Linux"
  : skipReason("nasm") || (hasTool("gcc") ? "" : skipReason("gcc"));
if (!hostIsX86Linux) console.warn("[skip] differential CPU test needs an x86-64 Linux host");

describe.skipIf(missing !== "")("CPU differential test against the host CPU", () => {
  const dir = missing ? "" : tempDir("ovfkit-diff-");
  const harness = missing ? [] : buildHostHarness(dir);
  const emulator = missing ? null : new EmulatorRunner();

  GROUPS.forEach((group, index) => {
    it(`${group.name}: ${CASES_PER_GROUP} random cases agree with the host`, () => {
      const rng = new Rng(0x5eed0000 + index);
      const cases = Array.from({ length: CASES_PER_GROUP }, () => group.generate(rng));
      const host = runOnHost(harness, cases);
      const failures: string[] = [];
      cases.forEach((c, i) => {
        const diffs = compare(c, host[i]!, emulator!.run(c));
        if (diffs.length > 0 && failures.length < 10)
          failures.push(`${describeCase(c)}: ${diffs.join(", ")}`);
      });
      expect(failures).toEqual([]);
    });
  });
});
