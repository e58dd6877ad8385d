import { describe, expect, it } from "vitest";
import {
  type CampaignResult,
  describeFailures,
  dumpFailures,
  runDescriptorCampaign,
  runDiskCampaign,
  runPackageCampaign,
} from "../fuzz/campaigns.js";
import { exerciseCli, exercisePackageCli, rssGrowthMiB } from "../fuzz/harness.js";
import { corpusSkipReason } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * The long fuzz run: OVFKIT_FUZZ_CASES cases per format (default 5,000,
 * what `npm run test:long` does in CI; `OVFKIT_FUZZ_CASES=100000 npm run
 * fuzz` for the big run). OVFKIT_FUZZ_SEED picks another deterministic
 * sequence; OVFKIT_FUZZ_DUMP=FILE writes every failure as a JSON line.
 */
const CASES = Number(process.env.OVFKIT_FUZZ_CASES ?? 5000);
const SEED = Number(process.env.OVFKIT_FUZZ_SEED ?? 1);
const RSS_BOUND_MIB = 600;
/** CLI cases cost a subprocess each (~0.3 s): fewer of them. */
const CLI_CASES = Number(process.env.OVFKIT_FUZZ_CLI_CASES ?? Math.min(CASES, 100));

function report(label: string, result: CampaignResult, baseline: number): void {
  dumpFailures(label, result);
  const growth = rssGrowthMiB(baseline);
  console.log(
    `[fuzz-long] ${label}: ${result.cases} cases, ${result.failures.length} failures, rss +${growth.toFixed(0)} MiB`,
  );
  console.log(`[fuzz-long] ${label} outcomes: ${result.outcomes.map(([k, n]) => `${k}=${n}`).join(" ")}`);
  expect(result.failures.length, describeFailures(result)).toBe(0);
  expect(growth).toBeLessThan(RSS_BOUND_MIB);
}

describe.skipIf(corpusSkipReason !== "")(`fuzz (long): ${CASES} cases per format`, () => {
  for (const format of ["vpc", "vhdx", "vmdk", "qcow2"] as const) {
    it(format, async () => {
      const baseline = process.memoryUsage().rss;
      report(
        format,
        await runDiskCampaign(format, CASES, SEED, tempDir(`ovfkit-fuzzl-${format}-`)),
        baseline,
      );
    });
  }
  for (const format of ["vpc", "vhdx", "vmdk", "qcow2"] as const) {
    it(`${format} through the real CLI (info, map, check --output json): ${CLI_CASES} cases`, async () => {
      const baseline = process.memoryUsage().rss;
      const root = tempDir(`ovfkit-fuzzcli-${format}-`);
      report(
        `cli-${format}`,
        await runDiskCampaign(format, CLI_CASES, SEED + 1, root, exerciseCli),
        baseline,
      );
    });
  }
  it(`packages through the real CLI (verify, validate --output json/sarif): ${CLI_CASES} cases`, async () => {
    const baseline = process.memoryUsage().rss;
    const root = tempDir("ovfkit-fuzzcli-pkg-");
    report("cli-package", await runPackageCampaign(CLI_CASES, SEED + 1, root, exercisePackageCli), baseline);
  });
  it("OVF descriptors", async () => {
    const baseline = process.memoryUsage().rss;
    report("ovf", await runDescriptorCampaign(CASES, SEED), baseline);
  });
  it("packages (OVA/tar/manifest)", async () => {
    const baseline = process.memoryUsage().rss;
    report("package", await runPackageCampaign(CASES, SEED, tempDir("ovfkit-fuzzl-pkg-")), baseline);
  });
});
