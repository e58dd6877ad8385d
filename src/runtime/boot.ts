import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { asOvfkitError, OvfkitError } from "../errors.js";
import type { DiskReader } from "../formats/disk.js";
import { openDisk } from "../formats/index.js";
import type { OvfEnvelope } from "../ovf/model.js";
import { folderPackage, ovaPackage } from "../ovf/package-view.js";
import { parseOvf, readOvf } from "../ovf/parse.js";
import { parseHostResource } from "../ovf/rules/references.js";
import { X86Cpu } from "./cpu/cpu.js";
import { DEFAULT_MEMORY_MIB, Machine, type MachineStop, type MachineStopKind } from "./machine.js";
import { consoleFailure } from "./verdict.js";

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
  | "no-root-device"
  | "cancelled";

export interface BootTestOptions {
  /** Text that means success; when omitted, a guest reset (reboot or power-off) ends the run successfully. */
  expect?: string;
  /** Virtual seconds before the verdict is `timeout` (default 120). */
  timeoutSeconds?: number;
  /** Host seconds before giving up (default: no limit beyond `timeoutSeconds`×20, at least 600). */
  wallTimeoutSeconds?: number;
  /** Guest RAM in MiB (default 128). */
  memoryMiB?: number;
  /** The controller the boot disk sits on for the guest's drivers (default virtio). */
  diskBus?: "virtio" | "ide";
  /** Disk format, when detection should be skipped. */
  format?: string;
  /** Receives each serial byte as the guest sends it (the live console). */
  onConsole?: (chunk: Buffer) => void;
  /** Also write the whole serial console to this file. */
  consoleFile?: string;
  /** Virtual nanoseconds per instruction (default 1). */
  nsPerInstruction?: number;
  /** Add a local APIC, an I/O APIC and an MP table (default: the 8259 pair only). */
  apic?: boolean;
  signal?: AbortSignal;
}

export interface BootResult {
  target: string;
  verdict: BootVerdict;
  /** True when the verdict is a success (`passed`, or `guest-reset` without `expect`). */
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

/** RASD ResourceType of a disk drive (DMTF CIM_ResourceAllocationSettingData). */
const RESOURCE_DISK_DRIVE = 17;

/** The href of the first hard disk: the first disk-drive Item's HostResource, else the first Disk. */
export function firstHardDiskHref(envelope: OvfEnvelope, file: string): string {
  const fileHref = (fileId: string | undefined): string | undefined => {
    const entry = envelope.files.find((f) => f.id === fileId);
    if (entry?.compression || entry?.chunkSize) {
      throw new OvfkitError(
        "BOOT_DISK_UNSUPPORTED",
        `the boot disk file ${entry.href ?? fileId} is ${entry.compression ? "compressed" : "chunked"} in the package: convert it first`,
        { file },
      );
    }
    return entry?.href;
  };
  for (const { item } of envelope.items) {
    if (item.resourceType !== RESOURCE_DISK_DRIVE) continue;
    for (const host of item.hostResources) {
      const ref = parseHostResource(host.value);
      if (ref?.kind === "disk") {
        const href = fileHref(envelope.disks.find((d) => d.diskId === ref.id)?.fileRef);
        if (href) return href;
      } else if (ref?.kind === "file") {
        const href = fileHref(ref.id);
        if (href) return href;
      }
    }
  }
  const href = fileHref(envelope.disks[0]?.fileRef);
  if (href) return href;
  throw new OvfkitError("BOOT_NO_DISK", "the package describes no hard disk with a file to boot from", {
    file,
  });
}

/** A disk file to open, and what to remove afterwards (an OVA's disk is copied out of the tar). */
export interface BootDisk {
  path: string;
  cleanup(): Promise<void>;
}

/**
 * The boot disk of `target`: a disk image as is; for an .ovf, the file of
 * its first hard disk beside it; for an .ova, that member streamed out of
 * the tar into a temporary file (removed after the run).
 */
export async function resolveBootDisk(target: string): Promise<BootDisk> {
  const ext = extname(target).toLowerCase();
  const none = async () => {};
  if (ext === ".ovf") {
    const envelope = await readOvf(target);
    const href = firstHardDiskHref(envelope, target);
    const path = folderPackage(target).pathOf(href);
    if (!path)
      throw new OvfkitError("BOOT_NO_DISK", `the boot disk ${href} is outside the package`, { file: target });
    return { path, cleanup: none };
  }
  if (ext !== ".ova") return { path: target, cleanup: none };
  const { view, descriptor } = await ovaPackage(target);
  if (view.compressed) {
    throw new OvfkitError(
      "BOOT_DISK_UNSUPPORTED",
      "the OVA is gzip-compressed: its disk cannot be read in place",
      {
        file: target,
      },
    );
  }
  if (!descriptor)
    throw new OvfkitError("BOOT_NO_DISK", "the OVA holds no .ovf descriptor", { file: target });
  const href = firstHardDiskHref(parseOvf(descriptor, { file: target }), target);
  const member = view.members?.find((m) => m.type === "file" && m.name.replace(/^\.\//, "") === href);
  if (!member) throw new OvfkitError("BOOT_NO_DISK", `the OVA has no member ${href}`, { file: target });
  const dir = await mkdtemp(join(tmpdir(), "ovfkit-boot-"));
  const path = join(dir, basename(href));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    if (member.size > 0) {
      await pipeline(
        createReadStream(target, { start: member.dataOffset, end: member.dataOffset + member.size - 1 }),
        createWriteStream(path),
      );
    } else {
      await writeFile(path, Buffer.alloc(0));
    }
  } catch (error) {
    await cleanup();
    throw asOvfkitError(error, target);
  }
  return { path, cleanup };
}

function tail(text: string, lines: number): string {
  const all = text.replace(/\r\n?/g, "\n").split("\n");
  return all.slice(-lines).join("\n");
}

function verdictOf(stop: MachineStop, consoleText: string): BootVerdict {
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
  const failure = verdict === "passed" ? undefined : consoleFailure(consoleText);
  if (failure) return failure.verdict;
  if (verdict !== "passed" && PANIC_PATTERN.test(consoleText)) return "kernel-panic";
  return verdict;
}

/** Boots `target` (a disk image, or an .ovf/.ova: its first hard disk) and reports what happened. */
export async function bootTest(target: string, options: BootTestOptions = {}): Promise<BootResult> {
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
  const bootDisk = await resolveBootDisk(target);
  let reader: DiskReader;
  try {
    reader = await openDisk(bootDisk.path, options.format ? { format: options.format } : {});
  } catch (error) {
    await bootDisk.cleanup();
    throw error;
  }
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
      apic: options.apic,
      diskBus: options.diskBus ?? "virtio",
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
    const verdict = verdictOf(stop, consoleText);
    // Without --expect, a reset (an appliance without ACPI powering off) ends the run cleanly;
    // a CPU halted with interrupts off is how guests die (e.g. a 64-bit kernel on a CPU without long mode).
    const cleanEnd = verdict === "guest-reset";
    const panic = consoleText.match(PANIC_PATTERN)?.[0];
    const instructions = machine.cpu.instructions;
    // DRIVER_OK on the boot disk is the portability signal: every verdict says how far the driver got.
    const diskNote = machine.diskController ? `; disk: ${machine.diskController.describe()}` : "";
    const result: BootResult = {
      target,
      verdict,
      passed: verdict === "passed" || (options.expect === undefined && cleanEnd),
      detail: `${verdict === "no-root-device" ? (consoleFailure(consoleText)?.line ?? stop.detail) : verdict === "kernel-panic" && panic ? panic : stop.detail}${diskNote}`,
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
    await bootDisk.cleanup();
  }
}
