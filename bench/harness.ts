import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The benchmark harness: runs each tool (ovfkit's own bin and a peer such
 * as qemu-img) as a child process and measures its wall time and peak
 * resident memory, so both are measured the same way in the same run.
 */

export interface Measurement {
  wallSeconds: number;
  /** Peak resident set size of the child, KiB. */
  peakRssKiB: number;
  /** User + system CPU seconds of the child (NaN when unknown): steadier than wall time on a busy machine. */
  cpuSeconds: number;
  exitCode: number;
  stderr: string;
}

/** One tool's runs of a case (median time, worst memory). */
export interface ToolResult {
  tool: string;
  command: string;
  /** Median wall time of the runs. */
  wallSeconds: number;
  /** Fastest and slowest run: the spread says how much the machine's other work skewed the median. */
  minSeconds: number;
  maxSeconds: number;
  /** Median CPU (user + system) seconds. */
  cpuSeconds: number;
  peakRssKiB: number;
  runs: number;
}

export interface CaseResult {
  name: string;
  description: string;
  /** The first entry is ovfkit; the others are peers, compared against it. */
  tools: ToolResult[];
  /** Why the case did not run (missing writer, missing peer...). */
  skipped?: string;
  /** Extra facts worth printing (verification, sizes). */
  notes: string[];
}

export interface BenchContext {
  /** Scratch folder for outputs (.tmp/bench). */
  readonly work: string;
  /** The package root (where package.json and bin/ovfkit are). */
  readonly root: string;
  /** Runs per tool; the median wall time is reported. */
  readonly repeat: number;
  /** `[node, bin/ovfkit]`: prefix of every ovfkit command line. */
  readonly ovfkit: readonly string[];
  hasTool(name: string): boolean;
  log(line: string): void;
}

export interface BenchCase {
  readonly name: string;
  readonly description: string;
  /** A reason not to run (printed), or undefined to run. */
  skipReason?(ctx: BenchContext): string | undefined;
  run(ctx: BenchContext): Promise<CaseResult>;
}

export interface BenchSuite {
  readonly name: string;
  readonly cases: readonly BenchCase[];
}

/** The package root: the nearest folder above this module with a package.json. */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${from}`);
    dir = parent;
  }
  return dir;
}

export function hasTool(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
}

const GNU_TIME = "/usr/bin/time";
/** GNU time's -v prints "Maximum resident set size (kbytes): N" (the kernel's ru_maxrss of the child). */
const hasGnuTime = existsSync(GNU_TIME) && spawnSync(GNU_TIME, ["-v", "true"]).status === 0;

/** How peak memory is measured here (printed with the results). */
export const rssMethod = hasGnuTime
  ? "GNU time -v (ru_maxrss of the child)"
  : "polling /proc/PID/status VmHWM every 20 ms";

/** Runs `command args` once and measures it. */
export function measure(command: string, args: readonly string[]): Promise<Measurement> {
  return hasGnuTime ? measureWithGnuTime(command, args) : measureByPolling(command, args);
}

function measureWithGnuTime(command: string, args: readonly string[]): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(GNU_TIME, ["-v", command, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
      const match = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      const user = /User time \(seconds\): ([\d.]+)/.exec(stderr);
      const system = /System time \(seconds\): ([\d.]+)/.exec(stderr);
      const report = stderr.indexOf("\tCommand being timed:");
      resolve({
        wallSeconds,
        peakRssKiB: match ? Number(match[1]) : Number.NaN,
        cpuSeconds: user && system ? Number(user[1]) + Number(system[1]) : Number.NaN,
        exitCode: code ?? -1,
        stderr: report >= 0 ? stderr.slice(0, report) : stderr,
      });
    });
  });
}

function measureByPolling(command: string, args: readonly string[]): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let peak = 0;
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setInterval(() => {
      try {
        const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
        const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
        if (hwm) peak = Math.max(peak, Number(hwm[1]));
      } catch {
        // the child just exited
      }
    }, 20);
    child.on("error", reject);
    child.on("close", (code) => {
      clearInterval(timer);
      resolve({
        wallSeconds: Number(process.hrtime.bigint() - start) / 1e9,
        peakRssKiB: peak,
        cpuSeconds: Number.NaN,
        exitCode: code ?? -1,
        stderr,
      });
    });
  });
}

/**
 * Runs a tool `ctx.repeat` times (`prepare` and `sync` before each run,
 * e.g. to delete the previous output) and reports the median wall time and the highest
 * peak RSS. A failing run aborts the case: figures of a failed run mean nothing.
 */
export async function measureTool(
  ctx: BenchContext,
  tool: string,
  argv: readonly string[],
  prepare: () => void = () => {},
): Promise<ToolResult> {
  const times: number[] = [];
  const cpu: number[] = [];
  let peak = 0;
  for (let i = 0; i < ctx.repeat; i++) {
    prepare();
    // Flush the previous run's dirty pages so a run does not pay for its predecessor's writeback.
    spawnSync("sync");
    const m = await measure(argv[0]!, argv.slice(1));
    if (m.exitCode !== 0) {
      throw new Error(`${tool} failed (exit ${m.exitCode}): ${argv.join(" ")}\n${m.stderr}`);
    }
    times.push(m.wallSeconds);
    cpu.push(m.cpuSeconds);
    peak = Math.max(peak, m.peakRssKiB);
    ctx.log(
      `  ${tool} run ${i + 1}/${ctx.repeat}: ${m.wallSeconds.toFixed(2)} s, ${(m.peakRssKiB / 1024).toFixed(0)} MiB`,
    );
  }
  times.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  return {
    tool,
    command: argv.map((a) => (a === process.execPath ? "node" : a.replace(`${ctx.root}/`, ""))).join(" "),
    wallSeconds: times[Math.floor(times.length / 2)]!,
    cpuSeconds: cpu[Math.floor(cpu.length / 2)]!,
    minSeconds: times[0]!,
    maxSeconds: times[times.length - 1]!,
    peakRssKiB: peak,
    runs: times.length,
  };
}

/** The machine the figures were measured on (printed with them, copied into BENCHMARKS.md). */
export function machineDescription(): string[] {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown CPU";
  const qemu = spawnSync("qemu-img", ["--version"], { encoding: "utf8" }).stdout?.split("\n")[0] ?? "";
  return [
    `date: ${new Date().toISOString()}`,
    `cpu: ${model}, ${availableParallelism()} cores (nproc)`,
    `node: ${process.version}`,
    // other work on the machine skews timings; say how busy it was
    `load average at start (1/5/15 min): ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" / ")}`,
    `peer: ${qemu || "qemu-img not installed"}`,
    `peak RSS measured with: ${rssMethod}`,
  ];
}

/** "0.65 s (0.60–0.90)": median, then fastest and slowest run. */
function timeRange(t: ToolResult): string {
  if (t.runs === 1) return `${t.wallSeconds.toFixed(2)} s`;
  return `${t.wallSeconds.toFixed(2)} s (${t.minSeconds.toFixed(2)}–${t.maxSeconds.toFixed(2)})`;
}

const cpuTime = (t: ToolResult) => (Number.isNaN(t.cpuSeconds) ? "n/a" : `${t.cpuSeconds.toFixed(2)} s`);

const MiB = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

/**
 * A Markdown table, one row per case: ovfkit against its peer (the case's
 * second tool; a case with more peers gets one more row per extra peer).
 * The ratio is ovfkit's fastest wall time divided by the peer's: below 1
 * means ovfkit is faster.
 */
export function resultTable(results: readonly CaseResult[]): string {
  const lines = [
    "| case | ovfkit wall: median (min–max) | ovfkit CPU | peer | peer wall: median (min–max) | peer CPU | ovfkit ÷ peer wall (fastest runs) | ovfkit peak RSS | peer peak RSS |",
    "|---|---:|---:|---|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const [ours, ...peers] = r.tools;
    if (r.skipped || !ours) {
      lines.push(`| ${r.name} | skipped: ${r.skipped ?? "no figures"} | | | | | | | |`);
      continue;
    }
    const oursTime = timeRange(ours);
    if (peers.length === 0) {
      lines.push(`| ${r.name} | ${oursTime} | ${cpuTime(ours)} | (none) | | | | ${MiB(ours.peakRssKiB)} | |`);
    }
    for (const peer of peers) {
      // the fastest runs are the least disturbed by other work on the machine
      const ratio = (ours.minSeconds / peer.minSeconds).toFixed(2);
      lines.push(
        `| ${r.name} | ${oursTime} | ${cpuTime(ours)} | ${peer.tool} | ${timeRange(peer)} | ${cpuTime(peer)} | ${ratio} | ${MiB(ours.peakRssKiB)} | ${MiB(peer.peakRssKiB)} |`,
      );
    }
  }
  return lines.join("\n");
}

/** Size of the shared mixed benchmark image (MiB). */
export const MIXED_MIB = 1024;

/**
 * The 1 GiB mixed input every disk benchmark uses, made once into the work
 * folder by ../shared/tools/make-bench-image.py OUT 1024 1 (40% holes, 30%
 * random, 30% text), so every figure measures the same work.
 */
export function mixedImage(ctx: BenchContext): string {
  const path = join(ctx.work, `mixed-${MIXED_MIB}m-seed1.raw`);
  if (!existsSync(path)) {
    const script = join(ctx.root, "../shared/tools/make-bench-image.py");
    ctx.log(`generating ${path} with ${script} (once)`);
    mkdirSync(ctx.work, { recursive: true });
    const temp = `${path}.partial`;
    const result = spawnSync("python3", [script, temp, String(MIXED_MIB), "1"], { stdio: "inherit" });
    if (result.status !== 0) throw new Error(`make-bench-image.py failed (exit ${result.status})`);
    renameSync(temp, path);
  }
  return path;
}
