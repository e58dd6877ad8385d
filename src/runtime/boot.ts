import { createWriteStream, type WriteStream } from "node:fs";
import { extname } from "node:path";
import { OvfkitError } from "../errors.js";
import { openDisk } from "../formats/index.js";
import { X86Cpu } from "./cpu/cpu.js";
import { DEFAULT_MEMORY_MIB, Machine, type MachineStop, type MachineStopKind } from "./machine.js";

/**
 * The boot test: boot a disk in the embedded PC, watch the serial console
 * (and the BIOS screen) for an expected text, and give a verdict. Virtual
 * time makes a run deterministic: the same disk and options give the same
 * console output and instruction count.
 */

export type BootVerdict =
  | "passed"
  | "no-bootable-disk"
  | "cpu-fault"
  | "unimplemented-instruction"
  | "timeout"
  | "guest-halted"
  | "guest-reset"
  | "kernel-panic"
  | "cancelled";

export interface BootTestOptions {
  /** Text that means success; when omitted, a clean halt or reset ends the run successfully. */
  expect?: string;
  /** Virtual seconds before the verdict is `timeout` (default 120). */
  timeoutSeconds?: number;
  /** Host seconds before giving up (default: no limit beyond `timeoutSeconds`×20, at least 600). */
  wallTimeoutSeconds?: number;
  /** Guest RAM in MiB (default 128). */
  memoryMiB?: number;
  /** Disk format, when detection should be skipped. */
  format?: string;
  /** Receives each serial byte as the guest sends it (the live console). */
  onConsole?: (chunk: Buffer) => void;
  /** Also write the whole serial console to this file. */
  consoleFile?: string;
  /** Virtual nanoseconds per instruction (default 1). */
  nsPerInstruction?: number;
  signal?: AbortSignal;
}

export interface BootResult {
  target: string;
  verdict: BootVerdict;
  /** True when the verdict is a success (`passed`, or a clean end without --expect). */
  passed: boolean;
  /** Why the run ended, in words (fault state, BIOS reason, the text found). */
  detail: string;
  expect: string | null;
  instructions: number;
  /** Virtual time at the end (s), including idle fast-forward. */
  virtualSeconds: number;
  /** Virtual time skipped while the guest was idle or polling (s). */
  skippedSeconds: number;
  wallSeconds: number;
  /** Millions of instructions per host second. */
  mips: number;
  /** The last lines of the serial console. */
  consoleTail: string;
  /** The text screen (VGA 80×25), trailing blanks trimmed. */
  screen: string;
  /** For unimplemented-instruction. */
  instruction?: { address: number; bytes: number[]; mode: string };
  /** BIOS calls the guest made that the built-in BIOS does not implement. */
  unhandledBiosCalls: { vector: number; ax: number }[];
  /** Sectors the guest wrote (kept in the in-memory overlay, never on disk). */
  sectorsWritten: number;
}

const CONSOLE_TAIL_LINES = 40;
const PANIC_PATTERN = /Kernel panic - not syncing[^\n]*/;

/** OVF/OVA targets need the OVF model's disk lookup (References → Disk → first hard disk). */
function checkTarget(target: string): void {
  const ext = extname(target).toLowerCase();
  if (ext === ".ova" || ext === ".ovf") {
    throw new OvfkitError(
      "BOOT_TARGET_UNSUPPORTED",
      "booting an OVF/OVA package is not supported yet: pass its disk file (.vmdk, .vhd, raw)",
      { file: target },
    );
  }
}

function tail(text: string, lines: number): string {
  const all = text.replace(/\r\n?/g, "\n").split("\n");
  return all.slice(-lines).join("\n");
}

function verdictOf(stop: MachineStop, expect: string | undefined, consoleText: string): BootVerdict {
  const map: Record<MachineStopKind, BootVerdict> = {
    "expected-text": "passed",
    timeout: "timeout",
    "wall-timeout": "timeout",
    "guest-halted": "guest-halted",
    "guest-reset": "guest-reset",
    "cpu-fault": "cpu-fault",
    "unimplemented-instruction": "unimplemented-instruction",
    "no-bootable-disk": "no-bootable-disk",
    cancelled: "cancelled",
  };
  const verdict = map[stop.kind];
  if (verdict !== "passed" && expect !== undefined && PANIC_PATTERN.test(consoleText)) return "kernel-panic";
  return verdict;
}

/** Boots `target` (a disk image) and reports what happened. */
export async function bootTest(target: string, options: BootTestOptions = {}): Promise<BootResult> {
  checkTarget(target);
  const timeoutSeconds = options.timeoutSeconds ?? 120;
  if (!(timeoutSeconds > 0))
    throw new OvfkitError("BAD_ARGUMENT", `--timeout must be positive (got ${timeoutSeconds})`);
  const memoryMiB = options.memoryMiB ?? DEFAULT_MEMORY_MIB;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 2 || memoryMiB > 3072) {
    throw new OvfkitError(
      "BAD_ARGUMENT",
      `--memory must be an integer number of MiB between 2 and 3072 (got ${memoryMiB})`,
    );
  }
  const reader = await openDisk(target, options.format ? { format: options.format } : {});
  let file: WriteStream | undefined;
  try {
    if (options.consoleFile) file = createWriteStream(options.consoleFile);
    const pending: number[] = [];
    const flush = () => {
      if (pending.length === 0) return;
      const chunk = Buffer.from(pending);
      pending.length = 0;
      options.onConsole?.(chunk);
      file?.write(chunk);
    };
    const machine = new Machine({
      memoryMiB,
      disk: reader,
      createCpu: (host) => new X86Cpu(host),
      nsPerInstruction: options.nsPerInstruction,
      onSerial: (byte) => {
        pending.push(byte);
        if (byte === 0x0a || pending.length >= 4096) flush();
      },
    });
    const wallStart = performance.now();
    const flushTimer = setInterval(flush, 100);
    let stop: MachineStop;
    try {
      stop = await machine.run({
        expect: options.expect,
        maxVirtualNs: timeoutSeconds * 1e9,
        maxWallMs: (options.wallTimeoutSeconds ?? Math.max(600, timeoutSeconds * 20)) * 1000,
        signal: options.signal,
      });
    } finally {
      clearInterval(flushTimer);
      flush();
    }
    const wallSeconds = (performance.now() - wallStart) / 1000;
    const consoleText = machine.serial.toString();
    const verdict = verdictOf(stop, options.expect, consoleText);
    const cleanEnd = verdict === "guest-halted" || verdict === "guest-reset";
    const panic = consoleText.match(PANIC_PATTERN)?.[0];
    const instructions = machine.cpu.instructions;
    const result: BootResult = {
      target,
      verdict,
      passed: verdict === "passed" || (options.expect === undefined && cleanEnd),
      detail: verdict === "kernel-panic" && panic ? panic : stop.detail,
      expect: options.expect ?? null,
      instructions,
      virtualSeconds: machine.clock.now() / 1e9,
      skippedSeconds: machine.clock.skipped / 1e9,
      wallSeconds,
      mips: wallSeconds > 0 ? instructions / wallSeconds / 1e6 : 0,
      consoleTail: tail(consoleText, CONSOLE_TAIL_LINES),
      screen: machine.vga.textDump(),
      unhandledBiosCalls: [...machine.bios.unhandled],
      sectorsWritten:
        machine.disk && "writtenSectors" in machine.disk ? Number(machine.disk.writtenSectors) : 0,
    };
    if (stop.address !== undefined && stop.bytes) {
      result.instruction = { address: stop.address, bytes: stop.bytes, mode: stop.mode ?? "" };
    }
    return result;
  } finally {
    if (file) await new Promise<void>((resolve) => file!.end(resolve));
    await reader.close();
  }
}
