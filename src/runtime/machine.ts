import type { DiskReader } from "../formats/disk.js";
import { Bios } from "./bios/bios.js";
import type { BiosMachine } from "./bios/context.js";
import { ROM_BASE, ROM_SIZE } from "./bios/layout.js";
import { type InterruptController, IoBus, type IrqLine, MemoryBus, type MmioHandler } from "./bus.js";
import type { Cpu, CpuHost, StopReason } from "./cpu/api.js";
import { LAPIC_SIZE, LocalApic } from "./devices/apic.js";
import { IOAPIC_BASE, LAPIC_BASE } from "./devices/apic-constants.js";
import { type TimedDevice, VirtualClock } from "./devices/clock.js";
import { I8042 } from "./devices/i8042.js";
import { attachIde, type IdeController } from "./devices/ide.js";
import { IOAPIC_SIZE, IoApic } from "./devices/ioapic.js";
import { PciBus } from "./devices/pci.js";
import { PicPair } from "./devices/pic.js";
import { Pit8254 } from "./devices/pit.js";
import { Rtc } from "./devices/rtc.js";
import { SystemPorts } from "./devices/system-ports.js";
import { Uart16550 } from "./devices/uart.js";
import { VgaText } from "./devices/vga.js";
import { attachVirtioBlk } from "./devices/virtio-blk.js";
import type { VirtioPciDevice } from "./devices/virtio-pci.js";
import { CowOverlay } from "./disk-overlay.js";

/**
 * The embedded PC: RAM, the buses, the platform devices (PIC pair, PIT,
 * RTC/CMOS, COM1, i8042, port 0x92/0x80/0xCF9, PCI host and ISA bridges,
 * VGA text), the built-in BIOS and a CPU. `run()` drives it on virtual
 * time: the CPU runs in batches up to the next device event (at most
 * MAX_BATCH instructions), devices are then told the time; a HLT with
 * interrupts enabled fast-forwards virtual time to the next event.
 */

export const DEFAULT_MEMORY_MIB = 128;
/** Longest run between device updates (bounds the lag after a poll skip). */
export const MAX_BATCH = 200_000;
/** Keep at most this much console text in memory; older text is dropped (the file sink keeps all). */
const TRANSCRIPT_LIMIT = 4 * 1024 * 1024;
/** How often (host ms) the run loop yields to the event loop so output flushes and signals arrive. */
const YIELD_EVERY_MS = 50;

export interface MachineOptions {
  /** Guest RAM in MiB (default 128). */
  memoryMiB?: number;
  /** The boot disk; it is wrapped in a copy-on-write overlay (never written). */
  disk?: DiskReader;
  /** Creates the CPU for this machine (the machine is its host). */
  createCpu: (host: CpuHost) => Cpu;
  /** Virtual nanoseconds per retired instruction (default 1: a 1 GHz guest). */
  nsPerInstruction?: number;
  /** Guest wall-clock time at power-on (ms since 1970, UTC); fixed by default so runs repeat. */
  epochMs?: number;
  /** Every byte the guest sends to COM1, as it is sent. */
  onSerial?: (byte: number) => void;
  /** A disk controller for the guest's own drivers (virtio-blk or legacy IDE); the BIOS reads the disk either way. */
  diskBus?: "virtio" | "ide";
  /**
   * Adds a local APIC, an I/O APIC and an MP table (default off: the guest
   * runs on the 8259 pair). The CPU then reports APIC in CPUID.
   */
  apic?: boolean;
}

export type MachineStopKind =
  | "expected-text"
  | "timeout"
  | "wall-timeout"
  | "guest-halted"
  | "guest-reset"
  | "cpu-fault"
  | "unimplemented-instruction"
  | "no-bootable-disk"
  | "cancelled";

export interface MachineStop {
  kind: MachineStopKind;
  /** Human-readable reason (the CPU's words for faults, the BIOS's for boot failures). */
  detail: string;
  /** For unimplemented-instruction: where and what. */
  address?: number;
  bytes?: number[];
  mode?: string;
}

export interface RunLimits {
  /** Stop when this text appears on the serial console or the BIOS screen. */
  expect?: string;
  /** Virtual-time budget in ns (deterministic). */
  maxVirtualNs?: number;
  /** Host-time budget in ms (a safety net; a stop here is not deterministic). */
  maxWallMs?: number;
  signal?: AbortSignal;
}

/** A bounded text log that remembers its total length. */
class Transcript {
  private text = "";
  dropped = 0;

  append(chunk: string): void {
    this.text += chunk;
    if (this.text.length > TRANSCRIPT_LIMIT) {
      const cut = this.text.length - TRANSCRIPT_LIMIT / 2;
      this.text = this.text.slice(cut);
      this.dropped += cut;
    }
  }

  get length(): number {
    return this.dropped + this.text.length;
  }

  /** Whether `needle` occurs in text appended at or after absolute position `from`. */
  includesFrom(needle: string, from: number): boolean {
    return this.text.indexOf(needle, Math.max(0, from - this.dropped)) >= 0;
  }

  toString(): string {
    return this.text;
  }
}

/** Read-only view of the BIOS ROM at the top of the 4 GiB space (the reset vector's home). */
class RomAlias implements MmioHandler {
  constructor(private readonly memory: MemoryBus) {}
  read(offset: number, size: 1 | 2 | 4): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.memory.ram[ROM_BASE + ((offset + i) & 0xffff)]! << (8 * i);
    return value >>> 0;
  }
  write(): void {}
}

export class Machine implements CpuHost, BiosMachine {
  readonly memory: MemoryBus;
  readonly io = new IoBus();
  readonly ramSize: number;
  readonly clock: VirtualClock;
  readonly interrupts: InterruptController;
  readonly pic: PicPair;
  readonly lapic: LocalApic | undefined;
  readonly ioapic: IoApic | undefined;
  readonly pit: Pit8254;
  readonly rtc: Rtc;
  readonly uart: Uart16550;
  readonly i8042: I8042;
  readonly systemPorts: SystemPorts;
  readonly pci: PciBus;
  readonly vga: VgaText;
  readonly bios: Bios;
  readonly cpu: Cpu;
  /** The boot disk behind its copy-on-write overlay. */
  readonly disk: CowOverlay | undefined;
  /** The disk controller of `diskBus` (its `describe()` says how far the guest's driver got). */
  readonly diskController: VirtioPciDevice | IdeController | undefined;
  /** With `apic`, the CPU reports a local APIC in CPUID. */
  readonly hasLocalApic: boolean;
  readonly apicEnabled: boolean;
  readonly serial = new Transcript();
  readonly screen = new Transcript();
  private readonly timed: TimedDevice[];
  private readonly onSerial: ((byte: number) => void) | undefined;
  private bootFailureReason: string | undefined;
  private resetReason: string | undefined;
  private expect: string | undefined;
  private expectFound = false;

  constructor(options: MachineOptions) {
    const mib = options.memoryMiB ?? DEFAULT_MEMORY_MIB;
    this.ramSize = mib * 1024 * 1024;
    this.memory = new MemoryBus(this.ramSize);
    this.memory.mapMmio(0xffff0000, ROM_SIZE, new RomAlias(this.memory));
    this.disk = options.disk ? new CowOverlay(options.disk) : undefined;
    this.onSerial = options.onSerial;
    // The CPU is created last, but the clock reads it lazily.
    this.clock = new VirtualClock(() => this.cpu.instructions, options.nsPerInstruction ?? 1);
    this.pic = new PicPair();
    this.pic.register(this.io);
    this.apicEnabled = options.apic ?? false;
    this.hasLocalApic = this.apicEnabled;
    if (this.apicEnabled) {
      this.lapic = new LocalApic(this.clock, this.pic);
      this.ioapic = new IoApic(this.lapic);
      this.memory.mapMmio(LAPIC_BASE, LAPIC_SIZE, this.lapic);
      this.memory.mapMmio(IOAPIC_BASE, IOAPIC_SIZE, this.ioapic);
      this.interrupts = this.lapic;
    } else {
      this.interrupts = this.pic;
    }
    this.pit = new Pit8254(this.clock, this.isaLine(0));
    this.pit.register(this.io);
    this.rtc = new Rtc(this.clock, this.isaLine(8), { ramSize: this.ramSize, epochMs: options.epochMs });
    this.rtc.register(this.io);
    this.uart = new Uart16550(0x3f8, this.isaLine(4), (byte) => this.serialOut(byte));
    this.uart.register(this.io);
    const hooks = {
      getA20: () => this.cpu.a20,
      setA20: (enabled: boolean) => this.setA20(enabled),
      reset: (why: string) => this.requestReset(why),
    };
    this.i8042 = new I8042(this.isaLine(1), this.isaLine(12), hooks);
    this.i8042.register(this.io);
    this.systemPorts = new SystemPorts(hooks);
    this.systemPorts.register(this.io);
    this.pci = new PciBus();
    this.pci.register(this.io);
    this.vga = new VgaText(this.memory);
    this.vga.register(this.io);
    if (this.disk && options.diskBus) {
      this.diskController =
        options.diskBus === "ide" ? attachIde(this, this.disk) : attachVirtioBlk(this, this.disk);
    }
    this.timed = this.lapic ? [this.pit, this.rtc, this.lapic] : [this.pit, this.rtc];
    this.bios = new Bios(this);
    this.cpu = options.createCpu(this);
    this.clock.onSkip = (ns) => this.advanceTsc(ns);
    this.powerOn();
  }

  /** Power-on: CPU reset state, BIOS tables and ROM in place; the reset vector runs POST. */
  private powerOn(): void {
    this.cpu.reset();
    this.bios.install();
  }

  /**
   * ISA IRQ `irq` as devices drive it: to the 8259 pair and, with APICs, to
   * the I/O APIC pin the MP table names (IRQ 0 on pin 2, others 1:1).
   */
  isaLine(irq: number): IrqLine {
    const pic = this.pic.line(irq);
    const ioapic = this.ioapic;
    if (!ioapic) return pic;
    const pin = irq === 0 ? 2 : irq;
    return {
      raise: () => {
        pic.raise();
        ioapic.setLevel(pin, true);
      },
      lower: () => {
        pic.lower();
        ioapic.setLevel(pin, false);
      },
    };
  }

  /**
   * Keeps the TSC on virtual time across skips: the CPU counts it from
   * retired instructions, so without this an idle fast-forward would leave
   * it behind the PIT and RTC (and Linux's clocksource watchdog would call
   * the TSC unstable).
   */
  private advanceTsc(ns: number): void {
    this.cpu.tscOffset += ns / this.clock.nsPerInstruction;
  }

  hypercall(service: number, cpu: Cpu): void | Promise<void> {
    return this.bios.hypercall(service, cpu);
  }

  getA20(): boolean {
    return this.cpu.a20;
  }

  setA20(enabled: boolean): void {
    this.cpu.a20 = enabled;
    this.i8042?.noteA20(enabled);
  }

  writeMemory(address: number, data: Uint8Array): void {
    const end = Math.min(this.ramSize, address + data.length);
    if (address >= end) return;
    this.memory.ram.set(data.subarray(0, end - address), address);
    // Like any other write, DMA into a page holding decoded code invalidates it.
    for (let page = address >>> 12; page <= (end - 1) >>> 12; page++) {
      if (this.memory.codePages[page]) this.memory.onCodeWrite(page);
    }
  }

  readMemory(address: number, length: number): Uint8Array {
    return this.memory.ram.subarray(address, Math.min(this.ramSize, address + length));
  }

  screenOutput(byte: number): void {
    const before = this.screen.length;
    this.screen.append(String.fromCharCode(byte));
    this.checkExpect(this.screen, before);
  }

  bootFailure(reason: string): void {
    this.bootFailureReason ??= reason;
    this.stopCpu(reason);
  }

  private requestReset(why: string): void {
    this.resetReason ??= why;
    this.stopCpu(why);
  }

  /** Ends the CPU's current batch at the next instruction boundary. */
  private stopCpu(why: string): void {
    this.cpu.requestStop(why);
  }

  private serialOut(byte: number): void {
    this.onSerial?.(byte);
    const before = this.serial.length;
    this.serial.append(String.fromCharCode(byte));
    this.checkExpect(this.serial, before);
  }

  private checkExpect(transcript: Transcript, before: number): void {
    const expect = this.expect;
    if (!expect || this.expectFound) return;
    if (transcript.includesFrom(expect, before - expect.length + 1)) {
      this.expectFound = true;
      this.stopCpu("expected text");
    }
  }

  /** The earliest pending device event (virtual ns). */
  private nextEventNs(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const device of this.timed) next = Math.min(next, device.nextEventNs());
    return next;
  }

  private advanceDevices(): void {
    const now = this.clock.now();
    for (const device of this.timed) device.advance(now);
  }

  /** Runs until the expected text, a limit, or the guest stops (halt for good, reset, fault). */
  async run(limits: RunLimits = {}): Promise<MachineStop> {
    this.expect = limits.expect || undefined;
    this.expectFound = false;
    const maxVirtualNs = limits.maxVirtualNs ?? Number.POSITIVE_INFINITY;
    const wallStart = performance.now();
    let lastYield = wallStart;
    if (
      this.expect &&
      (this.serial.includesFrom(this.expect, 0) || this.screen.includesFrom(this.expect, 0))
    ) {
      return { kind: "expected-text", detail: `found "${this.expect}"` };
    }
    for (;;) {
      const ended = this.endState();
      if (ended) return ended;
      if (limits.signal?.aborted) return { kind: "cancelled", detail: "the run was cancelled" };
      const now = this.clock.now();
      if (now >= maxVirtualNs) {
        return {
          kind: "timeout",
          detail: `no result after ${(maxVirtualNs / 1e9).toFixed(3)} s of virtual time`,
        };
      }
      const wall = performance.now();
      if (limits.maxWallMs !== undefined && wall - wallStart >= limits.maxWallMs) {
        return {
          kind: "wall-timeout",
          detail: `no result after ${(limits.maxWallMs / 1000).toFixed(1)} s of host time`,
        };
      }
      if (wall - lastYield >= YIELD_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
      const target = Math.min(this.nextEventNs(), maxVirtualNs);
      const budget = Math.max(1, Math.min(MAX_BATCH, this.clock.instructionsUntil(target)));
      const stop = this.cpu.run(budget);
      // A disk controller ends the batch when the guest starts I/O: finish it before the next instruction.
      const diskIo = this.diskController?.settle();
      if (diskIo) await diskIo;
      this.advanceDevices();
      const result = await this.handleStop(stop, maxVirtualNs);
      if (result) return result;
    }
  }

  /** A stop the machine itself caused (expected text, reset, boot failure), if any. */
  private endState(): MachineStop | undefined {
    if (this.expectFound) return { kind: "expected-text", detail: `found "${this.expect}"` };
    if (this.bootFailureReason) return { kind: "no-bootable-disk", detail: this.bootFailureReason };
    if (this.resetReason) return { kind: "guest-reset", detail: this.resetReason };
    return undefined;
  }

  private async handleStop(stop: StopReason, maxVirtualNs: number): Promise<MachineStop | undefined> {
    switch (stop.kind) {
      case "budget":
      case "stop":
        return undefined;
      case "wait":
        await stop.promise;
        return undefined;
      case "halt": {
        // HLT with IF=1: nothing happens until the next device event, so jump there.
        if (this.interrupts.hasInterrupt()) return undefined;
        if (this.pic.master.imr === 0xff) {
          return {
            kind: "guest-halted",
            detail: "HLT with every interrupt masked at the PIC: nothing can wake the CPU",
          };
        }
        const next = this.nextEventNs();
        if (!Number.isFinite(next)) {
          return {
            kind: "guest-halted",
            detail: "HLT with interrupts enabled and no timer or device event pending",
          };
        }
        const target = Math.min(next, maxVirtualNs);
        this.clock.skip(target - this.clock.now());
        this.advanceDevices();
        return undefined;
      }
      case "shutdown": {
        if (this.endState()) return undefined;
        const halted = /HLT|halt/.test(stop.why) && !/triple/i.test(stop.why);
        return {
          kind: halted ? "guest-halted" : "cpu-fault",
          // The state says where the guest stopped (a kernel's fatal error path, say).
          detail: `${stop.why}; ${this.cpu.describeState()}`,
        };
      }
      case "unimplemented":
        return {
          kind: "unimplemented-instruction",
          detail: `unimplemented instruction ${stop.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ")} at 0x${stop.address.toString(16)} (${stop.mode} mode); ${this.cpu.describeState()}`,
          address: stop.address,
          bytes: stop.bytes,
          mode: stop.mode,
        };
    }
  }
}
