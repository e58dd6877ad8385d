import { spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
}

/** Whether `binary` can be run (it answers --version). */
export function qemuAvailable(binary = QEMU_BINARY): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(binary, ["--version"], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("exit", (code) => resolve(code === 0));
  });
}

/** qemu's command line for one boot (exported for the docs and tests); `qmpSocket` adds a QMP monitor. */
export function qemuArguments(
  disk: string,
  format: string,
  options: QemuBootOptions,
  qmpSocket?: string,
): string[] {
  const qmp = qmpSocket ? ["-qmp", `unix:${qmpSocket.replaceAll(",", ",,")},server=on,wait=off`] : [];
  return [
    ...qmp,
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
  ended: "expected-text" | "exited" | "timeout" | "cancelled" | "halted";
  exitCode: number | null;
  stderr: string;
}

/** How often the QMP watcher samples the CPU state. */
const HALT_POLL_MS = 250;

/**
 * Watches qemu's CPU through QMP (`info registers`): a CPU halted (HLT=1)
 * with interrupts disabled (EFLAGS.IF = 0) never runs again, which the
 * embedded engine reports as `guest-halted`; qemu itself would just wait.
 * Two samples in a row are required, so a HLT about to be woken is not one.
 */
class HaltWatcher {
  private socket: Socket | undefined;
  private buffer = "";
  private reply: ((line: string) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private haltedSamples = 0;

  constructor(
    private readonly path: string,
    private readonly onHalted: () => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), HALT_POLL_MS);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.socket?.destroy();
  }

  private busy = false;
  private async poll(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      if (!this.socket) await this.connect();
      const answer = await this.command({
        execute: "human-monitor-command",
        arguments: { "command-line": "info registers" },
      });
      const registers = typeof answer.return === "string" ? answer.return : "";
      const flags = /\b[ER]FL=([0-9a-f]+)/i.exec(registers);
      const halted =
        /\bHLT=1\b/.test(registers) && flags !== null && (Number.parseInt(flags[1]!, 16) & 0x200) === 0;
      this.haltedSamples = halted ? this.haltedSamples + 1 : 0;
      if (this.haltedSamples >= 2 && !this.stopped) this.onHalted();
    } catch {
      // Not listening yet, or qemu is exiting: try again at the next tick.
      this.socket?.destroy();
      this.socket = undefined;
    } finally {
      this.busy = false;
    }
  }

  private connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.path);
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        this.buffer += chunk;
        let newline = this.buffer.indexOf("\n");
        while (newline >= 0) {
          const line = this.buffer.slice(0, newline).trim();
          this.buffer = this.buffer.slice(newline + 1);
          // Replies carry "return" or "error"; the greeting and events are skipped.
          if (/^\{"(return|error)"/.test(line)) this.reply?.(line);
          newline = this.buffer.indexOf("\n");
        }
      });
      socket.once("error", reject);
      socket.once("connect", () => {
        this.socket = socket;
        this.command({ execute: "qmp_capabilities" }).then(() => resolve(), reject);
      });
    });
  }

  private command(request: object): Promise<{ return?: unknown }> {
    return new Promise((resolve, reject) => {
      const socket = this.socket;
      if (!socket) {
        reject(new Error("QMP not connected"));
        return;
      }
      const timeout = setTimeout(() => reject(new Error("QMP timeout")), 5000);
      this.reply = (line) => {
        clearTimeout(timeout);
        this.reply = undefined;
        resolve(JSON.parse(line) as { return?: unknown });
      };
      socket.write(`${JSON.stringify(request)}\n`);
    });
  }
}

function runQemu(
  binary: string,
  args: string[],
  options: QemuBootOptions,
  file?: WriteStream,
  qmpSocket?: string,
): Promise<QemuRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    const watcher = qmpSocket ? new HaltWatcher(qmpSocket, () => finish("halted")) : undefined;
    watcher?.start();
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
      watcher?.stop();
      reject(
        new OvfkitError("BOOT_ENGINE_UNAVAILABLE", `cannot run ${binary}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      watcher?.stop();
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
  const qmpDir = await mkdtemp(join(tmpdir(), "ovfkit-qmp-"));
  try {
    const format = options.format ?? (await detectFormat(bootDisk.path));
    if (options.consoleFile) file = createWriteStream(options.consoleFile);
    const wallStart = performance.now();
    const qmpSocket = join(qmpDir, "qmp.sock");
    const run = await runQemu(
      binary,
      qemuArguments(bootDisk.path, format, options, qmpSocket),
      options,
      file,
      qmpSocket,
    );
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
    await rm(qmpDir, { recursive: true, force: true });
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
    case "halted":
      return {
        verdict: "guest-halted",
        detail: "the CPU halted with interrupts disabled (qemu: HLT=1, IF=0): nothing can wake it",
      };
    case "timeout":
      return { verdict: "timeout", detail: `no result after ${timeoutSeconds} s of host time in qemu` };
    default:
      return { verdict: "guest-reset", detail: "the guest reset or powered off (qemu -no-reboot exited)" };
  }
}
