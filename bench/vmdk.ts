import { spawnSync } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  MIXED_MIB,
  measureTool,
  mixedImage,
  type ToolResult,
} from "./harness.js";

/**
 * VMDK benchmarks, ovfkit against qemu-img in the same run, on the 1 GiB
 * mixed image of ../shared/tools/make-bench-image.py (40% holes, 30%
 * random, 30% text; the same file bench/disk.ts uses):
 * - raw -> streamOptimized (deflate on all cores vs qemu-img's one thread),
 *   with both output sizes and the canonical-layout verdict of each;
 * - streamOptimized -> raw (inflate speed), both reading qemu-img's stream.
 */

function ovfkit(ctx: BenchContext, args: string[]): { status: number; out: string } {
  const r = spawnSync(ctx.ovfkit[0]!, [...ctx.ovfkit.slice(1), ...args], { encoding: "utf8" });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function verifyIdentical(ctx: BenchContext, a: string, b: string): string {
  const r = ovfkit(ctx, ["compare", a, b]);
  if (r.status !== 0) throw new Error(`output differs from input: ${r.out}`);
  return `verified: ovfkit compare says ${a.replace(`${ctx.work}/`, "")} and ${b.replace(`${ctx.work}/`, "")} are identical`;
}

/** "canonical" or the reasons `ovfkit check` gives. */
function canonicalVerdict(ctx: BenchContext, path: string): string {
  const r = ovfkit(ctx, ["check", path]);
  const reasons = [...r.out.matchAll(/VMDK_STREAM_NONCANONICAL: ([^(\n]+)/g)].map((m) => m[1]!.trim());
  return reasons.length === 0 ? "canonical (VMware layout)" : `NOT canonical: ${reasons.join("; ")}`;
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

const STREAM_OPTIONS = "subformat=streamOptimized";

const rawToStream: BenchCase = {
  name: "raw-to-vmdk-stream",
  description: `${MIXED_MIB} MiB mixed raw -> VMDK streamOptimized (ovfkit: default level, all cores)`,
  skipReason: (ctx) =>
    ctx.hasTool("qemu-img") ? undefined : "qemu-img not installed (apt-get install qemu-utils)",
  async run(ctx): Promise<CaseResult> {
    const input = mixedImage(ctx);
    const ours = join(ctx.work, "stream.ovfkit.vmdk");
    const theirs = join(ctx.work, "stream.qemu.vmdk");
    const remove = (p: string) => () => rmSync(p, { force: true });
    const tools: ToolResult[] = [
      await measureTool(
        ctx,
        "ovfkit",
        [...ctx.ovfkit, "convert", "-O", "vmdk", "-o", STREAM_OPTIONS, input, ours],
        remove(ours),
      ),
      await measureTool(
        ctx,
        "qemu-img",
        ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", STREAM_OPTIONS, input, theirs],
        remove(theirs),
      ),
    ];
    const ourSize = statSync(ours).size;
    const theirSize = statSync(theirs).size;
    const notes = [
      verifyIdentical(ctx, input, ours),
      `output size: ovfkit ${MiB(ourSize)}, qemu-img ${MiB(theirSize)} (ovfkit ${((ourSize / theirSize - 1) * 100).toFixed(1)}% larger)`,
      `layout: ovfkit ${canonicalVerdict(ctx, ours)}; qemu-img ${canonicalVerdict(ctx, theirs)}`,
    ];
    rmSync(ours, { force: true });
    // qemu-img's stream stays: the read case uses it as its input
    return { name: rawToStream.name, description: rawToStream.description, tools, notes };
  },
};

const streamToRaw: BenchCase = {
  name: "vmdk-stream-to-raw",
  description: `${MIXED_MIB} MiB mixed VMDK streamOptimized (written by qemu-img) -> raw: inflate speed`,
  skipReason: (ctx) =>
    ctx.hasTool("qemu-img") ? undefined : "qemu-img not installed (apt-get install qemu-utils)",
  async run(ctx): Promise<CaseResult> {
    const stream = join(ctx.work, "stream.qemu.vmdk");
    if (!existsSync(stream)) {
      const made = spawnSync("qemu-img", [
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        STREAM_OPTIONS,
        mixedImage(ctx),
        stream,
      ]);
      if (made.status !== 0) throw new Error(`could not make the stream input: ${made.stderr}`);
    }
    const ours = join(ctx.work, "unstream.ovfkit.raw");
    const theirs = join(ctx.work, "unstream.qemu.raw");
    const remove = (p: string) => () => rmSync(p, { force: true });
    const tools: ToolResult[] = [
      await measureTool(ctx, "ovfkit", [...ctx.ovfkit, "convert", "-O", "raw", stream, ours], remove(ours)),
      await measureTool(
        ctx,
        "qemu-img",
        ["qemu-img", "convert", "-f", "vmdk", "-O", "raw", stream, theirs],
        remove(theirs),
      ),
    ];
    const notes = [verifyIdentical(ctx, mixedImage(ctx), ours)];
    rmSync(ours, { force: true });
    rmSync(theirs, { force: true });
    return { name: streamToRaw.name, description: streamToRaw.description, tools, notes };
  },
};

export const vmdkSuite: BenchSuite = {
  name: "vmdk",
  cases: [rawToStream, streamToRaw],
};
