import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, skipReason } from "../helpers/tools.js";
import { GROUPS, Rng } from "../runtime/differential/cases.js";
import {
  buildHostHarness,
  compare,
  describeCase,
  EmulatorRunner,
  runOnHost,
} from "../runtime/differential/run.js";

/**
 * The long run of the CPU differential test (see test/runtime/cpu-differential.test.ts):
 * 50 000 random cases per opcode group with seeds different from the quick run.
 */
const CASES_PER_GROUP = 50_000;
const BATCH = 10_000;
const hostIsX86Linux = process.arch === "x64" && process.platform === "linux";
const missing = !hostIsX86Linux
  ? "host is not x86-64 Linux"
  : skipReason("nasm") || (hasTool("gcc") ? "" : skipReason("gcc"));
if (!hostIsX86Linux) console.warn("[skip] differential CPU test needs an x86-64 Linux host");

describe.skipIf(missing !== "")("CPU differential test against the host CPU (long)", () => {
  const dir = missing ? "" : tempDir("ovfkit-diff-long-");
  const harness = missing ? [] : buildHostHarness(dir);
  const emulator = missing ? null : new EmulatorRunner();

  GROUPS.forEach((group, index) => {
    it(`${group.name}: ${CASES_PER_GROUP} random cases agree with the host`, () => {
      const rng = new Rng(0x10ca1000 + index);
      const failures: string[] = [];
      for (let done = 0; done < CASES_PER_GROUP; done += BATCH) {
        const cases = Array.from({ length: BATCH }, () => group.generate(rng));
        const host = runOnHost(harness, cases);
        cases.forEach((c, i) => {
          const diffs = compare(c, host[i]!, emulator!.run(c));
          if (diffs.length > 0 && failures.length < 10)
            failures.push(`${describeCase(c)}: ${diffs.join(", ")}`);
        });
      }
      expect(failures).toEqual([]);
    });
  });
});
