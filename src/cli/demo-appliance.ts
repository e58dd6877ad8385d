import { join } from "node:path";
import { verifyPackage } from "../ovf/ova.js";
import { createOvf } from "../ovf/target-convert.js";
import { hasFailures, validateOvf } from "../ovf/validate.js";
import { bootTest } from "../runtime/boot.js";
import { packageRoot } from "../util/package-root.js";
import type { DemoContext, DemoStep } from "./demo.js";

/**
 * The appliance half of the demo: the bundled tiny appliance (a boot sector
 * and a protected-mode payload, fixtures/runtime/appliance.asm) becomes an
 * OVA, is validated for vSphere, verified, and booted in the embedded PC
 * until its console prints the marker.
 */
export const TINY_APPLIANCE_MARKER = "TINY-APPLIANCE-OK";

async function attempt(
  ctx: DemoContext,
  what: string,
  work: () => Promise<string | undefined>,
): Promise<boolean> {
  try {
    ctx.record("ok", what, await work());
    return true;
  } catch (error) {
    ctx.record("fail", what, error instanceof Error ? error.message : String(error));
    return false;
  }
}

export const applianceStep: DemoStep = {
  title: "package the bundled tiny appliance as an OVA, validate, verify and boot it",
  async run(ctx) {
    const disk = join(packageRoot(), "fixtures/runtime/appliance.vmdk");
    const ova = join(ctx.dir, "tiny-appliance.ova");
    const made = await attempt(ctx, "create-ovf + pack", async () => {
      await createOvf([disk], ova, { name: "tiny-appliance", cpus: 1, memoryMiB: 32, overwrite: true });
      return ova;
    });
    if (!made) return;
    await attempt(ctx, "validate --profile vsphere", async () => {
      const report = await validateOvf(ova, { profiles: ["vsphere"] });
      const file = report.files[0]!;
      if (hasFailures(file)) {
        const first = file.findings.find((f) => f.severity === "error")!;
        throw new Error(`${first.ruleId}: ${first.message}`);
      }
      return `${report.counts.error} errors, ${report.counts.warning} warnings`;
    });
    await attempt(ctx, "verify (manifest, sizes, tar layout)", async () => {
      const report = await verifyPackage(ova);
      if (!report.ok) throw new Error(report.findings.map((f) => `${f.code}: ${f.message}`).join("; "));
      return `${report.members.length} members, ${report.bytesHashed} bytes hashed`;
    });
    await attempt(ctx, `boot until "${TINY_APPLIANCE_MARKER}"`, async () => {
      const result = await bootTest(ova, { expect: TINY_APPLIANCE_MARKER, timeoutSeconds: 30 });
      if (!result.passed) throw new Error(`${result.verdict}: ${result.detail}`);
      return `${result.verdict} after ${result.instructions} instructions (${result.wallSeconds.toFixed(2)} s)`;
    });
  },
};
