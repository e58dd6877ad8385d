import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { driverFor } from "../src/formats/index.js";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  MIXED_MIB,
  measureTool,
  mixedImage,
} from "./harness.js";

/**
 * Disk conversion benchmarks: ovfkit against `qemu-img convert` on the same
 * input in the same run.
 *
 * Input: the 1 GiB deterministic mixed image of ../shared/tools/make-bench-image.py
 * (40% holes, 30% random, 30% text), generated once into .tmp/bench/.
 */

const SPARSE_GIB = 16;

/** 16 GiB of holes with a few bytes at each end: a huge, nearly empty disk. */
function sparseImage(ctx: BenchContext): string {
  const path = join(ctx.work, `sparse-${SPARSE_GIB}g.raw`);
  if (!existsSync(path)) {
    mkdirSync(ctx.work, { recursive: true });
    const fd = openSync(path, "w");
    writeSync(fd, Buffer.from("start of a sparse disk"), 0, 22, 0);
    writeSync(fd, Buffer.from("end of a sparse disk"), 0, 20, SPARSE_GIB * 1024 ** 3 - 20);
    closeSync(fd);
  }
  return path;
}

function vpcUnavailable(): string | undefined {
  return driverFor("vpc").write
    ? undefined
    : "the vpc (VHD) writer is not implemented yet (placeholder driver)";
}

/** `ovfkit compare` must say the output equals the input, else the timing is of a wrong result. */
function verify(ctx: BenchContext, a: string, b: string): string {
  const result = spawnSync(ctx.ovfkit[0]!, [...ctx.ovfkit.slice(1), "compare", a, b], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`output differs from input: ${result.stdout}${result.stderr}`);
  return `verified: ovfkit compare ${a.replace(`${ctx.work}/`, "")} ${b.replace(`${ctx.work}/`, "")} -> identical`;
}

function removing(...paths: string[]): () => void {
  return () => {
    for (const p of paths) rmSync(p, { force: true });
  };
}

/** ovfkit and (when installed) qemu-img convert the same input; ovfkit's output is verified. */
async function convertBoth(
  ctx: BenchContext,
  bench: { name: string; description: string },
  input: { path: string; qemuFormat: string },
  output: { format: string; qemuFormat: string; qemuOptions?: string[]; ext: string },
): Promise<CaseResult> {
  const ours = join(ctx.work, `${bench.name}.ovfkit.${output.ext}`);
  const theirs = join(ctx.work, `${bench.name}.qemu.${output.ext}`);
  const tools = [
    await measureTool(
      ctx,
      "ovfkit",
      [...ctx.ovfkit, "convert", "-O", output.format, input.path, ours],
      removing(ours),
    ),
  ];
  const notes = [verify(ctx, input.path, ours)];
  if (ctx.hasTool("qemu-img")) {
    const qemuArgs = [
      "convert",
      "-f",
      input.qemuFormat,
      "-O",
      output.qemuFormat,
      ...(output.qemuOptions ?? []),
    ];
    tools.push(
      await measureTool(ctx, "qemu-img", ["qemu-img", ...qemuArgs, input.path, theirs], removing(theirs)),
    );
  } else {
    notes.push("qemu-img not installed: no peer figures (apt-get install qemu-utils)");
  }
  rmSync(ours, { force: true });
  rmSync(theirs, { force: true });
  return { ...bench, tools, notes };
}

const rawToVhd: BenchCase = {
  name: "raw-to-vhd",
  description: `${MIXED_MIB} MiB mixed raw -> dynamic VHD`,
  skipReason: vpcUnavailable,
  run: (ctx) =>
    convertBoth(
      ctx,
      rawToVhd,
      { path: mixedImage(ctx), qemuFormat: "raw" },
      { format: "vpc", qemuFormat: "vpc", ext: "vhd" },
    ),
};

const vhdToRaw: BenchCase = {
  name: "vhd-to-raw",
  description: `${MIXED_MIB} MiB mixed dynamic VHD (written by ovfkit) -> raw`,
  skipReason: vpcUnavailable,
  async run(ctx) {
    const vhd = join(ctx.work, "mixed-input.vhd");
    if (!existsSync(vhd)) {
      const made = spawnSync(ctx.ovfkit[0]!, [
        ...ctx.ovfkit.slice(1),
        "convert",
        "-O",
        "vpc",
        mixedImage(ctx),
        vhd,
      ]);
      if (made.status !== 0) throw new Error(`could not make the VHD input: ${made.stderr}`);
    }
    return convertBoth(
      ctx,
      vhdToRaw,
      { path: vhd, qemuFormat: "vpc" },
      { format: "raw", qemuFormat: "raw", ext: "raw" },
    );
  },
};

const sparseToVhd: BenchCase = {
  name: "sparse-16g-to-vhd",
  description: `${SPARSE_GIB} GiB sparse raw (almost all holes) -> dynamic VHD: memory must stay flat`,
  skipReason: vpcUnavailable,
  run: (ctx) =>
    convertBoth(
      ctx,
      sparseToVhd,
      { path: sparseImage(ctx), qemuFormat: "raw" },
      { format: "vpc", qemuFormat: "vpc", ext: "vhd" },
    ),
};

/** raw -> raw needs no other driver: it measures the harness and the reading/writing core alone. */
const rawToRaw: BenchCase = {
  name: "raw-to-raw",
  description: `${MIXED_MIB} MiB mixed raw -> sparse raw`,
  run: (ctx) =>
    convertBoth(
      ctx,
      rawToRaw,
      { path: mixedImage(ctx), qemuFormat: "raw" },
      { format: "raw", qemuFormat: "raw", ext: "raw" },
    ),
};

export const diskSuite: BenchSuite = {
  name: "disk",
  cases: [rawToRaw, rawToVhd, vhdToRaw, sparseToVhd],
};
