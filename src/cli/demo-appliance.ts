import { statSync } from "node:fs";
import { join } from "node:path";
import { checkDisk, compareDisks, convert, openDisk } from "../formats/index.js";
import { verifyPackage } from "../ovf/ova.js";
import { createOvf } from "../ovf/target-convert.js";
import { hasFailures, validateOvf } from "../ovf/validate.js";
import { bootTest } from "../runtime/boot.js";
import { packageRoot } from "../util/package-root.js";
import type { DemoContext, DemoStep } from "./demo.js";
import { createProgress } from "./progress.js";

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

/**
 * raw → streamOptimized VMDK, the format vSphere and the Content Library
 * import: compressed on all cores, with a progress bar when stderr is a
 * terminal, then checked against VMware's canonical layout.
 */
export const streamOptimizedStep: DemoStep = {
  title: "raw -> VMDK streamOptimized for vSphere (progress bar on a terminal), canonical layout check",
  async run(ctx) {
    const dest = join(ctx.dir, "demo-vsphere.vmdk");
    await attempt(ctx, "convert -O vmdk -o subformat=streamOptimized", async () => {
      const source = await openDisk(ctx.source, { format: "raw" });
      const progress = createProgress("streamOptimized");
      try {
        await convert(source, dest, {
          format: "vmdk",
          options: { subformat: "streamOptimized" },
          overwrite: true,
          progress: (done, total) => progress.update(done, total),
        });
      } finally {
        progress.stop();
        await source.close();
      }
      return `${dest} (${statSync(dest).size} bytes)`;
    });
    await attempt(ctx, "check: VMware canonical stream layout", async () => {
      const report = await checkDisk(dest, { format: "vmdk" });
      if (report.findings.length > 0)
        throw new Error(report.findings.map((f) => `${f.code}: ${f.message}`).join("; "));
      return "header v3, GD at end, markers, footer, end-of-stream";
    });
    await attempt(ctx, "compare with the source", async () => {
      const [a, b] = [await openDisk(ctx.source, { format: "raw" }), await openDisk(dest)];
      try {
        const result = await compareDisks(a, b);
        if (!result.identical) throw new Error(`content mismatch at offset ${result.firstDifference}`);
        return "identical";
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  },
};

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
