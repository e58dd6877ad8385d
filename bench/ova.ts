import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  measureTool,
} from "./harness.js";

/**
 * OVA verification throughput: `ovfkit verify` (one streaming pass over
 * the tar, SHA256 of every member as it goes by, plus the manifest,
 * References and layout checks) against `sha256sum` over the same member
 * bytes (the package's files before packing), in the same run. A 2 GiB
 * OVA of two 1 GiB disks from ../shared/tools/make-bench-image.py (seeds
 * 1 and 2). Goal: ≥ 0.9× sha256sum's throughput with flat memory.
 */

const DISK_MIB = 1024;

function benchImage(ctx: BenchContext, seed: number): string {
  const path = join(ctx.work, `mixed-${DISK_MIB}m-seed${seed}.raw`);
  if (!existsSync(path)) {
    mkdirSync(ctx.work, { recursive: true });
    const script = join(ctx.root, "../shared/tools/make-bench-image.py");
    ctx.log(`generating ${path} with ${script} (once)`);
    const result = spawnSync("python3", [script, `${path}.partial`, String(DISK_MIB), String(seed)], {
      stdio: "inherit",
    });
    if (result.status !== 0) throw new Error(`make-bench-image.py failed (exit ${result.status})`);
    spawnSync("mv", [`${path}.partial`, path]);
  }
  return path;
}

/** An OVF folder with the two disks (hard links: no copy) and its OVA, made once. */
function benchPackage(ctx: BenchContext): { ova: string; files: string[] } {
  const folder = join(ctx.work, "ova-bench");
  const ova = join(ctx.work, "bench-2g.ova");
  const disks = [benchImage(ctx, 1), benchImage(ctx, 2)];
  const names = ["disk1.raw", "disk2.raw"];
  const descriptor = join(folder, "bench.ovf");
  if (!existsSync(ova)) {
    mkdirSync(folder, { recursive: true });
    names.forEach((name, i) => {
      if (!existsSync(join(folder, name))) spawnSync("ln", [disks[i]!, join(folder, name)]);
    });
    const files = names
      .map(
        (name, i) =>
          `    <File ovf:href="${name}" ovf:id="file${i + 1}" ovf:size="${statSync(disks[i]!).size}"/>`,
      )
      .join("\n");
    writeFileSync(
      descriptor,
      `<?xml version="1.0" encoding="UTF-8"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">\n  <References>\n${files}\n  </References>\n  <VirtualSystem ovf:id="bench">\n    <Info>benchmark</Info>\n  </VirtualSystem>\n</Envelope>\n`,
    );
    const packed = spawnSync(ctx.ovfkit[0]!, [...ctx.ovfkit.slice(1), "pack", descriptor, "-o", ova], {
      encoding: "utf8",
    });
    if (packed.status !== 0) throw new Error(`ovfkit pack failed: ${packed.stderr}`);
  }
  return { ova, files: [descriptor, ...names.map((n) => join(folder, n))] };
}

const MiBps = (bytes: number, seconds: number) => `${(bytes / 2 ** 20 / seconds).toFixed(0)} MiB/s`;

const verify2g: BenchCase = {
  name: "ova-verify-2g",
  description: "verify a 2 GiB OVA (SHA256 manifest) vs sha256sum over the same member bytes",
  skipReason: (ctx) => (ctx.hasTool("sha256sum") ? undefined : "sha256sum not installed (coreutils)"),
  async run(ctx): Promise<CaseResult> {
    const { ova, files } = benchPackage(ctx);
    const bytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
    const tools = [
      await measureTool(ctx, "ovfkit", [...ctx.ovfkit, "verify", ova]),
      await measureTool(ctx, "sha256sum", ["sha256sum", ...files]),
    ];
    const [ours, theirs] = tools as [(typeof tools)[0], (typeof tools)[0]];
    const ratio = theirs.wallSeconds / ours.wallSeconds;
    return {
      name: verify2g.name,
      description: verify2g.description,
      tools,
      notes: [
        `${(bytes / 2 ** 30).toFixed(2)} GiB hashed: ovfkit ${MiBps(bytes, ours.wallSeconds)}, sha256sum ${MiBps(bytes, theirs.wallSeconds)}`,
        `throughput ratio ovfkit/sha256sum: ${ratio.toFixed(2)}× (goal ≥ 0.90×)`,
        `peak memory: ovfkit ${(ours.peakRssKiB / 1024).toFixed(0)} MiB for ${(statSync(ova).size / 2 ** 30).toFixed(2)} GiB (flat: two 4 MiB read buffers)`,
      ],
    };
  },
};

export const ovaSuite: BenchSuite = { name: "ova", cases: [verify2g] };
