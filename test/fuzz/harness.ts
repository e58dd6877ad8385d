import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { OvfkitError } from "../../src/errors.js";
import {
  allocatedBytes,
  checkDisk,
  convert,
  detectFormat,
  type Extent,
  openDisk,
} from "../../src/formats/index.js";
import { verifyPackage } from "../../src/ovf/ova.js";
import { unpackOva } from "../../src/ovf/pack.js";
import { validateDescriptor, validateOvf } from "../../src/ovf/validate.js";
import { formatSize } from "../../src/util/size.js";
import { BIN } from "../helpers/cli.js";
import {
  CORPUS_DISKS,
  type ExpectedImage,
  expectedImages,
  MATERIALISED,
  materialise,
} from "../helpers/corpus.js";
import {
  DirtySet,
  type Layout,
  type MutationTarget,
  mutateBinary,
  mutateDescriptor,
  mutateManifest,
  mutateTarMember,
  mutateXml,
  qcow2Layout,
  Rng,
  tarLayout,
  vhdLayout,
  vhdxLayout,
  vmdkLayout,
} from "./mutators.js";

/**
 * The fuzz harness: runs mutated inputs through every reader path in this
 * process, each step under a watchdog, and classifies what comes out.
 *
 * Pass = the step succeeds or throws an OvfkitError whose code is
 * documented (README.md or docs/*.md). Anything else — another exception
 * type, an undocumented code, a step that outlives its time budget — is a
 * failure, saved as a regression file under fixtures/regressions/ so
 * test/fuzz/regressions.test.ts replays it forever after.
 */

export const ROOT = resolve(import.meta.dirname, "../..");
export const REGRESSIONS = join(ROOT, "fixtures/regressions");

/** Per-step time budget. Generous: CI machines are loaded; a real hang blows through any budget. */
export const STEP_BUDGET_MS = Number(process.env.OVFKIT_FUZZ_STEP_MS ?? 20_000);
/** Converting to raw only for images up to this virtual size (bigger ones are legitimately slow). */
const CONVERT_MAX_VIRTUAL = 64 * 1024 * 1024;
const CONVERT_PROBABILITY = 0.1;
/** Map extents consumed per case (a fuzzed 8 EiB image legitimately has billions). */
const MAP_MAX_EXTENTS = 4096;
const READS_PER_CASE = 6;
const READ_MAX = 64 * 1024;

// ---------------------------------------------------------------------------
// documented error codes

let documented: Set<string> | undefined;

/** Every `UPPER_SNAKE` code named in README.md and docs/*.md. */
export function documentedCodes(): Set<string> {
  if (documented) return documented;
  const texts = [readFileSync(join(ROOT, "README.md"), "utf8")];
  for (const name of readdirSync(join(ROOT, "docs"))) {
    if (name.endsWith(".md")) texts.push(readFileSync(join(ROOT, "docs", name), "utf8"));
  }
  documented = new Set<string>();
  for (const text of texts)
    for (const m of text.matchAll(/`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})`/g)) documented.add(m[1]!);
  return documented;
}

// ---------------------------------------------------------------------------
// outcome of a step

export interface Failure {
  step: string;
  kind: "exception" | "undocumented-code" | "timeout";
  detail: string;
}

class StepTimeout extends Error {}

/** Races `work` against a timer; a step still running at the deadline counts as a hang. */
export async function withWatchdog<T>(work: () => Promise<T>, ms = STEP_BUDGET_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StepTimeout(`no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How each step ended, over a campaign: `step:ok` or `step:CODE`. Shows
 * how deep the mutations reach (a fuzzer whose cases all die at the
 * checksum gate tests nothing behind it).
 */
const outcomes = new Map<string, number>();

export function countOutcome(key: string): void {
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

/** The outcome counts since the last call, most frequent first; resets them. */
export function takeOutcomes(): [string, number][] {
  const sorted = [...outcomes].sort((a, b) => b[1] - a[1]);
  outcomes.clear();
  return sorted;
}

/** Runs one step; returns undefined on success or a typed, documented refusal, else a Failure. */
export async function guard(step: string, work: () => Promise<unknown>): Promise<Failure | undefined> {
  try {
    await withWatchdog(work);
    countOutcome(`${step}:ok`);
    return undefined;
  } catch (error) {
    countOutcome(`${step}:${error instanceof OvfkitError ? error.code : "FAILURE"}`);
    return classify(step, error);
  }
}

/**
 * `asOvfkitError` turns any error into IO_ERROR (so the CLI never prints a
 * stack): a TypeError thrown by a parser would pass as "typed". An IO_ERROR
 * whose cause is not an operating-system error is such a bug in disguise.
 */
function maskedBug(error: OvfkitError): Error | undefined {
  if (error.code !== "IO_ERROR" || !(error.cause instanceof Error)) return undefined;
  const cause = error.cause as NodeJS.ErrnoException;
  const systemError = typeof cause.syscall === "string" || typeof cause.errno === "number";
  return cause instanceof OvfkitError || systemError ? undefined : cause;
}

export function classify(step: string, error: unknown): Failure | undefined {
  if (error instanceof StepTimeout) return { step, kind: "timeout", detail: error.message };
  if (error instanceof OvfkitError) {
    const masked = maskedBug(error);
    if (masked)
      return {
        step,
        kind: "exception",
        detail: `masked as ${error.code}: ${masked.stack ?? masked.message}`,
      };
    if (documentedCodes().has(error.code)) return undefined;
    return { step, kind: "undocumented-code", detail: `${error.code}: ${error.message}` };
  }
  const stack = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  return { step, kind: "exception", detail: stack };
}

// ---------------------------------------------------------------------------
// reader paths

/**
 * Every disk reader path on one file: detect, open, map, random reads,
 * convert to raw (small images), check. Each step is independent: a
 * refusal by `open` does not stop `check`.
 */
export async function exerciseDisk(path: string, rng: Rng, workDir: string): Promise<Failure[]> {
  const failures: Failure[] = [];
  const note = (f: Failure | undefined) => {
    if (f) failures.push(f);
  };
  note(await guard("detectFormat", () => detectFormat(path)));
  note(
    await guard("openDisk", async () => {
      const reader = await openDisk(path);
      countOutcome("opened");
      try {
        const size = reader.virtualSize;
        let extents = 0;
        const iterator = reader.map()[Symbol.asyncIterator]();
        let last: Extent | undefined;
        while (extents < MAP_MAX_EXTENTS) {
          const next = await iterator.next();
          if (next.done) break;
          last = next.value;
          extents++;
        }
        await iterator.return?.();
        const ranges: [number, number][] = [];
        if (size > 0) ranges.push([0, Math.min(size, 512)], [Math.max(0, size - 4096), Math.min(size, 4096)]);
        if (last && last.length > 0) ranges.push([last.offset, Math.min(last.length, READ_MAX)]);
        for (let i = 0; i < READS_PER_CASE; i++) {
          const offset = Math.floor(rng.next() * size);
          ranges.push([offset, Math.min(size - offset, 1 + rng.int(READ_MAX))]);
        }
        for (const [offset, length] of ranges) await reader.read(offset, length);
        if (size <= CONVERT_MAX_VIRTUAL && rng.bool(CONVERT_PROBABILITY)) {
          // mostly raw; sometimes every writer, fed by a reader of a damaged image
          const format = rng.pick(["raw", "raw", "raw", "qcow2", "vpc", "vmdk", "vhdx"]);
          await convert(reader, join(workDir, `converted.${format}`), {
            format,
            overwrite: true,
            threads: 1,
          });
          countOutcome("converted");
        }
      } finally {
        await reader.close();
      }
    }),
  );
  // what `ovfkit info` does: allocated bytes (a whole-map walk) and the JSON of every field
  note(
    await guard("info", async () => {
      const reader = await openDisk(path);
      try {
        const allocated = await allocatedBytes(reader);
        JSON.stringify({
          size: formatSize(reader.virtualSize),
          allocated: formatSize(allocated),
          specific: reader.formatSpecific,
          creator: reader.creator,
          geometry: reader.geometry,
          backing: reader.backingFile,
          files: reader.files,
          dirty: reader.dirty,
        });
      } finally {
        await reader.close();
      }
    }),
  );
  note(
    await guard("checkDisk", async () => {
      const report = await checkDisk(path);
      countOutcome(report.findings.length > 0 ? "check:findings" : "check:clean");
    }),
  );
  for (const name of readdirSync(workDir))
    if (name.includes("converted.")) rmSync(join(workDir, name), { force: true });
  return failures;
}

export type DiskExercise = (path: string, rng: Rng, workDir: string) => Promise<Failure[]>;

/** Exit statuses each CLI command documents (check: 0 clean, 1 could not check, 2 corrupt, 3 leaks). */
const CLI_EXITS: Record<string, number[]> = { info: [0, 1], map: [0, 1], check: [0, 1, 2, 3] };

/**
 * The real CLI (bin/ovfkit, a subprocess) on one file: `info`, `map` and
 * `check` with JSON output. A failure is an "internal error" (the CLI's
 * wording for a non-OvfkitError), an undocumented exit status, unparsable
 * JSON, or a run over the step budget.
 */
export async function exerciseCli(path: string): Promise<Failure[]> {
  const failures: Failure[] = [];
  for (const command of ["info", "map", "check"]) {
    const result = spawnSync(process.execPath, [BIN, command, "--output", "json", path], {
      encoding: "utf8",
      timeout: STEP_BUDGET_MS,
      maxBuffer: 256 * 1024 * 1024,
    });
    const step = `cli ${command}`;
    countOutcome(`${step}:${result.status}`);
    if (result.error || result.status === null) {
      failures.push({ step, kind: "timeout", detail: String(result.error ?? result.signal) });
    } else if (/internal error/.test(result.stderr) || !CLI_EXITS[command]!.includes(result.status)) {
      failures.push({
        step,
        kind: "exception",
        detail: `exit ${result.status}: ${result.stderr.slice(0, 2000)}`,
      });
    } else {
      try {
        JSON.parse(result.stdout);
      } catch {
        failures.push({
          step,
          kind: "exception",
          detail: `exit ${result.status}, stdout is not JSON: ${result.stdout.slice(0, 200)}`,
        });
      }
    }
  }
  return failures;
}

/** Exit statuses of verify (0 ok, 1 problems, 2 could not run) and validate (0, 1 errors, 2 could not run). */
const PACKAGE_CLI_EXITS = [0, 1, 2];

/** `ovfkit verify` and `ovfkit validate` with JSON (and SARIF) output on one package, in a subprocess. */
export async function exercisePackageCli(path: string): Promise<Failure[]> {
  const failures: Failure[] = [];
  for (const args of [
    ["verify", "--output", "json"],
    ["validate", "--output", "json"],
    ["validate", "--output", "sarif"],
  ]) {
    const step = `cli ${args.join(" ")}`;
    const result = spawnSync(process.execPath, [BIN, ...args, path], {
      encoding: "utf8",
      timeout: STEP_BUDGET_MS,
      maxBuffer: 256 * 1024 * 1024,
    });
    countOutcome(`${step}:${result.status}`);
    if (result.error || result.status === null) {
      failures.push({ step, kind: "timeout", detail: String(result.error ?? result.signal) });
    } else if (/internal error/.test(result.stderr) || !PACKAGE_CLI_EXITS.includes(result.status)) {
      failures.push({
        step,
        kind: "exception",
        detail: `exit ${result.status}: ${result.stderr.slice(0, 2000)}`,
      });
    } else {
      try {
        JSON.parse(result.stdout);
      } catch {
        failures.push({
          step,
          kind: "exception",
          detail: `exit ${result.status}, stdout is not JSON: ${result.stdout.slice(0, 300)}`,
        });
      }
    }
  }
  return failures;
}

/** The OVF paths on one descriptor text: layers 1-4, sometimes with a target profile. */
export async function exerciseDescriptor(text: string, rng: Rng, file: string): Promise<Failure[]> {
  const profiles = rng.bool(0.3) ? [rng.pick(["vsphere", "virtualbox", "aws", "azure", "ovirt"])] : [];
  const f = await guard("validateDescriptor", () =>
    validateDescriptor(Buffer.from(text, "utf8"), { file, profiles }),
  );
  return f ? [f] : [];
}

/** The package paths on one .ova / .ovf: verify (manifest, certificate, tar layout) and validate. */
export async function exercisePackage(path: string): Promise<Failure[]> {
  const failures: Failure[] = [];
  for (const [step, work] of [
    [
      "verifyPackage",
      async () => {
        const report = await verifyPackage(path);
        // verify turns exceptions into findings; an IO_ERROR finding on a local, readable file is one in disguise
        const masked = report.findings.find((f) => f.code === "IO_ERROR");
        if (masked) throw new Error(`verify reported IO_ERROR: ${masked.message}`);
      },
    ],
    ["validateOvf", () => validateOvf(path)],
  ] as const) {
    const f = await guard(step, work);
    if (f) failures.push(f);
  }
  if (/\.ova$/i.test(path)) {
    // unpack writes files named by the archive: whatever it holds, nothing may land outside the target
    const sandbox = join(dirname(path), "unpack-sandbox");
    const target = join(sandbox, "target");
    mkdirSync(sandbox, { recursive: true });
    const f = await guard("unpackOva", async () => {
      // a refusal is fine; what counts is where files landed, checked before the refusal is passed on
      const refusal = await unpackOva(path, target, { verify: false }).then(
        () => undefined,
        (error: unknown) => error ?? new Error("unpack rejected without a reason"),
      );
      const outside = readdirSync(sandbox).filter((name) => name !== "target");
      const nested = existsSync(target) ? readdirSync(target, { recursive: true }).map(String) : [];
      const escaped = nested.filter(
        (name) => name.includes("/") || name.includes("\\") || name.startsWith("."),
      );
      rmSync(sandbox, { recursive: true, force: true });
      if (outside.length > 0 || escaped.length > 0) {
        throw new Error(
          `unpack wrote outside its folder or into subfolders: ${[...outside, ...escaped].join(", ")}`,
        );
      }
      if (refusal !== undefined) throw refusal;
    });
    if (f) failures.push(f);
  }
  return failures;
}

// ---------------------------------------------------------------------------
// seeds

export type DiskFormatName = "vpc" | "vhdx" | "vmdk" | "qcow2";

export interface SeedFile {
  /** Name relative to the seed's folder. */
  name: string;
  pristine: Buffer;
  /** Structure of the pristine bytes, or undefined when this file is not a mutation target. */
  layout?: Layout;
}

export interface DiskSeed {
  id: string;
  format: DiskFormatName;
  primary: string;
  files: SeedFile[];
}

/** Seeds above this size are left out (two copies sit in memory for the whole run). */
const SEED_MAX_BYTES = 32 * 1024 * 1024;

export function layoutFor(format: DiskFormatName, buf: Buffer): Layout {
  switch (format) {
    case "vpc":
      return vhdLayout(buf);
    case "vhdx":
      return vhdxLayout(buf);
    case "vmdk":
      return vmdkLayout(buf);
    default:
      return qcow2Layout(buf);
  }
}

const FORMAT_OF_PROBE: Record<string, DiskFormatName> = {
  vpc: "vpc",
  vhdx: "vhdx",
  vmdk: "vmdk",
  qcow2: "qcow2",
};

/** Corpus images of `format` (by the probe qemu made), all their files loaded. */
export async function corpusSeeds(format: DiskFormatName): Promise<DiskSeed[]> {
  const seeds: DiskSeed[] = [];
  // parents and backing files live in other entries: materialise everything first
  for (const image of expectedImages()) await materialise(image);
  for (const image of expectedImages()) {
    if (FORMAT_OF_PROBE[image.qemu_format] !== format && FORMAT_OF_PROBE[image.probed_format] !== format)
      continue;
    const seed = await seedFromImage(image, format);
    if (seed) seeds.push(seed);
  }
  return seeds;
}

async function seedFromImage(image: ExpectedImage, format: DiskFormatName): Promise<DiskSeed | undefined> {
  const primaryPath = await materialise(image);
  const folder = dirname(primaryPath);
  const imageFolder = dirname(image.path);
  const names = Object.keys(image.files).map((f) => basename(f));
  if (!names.includes(basename(primaryPath))) names.push(basename(primaryPath));
  const files: SeedFile[] = [];
  for (const name of names) {
    const path = join(folder, name);
    if (!existsSync(path) || !statSync(path).isFile() || statSync(path).size > SEED_MAX_BYTES)
      return undefined;
    const pristine = readFileSync(path);
    files.push({ name, pristine, layout: layoutFor(format, pristine) });
  }
  // a backing file (qcow2 over VHD, VMDK child) rides along unmutated, from wherever the corpus keeps it
  // qemu-img info --backing-chain gives an array (image first), plain info an object
  const info = image.qemu_img_info as unknown;
  const top = (Array.isArray(info) ? info[0] : info) as Record<string, unknown> | undefined;
  const backing = top?.["backing-filename"];
  if (typeof backing === "string" && !backing.includes("/") && !names.includes(backing)) {
    const candidates = [
      join(folder, backing),
      join(MATERIALISED, imageFolder, backing),
      join(CORPUS_DISKS, imageFolder, backing),
    ];
    const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
    if (!found) return undefined;
    files.push({ name: backing, pristine: readFileSync(found) });
  }
  return { id: `corpus:${image.path}`, format, primary: basename(primaryPath), files };
}

/** A folder of seed files on disk, loaded as a seed (synthetic seeds made by ovfkit's writers). */
export function seedFromFolder(
  id: string,
  format: DiskFormatName,
  folder: string,
  primary: string,
): DiskSeed {
  const files = readdirSync(folder).map((name) => {
    const pristine = readFileSync(join(folder, name));
    return { name, pristine, layout: layoutFor(format, pristine) };
  });
  return { id, format, primary, files };
}

// ---------------------------------------------------------------------------
// running disk cases: patch the mutated ranges into a copy, run, restore

export interface CaseResult {
  seed: string;
  caseSeed: number;
  target: string;
  mutations: string[];
  failures: Failure[];
}

/** A seed's files copied into a working folder, patched per case and restored after. */
export class SeedWorkspace {
  readonly dir: string;

  constructor(
    readonly seed: DiskSeed,
    root: string,
  ) {
    this.dir = join(root, seed.id.replace(/[^\w.-]+/g, "_"));
    mkdirSync(this.dir, { recursive: true });
    for (const file of seed.files) writeFileSync(join(this.dir, file.name), file.pristine);
  }

  get primaryPath(): string {
    return join(this.dir, this.seed.primary);
  }

  /** Mutates one file of the seed, runs every reader path (or `exercise`), restores the file. */
  async runCase(
    caseSeed: number,
    workDir: string,
    exercise: DiskExercise = exerciseDisk,
  ): Promise<CaseResult> {
    const rng = new Rng(caseSeed);
    const targets = this.seed.files.filter((f) => f.layout);
    const file = rng.pick(targets);
    const t: MutationTarget = {
      buf: Buffer.from(file.pristine),
      pristine: file.pristine,
      layout: file.layout!,
      dirty: new DirtySet(),
    };
    const mutations = this.mutate(rng, t);
    const path = join(this.dir, file.name);
    applyToFile(path, t);
    try {
      const failures = await exercise(this.primaryPath, rng, workDir);
      if (failures.length > 0) saveRegression(this.seed, file.name, t, caseSeed, mutations, failures);
      return { seed: this.seed.id, caseSeed, target: file.name, mutations, failures };
    } finally {
      restoreFile(path, t);
    }
  }

  private mutate(rng: Rng, t: MutationTarget): string[] {
    const isText =
      t.layout.regions.length === 1 &&
      t.layout.regions[0]!.name === "descriptor" &&
      t.layout.fields.length === 0;
    if (isText && rng.bool(0.7)) {
      // a VMDK text descriptor: mutate it as text (lengths may change: the file is rewritten whole)
      const { text, applied } = mutateDescriptor(rng, t.pristine.toString("latin1"));
      const bytes = Buffer.from(text, "latin1");
      if (bytes.length <= t.buf.length) {
        bytes.copy(t.buf);
        t.dirty.mark(0, bytes.length);
        t.truncateTo = bytes.length;
      } else {
        bytes.copy(t.buf, 0, 0, t.buf.length);
        t.dirty.mark(0, t.buf.length);
        t.append = bytes.subarray(t.buf.length);
      }
      return applied;
    }
    return mutateBinary(rng, t);
  }
}

function applyToFile(path: string, t: MutationTarget): void {
  const fd = openSync(path, "r+");
  try {
    for (const [start, end] of t.dirty.ranges) writeSync(fd, t.buf, start, end - start, start);
    if (t.truncateTo !== undefined) ftruncateSync(fd, t.truncateTo);
    else if (t.append) writeSync(fd, t.append, 0, t.append.length, t.buf.length);
  } finally {
    closeSync(fd);
  }
}

function restoreFile(path: string, t: MutationTarget): void {
  const fd = openSync(path, "r+");
  try {
    for (const [start, end] of t.dirty.ranges) writeSync(fd, t.pristine, start, end - start, start);
    if (t.truncateTo !== undefined) {
      writeSync(fd, t.pristine, t.truncateTo, t.pristine.length - t.truncateTo, t.truncateTo);
    }
    ftruncateSync(fd, t.pristine.length);
  } finally {
    closeSync(fd);
  }
}

/** The mutated file as it was on disk during the case. */
export function mutatedBytes(t: MutationTarget): Buffer {
  if (t.truncateTo !== undefined) return t.buf.subarray(0, t.truncateTo);
  return t.append ? Buffer.concat([t.buf, t.append]) : t.buf;
}

// ---------------------------------------------------------------------------
// regressions

export interface RegressionMeta {
  kind: "disk" | "cli-disk" | "descriptor" | "package";
  seed: string;
  caseSeed: number;
  /** The mutated file (gzip in the regression folder), and the primary file to open. */
  target: string;
  primary: string;
  mutations: string[];
  failures: Failure[];
  /** Unmutated companion files (VMDK extents, parents) stored beside it. */
  companions: string[];
}

/**
 * Writes `fixtures/regressions/<id>/` with the mutated file (gzip) and
 * its companions, so the case replays without the corpus. Only the first
 * failure of each (seed, step, kind) is kept: one bug, one reproducer.
 */
export function saveRegression(
  seed: DiskSeed,
  target: string,
  t: MutationTarget,
  caseSeed: number,
  mutations: string[],
  failures: Failure[],
): void {
  if (process.env.OVFKIT_FUZZ_SAVE === "0") return;
  const key = `${seed.id}|${failures[0]!.step}|${failures[0]!.kind}`;
  const id = `${seed.format}-${createHash("sha256").update(key).digest("hex").slice(0, 10)}`;
  const dir = join(REGRESSIONS, id);
  if (existsSync(dir)) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${target}.gz`), gzipSync(mutatedBytes(t)));
  const companions: string[] = [];
  for (const file of seed.files) {
    if (file.name === target) continue;
    writeFileSync(join(dir, `${file.name}.gz`), gzipSync(file.pristine));
    companions.push(file.name);
  }
  const meta: RegressionMeta = {
    kind: "disk",
    seed: seed.id,
    caseSeed,
    target,
    primary: seed.primary,
    mutations,
    failures,
    companions,
  };
  writeFileSync(join(dir, "case.json"), `${JSON.stringify(meta, null, 2)}\n`);
}

/** Saves a text or package reproducer (descriptor, OVA) as one gzip file plus case.json. */
export function saveFileRegression(
  kind: "descriptor" | "package",
  seedId: string,
  name: string,
  bytes: Buffer,
  caseSeed: number,
  mutations: string[],
  failures: Failure[],
): void {
  if (process.env.OVFKIT_FUZZ_SAVE === "0") return;
  const key = `${seedId}|${failures[0]!.step}|${failures[0]!.kind}`;
  const id = `${kind}-${createHash("sha256").update(key).digest("hex").slice(0, 10)}`;
  const dir = join(REGRESSIONS, id);
  if (existsSync(dir)) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.gz`), gzipSync(bytes));
  const meta: RegressionMeta = {
    kind,
    seed: seedId,
    caseSeed,
    target: name,
    primary: name,
    mutations,
    failures,
    companions: [],
  };
  writeFileSync(join(dir, "case.json"), `${JSON.stringify(meta, null, 2)}\n`);
}

// ---------------------------------------------------------------------------
// tar building for package cases

/** A minimal ustar writer (independent of src/ovf/tar.ts, so the fuzzer does not trust what it tests). */
export function buildTar(members: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const member of members) {
    const header = Buffer.alloc(512);
    header.write(member.name.slice(0, 100), 0, "latin1");
    header.write("0000644\0", 100, "latin1");
    header.write("0000000\0", 108, "latin1");
    header.write("0000000\0", 116, "latin1");
    header.write(`${member.data.length.toString(8).padStart(11, "0")}\0`, 124, "latin1");
    header.write("00000000000\0", 136, "latin1");
    header.write("0", 156, "latin1");
    header.write("ustar\u000000", 257, "latin1");
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    parts.push(header, member.data, Buffer.alloc((512 - (member.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Members of a tar (regular files only), by walking the headers. */
export function readTarMembers(tar: Buffer): { name: string; data: Buffer }[] {
  const out: { name: string; data: Buffer }[] = [];
  let at = 0;
  while (at + 512 <= tar.length && tar[at] !== 0) {
    const name = tar
      .subarray(at, at + 100)
      .toString("latin1")
      .replace(/\0.*$/s, "");
    const size = Number.parseInt(
      tar
        .subarray(at + 124, at + 136)
        .toString("latin1")
        .trim(),
      8,
    );
    out.push({ name, data: tar.subarray(at + 512, at + 512 + size) });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

export function sha256Hex(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Package members → OVA bytes: descriptor first, manifest digests recomputed unless told not to. */
export function packMembers(
  members: { name: string; data: Buffer }[],
  options: { recomputeManifest: boolean },
): Buffer {
  const manifest = members.find((m) => m.name.endsWith(".mf"));
  if (manifest && options.recomputeManifest) {
    const lines = members
      .filter((m) => m !== manifest && !m.name.endsWith(".cert"))
      .map((m) => `SHA256(${m.name})= ${sha256Hex(m.data)}`);
    manifest.data = Buffer.from(`${lines.join("\n")}\n`);
  }
  return buildTar(members);
}

export { mutateManifest, mutateTarMember, mutateXml, Rng, tarLayout };

/** Memory guard: resident set growth since `baseline`, in MiB. */
export function rssGrowthMiB(baseline: number): number {
  return (process.memoryUsage().rss - baseline) / (1024 * 1024);
}

export function copyInto(dir: string, source: string, name = basename(source)): string {
  const target = join(dir, name);
  copyFileSync(source, target);
  return target;
}
