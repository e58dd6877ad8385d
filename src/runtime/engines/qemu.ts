import { spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { OvfkitError } from "../../errors.js";
import { detectFormat } from "../../formats/index.js";
import type { BootResult, BootTestOptions, BootVerdict } from "../boot.js";
import { resolveBootDisk } from "../boot.js";
import { consoleFailure, consoleTail } from "../verdict.js";

/**
 * `--engine qemu`: the same boot test run in `qemu-system-x86_64` (TCG)
 * instead of the embedded PC. The disk is attached read-only
 * (`snapshot=on`: guest writes go to a temporary overlay qemu discards),
 * COM1 is the child's stdout, and the console goes through the same
 * verdict rules as the embedded engine (expected text, timeout, kernel
 * panic, no root device, the guest ending the run). It is both a fast
 * path for users with qemu and the differential oracle of our tests.
 *
 * Differences that cannot be hidden: qemu's time is host time (the
 * timeout is in host seconds, and there is no instruction count), and
 * with `-no-reboot` a guest reset and an ACPI power-off both make qemu
 * exit, so both are reported as `guest-reset` (the embedded PC without
 * ACPI sees a power-off as a reset too).
 */

export const QEMU_BINARY = "qemu-system-x86_64";
const CONSOLE_TAIL_LINES = 40;
/** Console text kept in memory (the --console file keeps everything). */
const CONSOLE_LIMIT = 4 * 1024 * 1024;

export interface QemuBootOptions extends BootTestOptions {
  /** The emulator (default qemu-system-x86_64; qemu-system-i386 for 32-bit only guests). */
  qemuBinary?: string;
  /** How the disk is attached: if=virtio (default) or if=ide. */
  diskBus?: "virtio" | "ide";
}

/** Whether `binary` can be run (it answers --version). */
export function qemuAvailable(binary = QEMU_BINARY): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(binary, ["--version"], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("exit", (code) => resolve(code === 0));
  });
}

/** qemu's command line for one boot (exported for the docs and tests). */
export function qemuArguments(disk: string, format: string, options: QemuBootOptions): string[] {
  return [
    "-accel",
    "tcg",
    "-m",
    String(options.memoryMiB ?? 128),
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-no-reboot",
    "-drive",
    // A comma in a -drive value is escaped by doubling it.
    `file=${disk.replaceAll(",", ",,")},format=${format},if=${options.diskBus ?? "virtio"},snapshot=on`,
  ];
}

interface QemuRun {
  console: string;
  ended: "expected-text" | "exited" | "timeout" | "cancelled";
  exitCode: number | null;
  stderr: string;
}

function runQemu(
  binary: string,
  args: string[],
  options: QemuBootOptions,
  file?: WriteStream,
): Promise<QemuRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let console = "";
    let stderr = "";
    let ended: QemuRun["ended"] | undefined;
    const finish = (why: QemuRun["ended"]) => {
      ended ??= why;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    const timeoutMs = (options.timeoutSeconds ?? 120) * 1000;
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    const onAbort = () => finish("cancelled");
    options.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (chunk: Buffer) => {
      options.onConsole?.(chunk);
      file?.write(chunk);
      const before = console.length;
      console += chunk.toString("latin1");
      if (console.length > CONSOLE_LIMIT) console = console.slice(-CONSOLE_LIMIT / 2);
      const expect = options.expect;
      if (expect && console.indexOf(expect, Math.max(0, before - expect.length)) >= 0)
        finish("expected-text");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(
        new OvfkitError("BOOT_ENGINE_UNAVAILABLE", `cannot run ${binary}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({ console, ended: ended ?? "exited", exitCode: code, stderr });
    });
  });
}

/** Boots `target` (disk image, .ovf or .ova) in qemu and judges it like `bootTest`. */
export async function qemuBootTest(target: string, options: QemuBootOptions = {}): Promise<BootResult> {
  const timeoutSeconds = options.timeoutSeconds ?? 120;
  if (!(timeoutSeconds > 0)) {
    throw new OvfkitError("BAD_ARGUMENT", `--timeout must be positive (got ${timeoutSeconds})`);
  }
  const binary = options.qemuBinary ?? QEMU_BINARY;
  if (!(await qemuAvailable(binary))) {
    throw new OvfkitError(
      "BOOT_ENGINE_UNAVAILABLE",
      `--engine qemu needs ${binary}, which is not installed (apt-get install qemu-system-x86)`,
    );
  }
  const bootDisk = await resolveBootDisk(target);
  let file: WriteStream | undefined;
  try {
    const format = options.format ?? (await detectFormat(bootDisk.path));
    if (options.consoleFile) file = createWriteStream(options.consoleFile);
    const wallStart = performance.now();
    const run = await runQemu(binary, qemuArguments(bootDisk.path, format, options), options, file);
    const wallSeconds = (performance.now() - wallStart) / 1000;
    if (run.ended === "exited" && run.exitCode !== 0) {
      throw new OvfkitError(
        "BOOT_ENGINE_FAILED",
        `${binary} exited with status ${run.exitCode}: ${run.stderr.trim().split("\n").slice(-3).join(" / ")}`,
        { file: target },
      );
    }
    const { verdict, detail } = judge(run, options, timeoutSeconds);
    return {
      target,
      verdict,
      passed: verdict === "passed" || (options.expect === undefined && verdict === "guest-reset"),
      detail,
      expect: options.expect ?? null,
      instructions: 0,
      virtualSeconds: wallSeconds,
      skippedSeconds: 0,
      wallSeconds,
      mips: 0,
      consoleTail: consoleTail(run.console, CONSOLE_TAIL_LINES),
      screen: "",
      unhandledBiosCalls: [],
      sectorsWritten: 0,
    };
  } finally {
    if (file) await new Promise<void>((resolve) => file!.end(resolve));
    await bootDisk.cleanup();
  }
}

/** The verdict of a qemu run, by the rules of the embedded engine's `bootTest`. */
function judge(
  run: QemuRun,
  options: QemuBootOptions,
  timeoutSeconds: number,
): { verdict: BootVerdict; detail: string } {
  if (run.ended === "expected-text") return { verdict: "passed", detail: `found "${options.expect}"` };
  const failure = consoleFailure(run.console);
  if (failure) return { verdict: failure.verdict, detail: failure.line };
  switch (run.ended) {
    case "cancelled":
      return { verdict: "cancelled", detail: "the run was cancelled" };
    case "timeout":
      return { verdict: "timeout", detail: `no result after ${timeoutSeconds} s of host time in qemu` };
    default:
      return { verdict: "guest-reset", detail: "the guest reset or powered off (qemu -no-reboot exited)" };
  }
}
