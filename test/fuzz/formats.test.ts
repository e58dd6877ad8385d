import { describe, expect, it } from "vitest";
import { corpusSkipReason } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import {
  type CampaignResult,
  describeFailures,
  dumpFailures,
  runDescriptorCampaign,
  runDiskCampaign,
  runPackageCampaign,
} from "./campaigns.js";
import { rssGrowthMiB } from "./harness.js";

/**
 * The CI fuzz suite: a few hundred deterministic cases per format on every
 * `npm test` (the budget of the whole suite is ~2 minutes on 2 cores); the
 * long run (test/long/fuzz-long.test.ts) does ≥ 5,000 per format, and
 * `npm run fuzz` as many as OVFKIT_FUZZ_CASES says.
 */
const CASES = Number(process.env.OVFKIT_FUZZ_CI_CASES ?? 300);
const SEED = Number(process.env.OVFKIT_FUZZ_SEED ?? 20261125);
/** Growth of the resident set allowed over one campaign (seeds in memory, V8 heap settling). */
const RSS_BOUND_MIB = 400;

function expectClean(label: string, result: CampaignResult, cases: number, baseline: number): void {
  dumpFailures(label, result);
  console.log(
    `[fuzz] ${result.cases} cases over ${result.seeds.length} seeds, ${result.failures.length} failures, rss +${rssGrowthMiB(baseline).toFixed(0)} MiB`,
  );
  console.log(`[fuzz] ${label} outcomes: ${result.outcomes.map(([k, n]) => `${k}=${n}`).join(" ")}`);
  expect(result.cases).toBe(cases);
  expect(result.failures.length, describeFailures(result)).toBe(0);
  expect(rssGrowthMiB(baseline)).toBeLessThan(RSS_BOUND_MIB);
}

describe.skipIf(corpusSkipReason !== "")(
  "fuzz (CI): mutated images and packages give only typed errors",
  () => {
    for (const format of ["vpc", "vhdx", "vmdk", "qcow2"] as const) {
      it(`${format}: ${CASES} structure-aware and byte-level mutations`, async () => {
        const baseline = process.memoryUsage().rss;
        const result = await runDiskCampaign(format, CASES, SEED, tempDir(`ovfkit-fuzz-${format}-`));
        expectClean(format, result, CASES, baseline);
      }, 300_000);
    }

    it(`OVF descriptors: ${CASES * 2} XML mutations through layers 1-4 and profiles`, async () => {
      const baseline = process.memoryUsage().rss;
      const result = await runDescriptorCampaign(CASES * 2, SEED);
      expectClean("ovf", result, CASES * 2, baseline);
    }, 300_000);

    it(`packages: ${CASES} mutated OVAs / OVF folders (tar headers, manifest, descriptor, disk) through verify and validate`, async () => {
      const baseline = process.memoryUsage().rss;
      const result = await runPackageCampaign(CASES, SEED, tempDir("ovfkit-fuzz-pkg-"));
      expectClean("package", result, CASES, baseline);
    }, 300_000);
  },
);
