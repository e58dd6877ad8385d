/**
 * The buses that connect the CPU to RAM and devices. Devices talk to the
 * CPU only through these: port I/O, memory-mapped I/O and interrupt lines.
 * (Compare v86's split: cpu, io, devices.)
 */

/** A device register window mapped into the physical address space. */
export interface MmioHandler {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

/** A device's I/O ports. Reads of unclaimed ports return all ones. */
export interface PortHandler {
  read(port: number, size: 1 | 2 | 4): number;
  write(port: number, size: 1 | 2 | 4, value: number): void;
}

/** Physical memory: RAM in one ArrayBuffer plus MMIO windows above/below it. */
export class MemoryBus {
  readonly ram: Uint8Array;
  readonly view: DataView;
  private readonly mmio: { base: number; end: number; handler: MmioHandler }[] = [];
  /**
   * Called with the physical page number (address >>> 12) of every write
   * into RAM whose page holds decoded code, so the CPU can invalidate its
   * decode cache (self-modifying code). The CPU sets both.
   */
  codePages: Uint8Array;
  onCodeWrite: (page: number) => void = () => {};

  constructor(readonly ramSize: number) {
    this.ram = new Uint8Array(new ArrayBuffer(ramSize));
    this.view = new DataView(this.ram.buffer);
    this.codePages = new Uint8Array(Math.ceil(ramSize / 4096));
  }

  /** Maps a device window at `[base, base+length)`; it takes precedence over RAM. */
  mapMmio(base: number, length: number, handler: MmioHandler): void {
    this.mmio.push({ base, end: base + length, handler });
  }

  private findMmio(addr: number): { base: number; end: number; handler: MmioHandler } | undefined {
    for (const region of this.mmio) if (addr >= region.base && addr < region.end) return region;
    return undefined;
  }

  read8(addr: number): number {
    if (addr < this.ramSize && !this.isMmio(addr)) return this.ram[addr]!;
    return this.slowRead(addr, 1);
  }

  read16(addr: number): number {
    if (addr + 1 < this.ramSize && !this.isMmio(addr)) return this.view.getUint16(addr, true);
    return this.slowRead(addr, 2);
  }

  read32(addr: number): number {
    if (addr + 3 < this.ramSize && !this.isMmio(addr)) return this.view.getUint32(addr, true);
    return this.slowRead(addr, 4);
  }

  write8(addr: number, value: number): void {
    if (addr < this.ramSize && !this.isMmio(addr)) {
      this.ram[addr] = value;
      if (this.codePages[addr >>> 12]) this.onCodeWrite(addr >>> 12);
      return;
    }
    this.slowWrite(addr, 1, value);
  }

  write16(addr: number, value: number): void {
    if (addr + 1 < this.ramSize && !this.isMmio(addr)) {
      this.view.setUint16(addr, value, true);
      this.noteWrite(addr, 2);
      return;
    }
    this.slowWrite(addr, 2, value);
  }

  write32(addr: number, value: number): void {
    if (addr + 3 < this.ramSize && !this.isMmio(addr)) {
      this.view.setUint32(addr, value, true);
      this.noteWrite(addr, 4);
      return;
    }
    this.slowWrite(addr, 4, value);
  }

  /** MMIO windows inside the RAM range (VGA at 0xA0000, say) are checked only where mapped. */
  private mmioBelowRam = false;
  private isMmio(addr: number): boolean {
    return this.mmioBelowRam && this.findMmio(addr) !== undefined;
  }

  /** Call after mapping a window that overlaps RAM (slows every access a little). */
  enableMmioBelowRam(): void {
    this.mmioBelowRam = true;
  }

  private noteWrite(addr: number, size: number): void {
    const first = addr >>> 12;
    const last = (addr + size - 1) >>> 12;
    if (this.codePages[first]) this.onCodeWrite(first);
    if (last !== first && this.codePages[last]) this.onCodeWrite(last);
  }

  private slowRead(addr: number, size: 1 | 2 | 4): number {
    const region = this.findMmio(addr);
    if (region) return region.handler.read(addr - region.base, size);
    // Unbacked physical memory (above RAM, no device) reads as all ones, as on a PC.
    let value = 0;
    for (let i = 0; i < size; i++) {
      const a = addr + i;
      value |= (a < this.ramSize ? this.ram[a]! : 0xff) << (8 * i);
    }
    return value >>> 0;
  }

  private slowWrite(addr: number, size: 1 | 2 | 4, value: number): void {
    const region = this.findMmio(addr);
    if (region) {
      region.handler.write(addr - region.base, size, value);
      return;
    }
    for (let i = 0; i < size; i++) {
      const a = addr + i;
      if (a < this.ramSize) this.ram[a] = (value >>> (8 * i)) & 0xff;
    }
    this.noteWrite(addr, size);
  }
}

/** The I/O port space (0x0000-0xFFFF). */
export class IoBus {
  private readonly handlers = new Map<number, PortHandler>();
  /** Ports read or written that nothing claims (for diagnosis). */
  readonly unclaimed = new Set<number>();

  register(first: number, count: number, handler: PortHandler): void {
    for (let port = first; port < first + count; port++) this.handlers.set(port, handler);
  }

  unregister(first: number, count: number): void {
    for (let port = first; port < first + count; port++) this.handlers.delete(port);
  }

  read(port: number, size: 1 | 2 | 4): number {
    const handler = this.handlers.get(port);
    if (handler) return handler.read(port, size);
    this.unclaimed.add(port);
    return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
  }

  write(port: number, size: 1 | 2 | 4, value: number): void {
    const handler = this.handlers.get(port);
    if (handler) handler.write(port, size, value);
    else this.unclaimed.add(port);
  }
}

/**
 * What the CPU asks at instruction boundaries (when IF=1): is an external
 * interrupt pending, and which vector (the INTA cycle). Implemented by the
 * PIC pair or the local APIC, wired by the machine.
 */
export interface InterruptController {
  hasInterrupt(): boolean;
  acknowledge(): number;
}

/** A device's interrupt line (edge or level, as the device raises it). */
export interface IrqLine {
  raise(): void;
  lower(): void;
}
