import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { convert, openDisk } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { corpusOvfFiles } from "../ovf/corpus-files.js";
import {
  type CaseResult,
  corpusSeeds,
  type DiskExercise,
  type DiskFormatName,
  type DiskSeed,
  exerciseDescriptor,
  exercisePackage,
  type Failure,
  packMembers,
  readTarMembers,
  SeedWorkspace,
  saveFileRegression,
  seedFromFolder,
  takeOutcomes,
} from "./harness.js";
import {
  DirtySet,
  type MutationTarget,
  mutateBinary,
  mutateManifest,
  mutateTarMember,
  mutateXml,
  Rng,
  tarLayout,
  vmdkLayout,
} from "./mutators.js";

/**
 * Fuzz campaigns: N deterministic cases per format, spread round-robin over
 * the seeds. The CI suite (test/fuzz) and the long run (test/long,
 * `npm run fuzz`) call the same campaigns with different counts.
 */

export interface CampaignResult {
  cases: number;
  failures: { caseSeed: number; seed: string; mutations: string[]; failures: Failure[] }[];
  seeds: string[];
  /** How the steps ended (`step:ok`, `step:CODE`), most frequent first. */
  outcomes: [string, number][];
}

const MiB = 1024 * 1024;

/** A small raw disk with data in a few places (so every format has allocated blocks, tables and gaps). */
function writePatternRaw(path: string, size = 4 * MiB): void {
  const buf = Buffer.alloc(size);
  for (const at of [0, 700 * 1024, 2 * MiB + 4096, size - 8192]) {
    for (let i = 0; i < 8192; i++) buf[at + i] = (i * 31 + at) & 0xff;
  }
  writeFileSync(path, buf);
}

/** Seeds made by ovfkit's own writers (small: fast cases) in every subformat worth covering. */
async function syntheticSeeds(format: DiskFormatName, root: string): Promise<DiskSeed[]> {
  const raw = join(root, "pattern.raw");
  writePatternRaw(raw);
  const variants: Record<
    DiskFormatName,
    { name: string; options: Record<string, string>; parent?: boolean }[]
  > = {
    vpc: [
      { name: "dynamic.vhd", options: { block_size: "512K" } },
      { name: "fixed.vhd", options: { subformat: "fixed" } },
      { name: "child.vhd", options: {}, parent: true },
    ],
    vhdx: [{ name: "dynamic.vhdx", options: {} }],
    vmdk: [
      { name: "sparse.vmdk", options: {} },
      { name: "stream.vmdk", options: { subformat: "streamOptimized" } },
      { name: "split.vmdk", options: { subformat: "twoGbMaxExtentSparse" } },
      { name: "zeroed.vmdk", options: { zeroed_grain: "on" } },
    ],
    qcow2: [
      { name: "small.qcow2", options: { cluster_size: "4K" } },
      { name: "default.qcow2", options: {} },
    ],
  };
  const seeds: DiskSeed[] = [];
  const source = await openDisk(raw, { format: "raw" });
  try {
    for (const variant of variants[format]) {
      const folder = join(root, `synthetic-${format}-${variant.name}`);
      rmSync(folder, { recursive: true, force: true });
      mkdirSync(folder, { recursive: true });
      const options = { ...variant.options };
      if (variant.parent) {
        // the parent must have the source's exact size: no CHS rounding
        await convert(source, join(folder, "parent.vhd"), { format, options: { force_size: "on" } });
        options.force_size = "on";
        options.parent = "parent.vhd";
      }
      await convert(source, join(folder, variant.name), { format, options });
      seeds.push(seedFromFolder(`synthetic:${format}/${variant.name}`, format, folder, variant.name));
    }
  } finally {
    await source.close();
  }
  return seeds;
}

export async function diskSeeds(format: DiskFormatName, root: string): Promise<DiskSeed[]> {
  return [...(await syntheticSeeds(format, root)), ...(await corpusSeeds(format))];
}

/** Runs `cases` mutated images of `format` through every reader path. */
export async function runDiskCampaign(
  format: DiskFormatName,
  cases: number,
  masterSeed: number,
  root: string,
  exercise?: DiskExercise,
): Promise<CampaignResult> {
  const seeds = await diskSeeds(format, root);
  const workspaces = seeds.map((seed) => new SeedWorkspace(seed, join(root, "seeds")));
  const workDir = join(root, "work");
  mkdirSync(workDir, { recursive: true });
  const rng = new Rng(masterSeed);
  const result: CampaignResult = { cases: 0, failures: [], seeds: seeds.map((s) => s.id), outcomes: [] };
  takeOutcomes();
  for (let i = 0; i < cases; i++) {
    const workspace = workspaces[i % workspaces.length]!;
    const outcome: CaseResult = await workspace.runCase(rng.u32(), workDir, exercise);
    result.cases++;
    if (outcome.failures.length > 0) result.failures.push(outcome);
  }
  result.outcomes = takeOutcomes();
  return result;
}

/** Descriptors from the corpus (skipping the half-MiB giants: they add time, not coverage). */
export function descriptorSeeds(): { id: string; text: string }[] {
  return corpusOvfFiles(/\.ovf$/i)
    .map((path) => ({ id: path, text: readFileSync(path, "utf8") }))
    .filter((seed) => seed.text.length <= 64 * 1024);
}

export async function runDescriptorCampaign(cases: number, masterSeed: number): Promise<CampaignResult> {
  const seeds = descriptorSeeds();
  const rng = new Rng(masterSeed);
  const result: CampaignResult = { cases: 0, failures: [], seeds: seeds.map((s) => s.id), outcomes: [] };
  takeOutcomes();
  for (let i = 0; i < cases; i++) {
    const seed = seeds[i % seeds.length]!;
    const caseSeed = rng.u32();
    const caseRng = new Rng(caseSeed);
    const { text, applied } = mutateXml(caseRng, seed.text);
    const failures = await exerciseDescriptor(text, caseRng, `${basename(seed.id)}`);
    result.cases++;
    if (failures.length > 0) {
      result.failures.push({ caseSeed, seed: seed.id, mutations: applied, failures });
      saveFileRegression(
        "descriptor",
        seed.id,
        basename(seed.id),
        Buffer.from(text),
        caseSeed,
        applied,
        failures,
      );
    }
  }
  result.outcomes = takeOutcomes();
  return result;
}

interface PackageSeed {
  id: string;
  members: { name: string; data: Buffer }[];
  tar: Buffer;
}

/** An appliance made by `ovfkit create-ovf` plus the corpus OVAs. */
async function packageSeeds(root: string): Promise<PackageSeed[]> {
  const seeds: PackageSeed[] = [];
  const raw = join(root, "pkg-disk.raw");
  writePatternRaw(raw, 1 * MiB);
  const ova = join(root, "pkg-app.ova");
  const made = ovfkit(["create-ovf", raw, "-o", ova, "--force"]);
  if (made.status !== 0) throw new Error(`create-ovf failed: ${made.stderr}`);
  const signed = signedCopy(ova, root);
  for (const path of [ova, ...(signed ? [signed] : []), ...corpusOvfFiles(/\.ova$/i)]) {
    const tar = readFileSync(path);
    if (tar.length > 8 * MiB) continue;
    seeds.push({ id: path, members: readTarMembers(tar), tar });
  }
  return seeds;
}

/** The appliance signed with a throw-away RSA key (openssl), so .cert parsing is fuzzed too; undefined without openssl. */
function signedCopy(ova: string, root: string): string | undefined {
  const key = join(root, "sign-key.pem");
  const cert = join(root, "sign-cert.pem");
  const made = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=ovfkit fuzz",
    ],
    { encoding: "utf8" },
  );
  if (made.status !== 0) {
    console.warn(`[skip] signed package seed: openssl failed (${made.stderr?.trim() ?? "not installed"})`);
    return undefined;
  }
  const out = join(root, "pkg-app-signed.ova");
  const result = ovfkit(["sign", ova, "--key", key, "--cert", cert, "-o", out, "--force"]);
  if (result.status !== 0) throw new Error(`sign failed: ${result.stderr}`);
  return out;
}

/** Mutated OVAs (tar headers, descriptor, manifest, disk) and OVF folders through verify and validate. */
export async function runPackageCampaign(
  cases: number,
  masterSeed: number,
  root: string,
  exercise: (path: string) => Promise<Failure[]> = exercisePackage,
): Promise<CampaignResult> {
  const seeds = await packageSeeds(root);
  const rng = new Rng(masterSeed);
  const result: CampaignResult = { cases: 0, failures: [], seeds: seeds.map((s) => s.id), outcomes: [] };
  takeOutcomes();
  const work = join(root, "pkg-work");
  for (let i = 0; i < cases; i++) {
    const seed = seeds[i % seeds.length]!;
    const caseSeed = rng.u32();
    const caseRng = new Rng(caseSeed);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const { path, bytes, mutations } = mutatePackage(caseRng, seed, work);
    const failures = await exercise(path);
    result.cases++;
    if (failures.length > 0) {
      result.failures.push({ caseSeed, seed: seed.id, mutations, failures });
      saveFileRegression("package", seed.id, basename(path), bytes, caseSeed, mutations, failures);
    }
  }
  result.outcomes = takeOutcomes();
  return result;
}

function mutatePackage(
  rng: Rng,
  seed: PackageSeed,
  work: string,
): { path: string; bytes: Buffer; mutations: string[] } {
  const choice = rng.int(10);
  if (choice < 4) {
    // tar level: headers, sizes, names, link types; checksums usually recomputed
    const t: MutationTarget = {
      buf: Buffer.from(seed.tar),
      pristine: seed.tar,
      layout: tarLayout(seed.tar),
      dirty: new DirtySet(),
    };
    const mutations = rng.bool(0.5) ? [mutateTarMember(rng, t)] : mutateBinary(rng, t);
    if (rng.bool(0.85)) t.layout.fixup?.(t.buf, t.dirty);
    const bytes = t.truncateTo !== undefined ? t.buf.subarray(0, t.truncateTo) : t.buf;
    const path = join(work, "case.ova");
    writeFileSync(path, bytes);
    return { path, bytes, mutations };
  }
  // member level: mutate one member, rebuild the tar (manifest digests recomputed unless the manifest is the target)
  const members: { name: string; data: Buffer }[] = seed.members.map((m) => ({
    name: m.name,
    data: Buffer.from(m.data),
  }));
  const mutations: string[] = [];
  const descriptor = members.find((m) => m.name.toLowerCase().endsWith(".ovf"));
  const manifest = members.find((m) => m.name.toLowerCase().endsWith(".mf"));
  const disk = members.find((m) => m.name.toLowerCase().endsWith(".vmdk"));
  const certificate = members.find((m) => m.name.toLowerCase().endsWith(".cert"));
  let recomputeManifest = true;
  if (certificate && choice === 4) {
    // the signature line and the PEM blocks (a valid signature of the manifest stays valid:
    // manifest digests are recomputed over unchanged members)
    const mutated = mutateManifest(rng, certificate.data.toString("latin1"));
    certificate.data = Buffer.from(mutated.text, "latin1");
    mutations.push(...mutated.applied.map((a) => `cert:${a}`));
  } else if (choice < 7 && descriptor) {
    const mutated = mutateXml(rng, descriptor.data.toString("utf8"));
    descriptor.data = Buffer.from(mutated.text, "utf8");
    mutations.push(...mutated.applied.map((a) => `ovf:${a}`));
  } else if (choice < 8 && manifest) {
    recomputeManifest = false;
    const mutated = mutateManifest(rng, manifest.data.toString("utf8"));
    manifest.data = Buffer.from(mutated.text, "utf8");
    mutations.push(...mutated.applied.map((a) => `mf:${a}`));
  } else if (disk) {
    const t: MutationTarget = {
      buf: disk.data,
      pristine: disk.data,
      layout: vmdkLayout(disk.data),
      dirty: new DirtySet(),
    };
    mutations.push(...mutateBinary(rng, t).map((a) => `disk:${a}`));
    disk.data = t.truncateTo !== undefined ? t.buf.subarray(0, t.truncateTo) : t.buf;
  }
  if (rng.bool(0.25) && descriptor) {
    // the same package as an OVF folder
    packMembers(members, { recomputeManifest });
    for (const member of members) writeFileSync(join(work, basename(member.name) || "unnamed"), member.data);
    const path = join(work, basename(descriptor.name));
    return { path, bytes: readFileSync(path), mutations: [...mutations, "folder"] };
  }
  const bytes = packMembers(members, { recomputeManifest });
  const path = join(work, "case.ova");
  writeFileSync(path, bytes);
  return { path, bytes, mutations };
}

/** With OVFKIT_FUZZ_DUMP=FILE, appends every failure as a JSON line (triage of long runs). */
export function dumpFailures(label: string, result: CampaignResult): void {
  const file = process.env.OVFKIT_FUZZ_DUMP;
  if (!file) return;
  for (const f of result.failures) appendFileSync(file, `${JSON.stringify({ label, ...f })}\n`);
}

/** One line per failure, for assertion messages. */
export function describeFailures(result: CampaignResult): string {
  return result.failures
    .slice(0, 10)
    .map(
      (f) =>
        `seed ${f.seed} case ${f.caseSeed} [${f.mutations.join(",")}]: ${f.failures.map((x) => `${x.step} ${x.kind}: ${x.detail.split("\n").slice(0, 4).join(" | ")}`).join("; ")}`,
    )
    .join("\n");
}
