import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import type { Argv, CommandModule } from "yargs";
import { isOvfkitError } from "../errors.js";
import {
  checkDisk,
  compareDisks,
  convert,
  type DiskFormat,
  DRIVERS,
  type FormatDriver,
  openDisk,
} from "../formats/index.js";
import { formatSize } from "../util/size.js";
import { runCommand } from "./common.js";
import { applianceStep, streamOptimizedStep } from "./demo-appliance.js";

/**
 * `ovfkit demo`: the toolkit's main job end to end on a small disk it makes
 * itself, so a fresh clone can prove it works with one command.
 *
 * The demo is a list of steps run in order. To extend it (OVA packaging,
 * validation, booting...), write a module exporting a `DemoStep` and add
 * one import and one entry to `DEMO_STEPS` below.
 */

export type StepStatus = "ok" | "skip" | "fail";

export interface DemoContext {
  /** The folder every demo file goes in. */
  readonly dir: string;
  /** The raw source disk the first step makes. */
  readonly source: string;
  /** Every image the demo produced, by format (the raw → FORMAT conversions). */
  readonly images: Map<DiskFormat, string>;
  /** Prints one result line and counts it for the summary. */
  record(status: StepStatus, what: string, detail?: string): void;
}

export interface DemoStep {
  /** Shown in the heading printed before the step runs. */
  readonly title: string;
  run(ctx: DemoContext): Promise<void>;
}

/** 4 MiB: text, random bytes, a run of zeros and a mix, so every kind of run is exercised. */
const DEMO_DISK_MIB = 4;
const MIB = 1024 * 1024;

const EXTENSIONS: Record<DiskFormat, string> = {
  raw: "raw",
  vpc: "vhd",
  vmdk: "vmdk",
  vhdx: "vhdx",
  qcow2: "qcow2",
};

function demoText(bytes: number): Buffer {
  const line = "ovfkit demo: a virtual appliance disk with some text, some noise and some zeros.\n";
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
}

/** Pseudo-random but deterministic bytes (xorshift32), so demo runs are reproducible. */
function demoNoise(bytes: number, seed = 0x2545f491): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let x = seed;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** MiB 0: text; MiB 1: noise; MiB 2: zeros (a hole); MiB 3: half text, half noise. */
async function writeDemoDisk(path: string): Promise<void> {
  const disk = Buffer.alloc(DEMO_DISK_MIB * MIB);
  demoText(MIB).copy(disk, 0);
  demoNoise(MIB).copy(disk, MIB);
  demoText(MIB / 2).copy(disk, 3 * MIB);
  demoNoise(MIB / 2, 7).copy(disk, 3 * MIB + MIB / 2);
  await writeFile(path, disk);
}

const makeSourceStep: DemoStep = {
  title: "make a source disk",
  async run(ctx) {
    await writeDemoDisk(ctx.source);
    ctx.images.set("raw", ctx.source);
    ctx.record("ok", "create", `${basename(ctx.source)} (${DEMO_DISK_MIB} MiB: text, random, zeros, mixed)`);
  },
};

/** Converts, checks and compares one image; each of the three is one result line. */
async function convertCheckCompare(
  ctx: DemoContext,
  from: string,
  to: FormatDriver,
  dest: string,
  label: string,
): Promise<boolean> {
  const source = await openDisk(from);
  try {
    await convert(source, dest, { format: to.name, overwrite: true });
  } finally {
    await source.close();
  }
  const name = basename(dest);
  ctx.record("ok", `convert ${label}`, `${name} (${formatSize(statSync(dest).blocks * 512)} on disk)`);

  if (to.check) {
    const report = await checkDisk(dest, { format: to.name });
    const bad = report.findings.filter((f) => f.severity !== "warning");
    if (bad.length > 0) {
      ctx.record("fail", `check ${name}`, bad.map((f) => `${f.code}: ${f.message}`).join("; "));
      return false;
    }
    ctx.record("ok", `check ${name}`, "no errors");
  } else {
    ctx.record("skip", `check ${name}`, `${to.name} has no structural check`);
  }

  const a = await openDisk(ctx.source, { format: "raw" });
  const b = await openDisk(dest, { format: to.name }).catch(async (error: unknown) => {
    await a.close();
    throw error;
  });
  try {
    const result = await compareDisks(a, b);
    if (!result.identical) {
      ctx.record("fail", `compare ${name}`, `content mismatch at offset ${result.firstDifference}`);
      return false;
    }
    ctx.record("ok", `compare ${name}`, `identical to ${basename(ctx.source)}`);
    return true;
  } finally {
    await a.close();
    await b.close();
  }
}

async function attempt(ctx: DemoContext, what: string, work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const message = isOvfkitError(error)
      ? `${error.code}: ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
    ctx.record("fail", what, message);
  }
}

function writableDrivers(ctx: DemoContext): FormatDriver[] {
  const writable: FormatDriver[] = [];
  for (const driver of DRIVERS) {
    if (driver.write) writable.push(driver);
    else ctx.record("skip", `format ${driver.name}`, "no writer yet (placeholder driver)");
  }
  return writable;
}

/** raw → every writable format, then every format → every other, each checked and compared. */
const convertBetweenFormatsStep: DemoStep = {
  title: "convert between every writable format, check and compare each",
  async run(ctx) {
    const writable = writableDrivers(ctx);
    for (const driver of writable) {
      if (driver.name === "raw") continue;
      const dest = join(ctx.dir, `demo.${EXTENSIONS[driver.name]}`);
      await attempt(ctx, `convert raw -> ${driver.name}`, async () => {
        if (await convertCheckCompare(ctx, ctx.source, driver, dest, `raw -> ${driver.name}`)) {
          ctx.images.set(driver.name, dest);
        }
      });
    }
    for (const [fromFormat, fromPath] of ctx.images) {
      if (fromFormat === "raw") continue;
      for (const driver of writable) {
        if (driver.name === fromFormat) continue;
        const dest = join(ctx.dir, `demo-${fromFormat}-to-${driver.name}.${EXTENSIONS[driver.name]}`);
        const label = `${fromFormat} -> ${driver.name}`;
        await attempt(ctx, `convert ${label}`, () => convertCheckCompare(ctx, fromPath, driver, dest, label));
      }
    }
  },
};

/** The demo, in order. Append steps here (one import + one entry). */
export const DEMO_STEPS: DemoStep[] = [
  makeSourceStep,
  convertBetweenFormatsStep,
  streamOptimizedStep,
  applianceStep,
];

export interface DemoSummary {
  ok: number;
  skipped: number;
  failed: number;
}

/** Runs `steps` in `dir`, printing one line per result; a step that throws counts as failed. */
export async function runDemo(
  dir: string,
  steps: readonly DemoStep[] = DEMO_STEPS,
  print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Promise<DemoSummary> {
  const summary: DemoSummary = { ok: 0, skipped: 0, failed: 0 };
  const ctx: DemoContext = {
    dir,
    source: join(dir, "demo.raw"),
    images: new Map(),
    record(status, what, detail) {
      if (status === "ok") summary.ok++;
      else if (status === "skip") summary.skipped++;
      else summary.failed++;
      print(`${status.toUpperCase().padEnd(5)} ${what}${detail ? `: ${detail}` : ""}`);
    },
  };
  print(`ovfkit demo in ${dir}`);
  for (const [index, step] of steps.entries()) {
    print(`== ${index + 1}/${steps.length} ${step.title}`);
    await attempt(ctx, step.title, () => step.run(ctx));
  }
  print(`demo: ${summary.ok} ok, ${summary.failed} failed, ${summary.skipped} skipped`);
  return summary;
}

interface DemoArgs {
  dir?: string;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: "demo",
  describe:
    "convert a small disk between every format, then package, validate, verify and boot a tiny appliance",
  builder: (yargs: Argv) =>
    yargs
      .options({
        dir: {
          type: "string",
          describe: "work in DIR and keep the files (default: a temporary folder, removed afterwards)",
        },
      })
      .example("$0 demo", "run the demo in a temporary folder")
      .example("$0 demo --dir /tmp/ovfkit-demo", "keep the demo's images to look at")
      .epilogue("Exit status: 0 when every step succeeded, 1 otherwise.") as Argv<DemoArgs>,
  handler: (args) =>
    runCommand(async () => {
      const dir = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), "ovfkit-demo-"));
      if (args.dir) mkdirSync(dir, { recursive: true });
      try {
        const summary = await runDemo(dir);
        if (args.dir) process.stdout.write(`files kept in ${dir}\n`);
        return summary.failed === 0 ? 0 : 1;
      } finally {
        if (!args.dir) rmSync(dir, { recursive: true, force: true });
      }
    }),
};
