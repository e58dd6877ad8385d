import { asOvfkitError } from "../../errors.js";
import type { IoBus, IrqLine, MemoryBus, MmioHandler, PortHandler } from "../bus.js";
import {
  PCI_COMMAND,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  type PciBus,
  PciFunction,
  PIIX_PIRQ_ROUTE,
} from "./pci.js";
import { type Chain, legacyQueueLayout, MAX_QUEUE_SIZE, SplitVirtqueue } from "./virtqueue.js";

/**
 * The virtio-pci transport (OASIS VIRTIO 1.2 §4.1) for a transitional
 * device: the legacy register window in I/O BAR0 (§4.1.4.8, what
 * `virtio_pci_legacy` drives) and the modern vendor capabilities (§4.1.4:
 * common, notify, ISR and device configuration) in memory BAR4, which
 * Linux's `virtio_pci_modern` prefers when present. Interrupts are INTx
 * only: INTA# goes through the PIIX PIRQ routing registers of the ISA
 * bridge to an 8259 line, level-style (raised while the ISR is non-zero,
 * lowered when the driver reads the ISR).
 *
 * The device status history is kept: it is the portability signal (did a
 * driver bind and reach DRIVER_OK?) that the boot verdict reports.
 */

export const VIRTIO_PCI_VENDOR = 0x1af4;

// Device status bits (§2.1).
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

// Transport feature bits (§6).
export const VIRTIO_F_RING_INDIRECT_DESC = 28;
export const VIRTIO_F_VERSION_1 = 32;

// ISR status bits (§4.1.4.5).
const ISR_QUEUE = 1;
const ISR_CONFIG = 2;

// Legacy register window in BAR0 (§4.1.4.8, without MSI-X).
const LEGACY_HOST_FEATURES = 0x00;
const LEGACY_GUEST_FEATURES = 0x04;
const LEGACY_QUEUE_PFN = 0x08;
const LEGACY_QUEUE_SIZE = 0x0c;
const LEGACY_QUEUE_SELECT = 0x0e;
const LEGACY_QUEUE_NOTIFY = 0x10;
const LEGACY_STATUS = 0x12;
const LEGACY_ISR = 0x13;
export const LEGACY_DEVICE_CONFIG = 0x14;
const LEGACY_BAR_SIZE = 0x40;

// Common configuration structure (§4.1.4.3).
const COMMON_DFSELECT = 0x00;
const COMMON_DF = 0x04;
const COMMON_GFSELECT = 0x08;
const COMMON_GF = 0x0c;
const COMMON_MSIX = 0x10;
const COMMON_NUMQ = 0x12;
const COMMON_STATUS = 0x14;
const COMMON_CFGGENERATION = 0x15;
const COMMON_Q_SELECT = 0x16;
const COMMON_Q_SIZE = 0x18;
const COMMON_Q_MSIX = 0x1a;
const COMMON_Q_ENABLE = 0x1c;
const COMMON_Q_NOFF = 0x1e;
const COMMON_Q_DESCLO = 0x20;
const COMMON_Q_DESCHI = 0x24;
const COMMON_Q_AVAILLO = 0x28;
const COMMON_Q_AVAILHI = 0x2c;
const COMMON_Q_USEDLO = 0x30;
const COMMON_Q_USEDHI = 0x34;
const COMMON_SIZE = 0x38;
/** No MSI-X vector (§4.1.5.1.2). */
const NO_VECTOR = 0xffff;

// Layout of memory BAR4, one 4 KiB page per structure (as qemu does).
const MODERN_BAR = 4;
const MODERN_BAR_SIZE = 0x4000;
const MODERN_COMMON = 0x0000;
const MODERN_ISR = 0x1000;
const MODERN_DEVICE = 0x2000;
const MODERN_NOTIFY = 0x3000;
const NOTIFY_OFF_MULTIPLIER = 4;

// Vendor-specific PCI capability (§4.1.4): cap_vndr, cap_next, cap_len, cfg_type, bar, id, pad[2], offset, length.
const PCI_CAP_ID_VNDR = 0x09;
const PCI_STATUS_CAP_LIST = 0x10;
const PCI_CAPABILITY_LIST = 0x34;
const CAP_START = 0x40;
const CFG_TYPE_COMMON = 1;
const CFG_TYPE_NOTIFY = 2;
const CFG_TYPE_ISR = 3;
const CFG_TYPE_DEVICE = 4;

const PCI_BAR0 = 0x10;
const PCI_COMMAND_IO = 1;
const PCI_COMMAND_MEMORY = 2;
const PCI_BAR_IO = 1;
const INTX_PIN_A = 1;

/** The parts of the machine a disk controller attaches to (Machine has them all). */
export interface DiskControllerHost {
  memory: MemoryBus;
  io: IoBus;
  pci: PciBus;
  /** ISA IRQ `irq` as the machine wires it (8259 pair, and the I/O APIC when present). */
  isaLine(irq: number): IrqLine;
  clock: { now(): number };
  /** The CPU; `requestStop` (when it has one) ends its batch at the next instruction boundary. */
  cpu: object;
}

/** Ends the host CPU's current batch, so the machine settles device I/O before the next instruction. */
export function stopHostCpu(host: DiskControllerHost, why: string): void {
  (host.cpu as { requestStop?: (why: string) => void }).requestStop?.(why);
}

/** What a virtio device type (block, ...) gives the transport. */
export interface VirtioBackend {
  /** Virtio device ID (§5): 2 = block. */
  readonly virtioDeviceId: number;
  /** Transitional PCI device ID (§4.1.2.3): 0x1000 + ID - 1 ... 0x1001 for block. */
  readonly pciDeviceId: number;
  readonly classCode: number;
  readonly queueCount: number;
  /** Entries per queue (a power of two, at most 32768). */
  readonly queueSize: number;
  /** Device-type feature bits as [bits 0-31, bits 32-63]; the transport adds its own. */
  readonly features: readonly [number, number];
  /** The device-specific configuration space (little-endian, read by the driver). */
  readonly config: Uint8Array;
  /** Serves one request chain of queue `queue`; resolves to the bytes written into it. */
  handle(queue: number, chain: Chain): Promise<number>;
}

/** One status value the driver wrote, with the virtual time it wrote it. */
export interface StatusChange {
  status: number;
  atNs: number;
}

/** What the driver did with the device so far: the portability signals. */
export interface VirtioActivity {
  /** PCI configuration space reads of this function (enumeration by the guest). */
  configReads: number;
  /** Register accesses through BAR0 or the modern BAR (a driver touched the device). */
  registerAccesses: number;
  /** Which interface the driver used: none yet, legacy (BAR0) or modern (capabilities). */
  interfaceUsed: "none" | "legacy" | "modern";
  statusHistory: StatusChange[];
  /** Queues the driver set up (a PFN written, or queue_enable). */
  queuesSetUp: number;
  requests: number;
  /** Why the device entered DEVICE_NEEDS_RESET, if it did. */
  error?: string;
  driverOk: boolean;
}

export interface VirtioPciOptions {
  memory: MemoryBus;
  io: IoBus;
  pci: PciBus;
  /** PCI slot on bus 0 (function 0). */
  slot: number;
  /** The 8259 line for ISA IRQ `irq` (INTA# is routed there through the PIRQ registers). */
  irqLine: (irq: number) => IrqLine;
  /** Base of I/O BAR0 as firmware would assign it. */
  ioBase: number;
  /** Base of memory BAR4 as firmware would assign it; omitted = legacy-only device. */
  mmioBase?: number;
  /** Virtual time now (ns), for the status history. */
  now?: () => number;
  /** Ends the CPU's batch so the machine settles the device's I/O (keeps runs deterministic). */
  requestStop?: () => void;
}

/** A 64-bit queue address written as two 32-bit halves (§4.1.4.3). */
function withLowHalf(address: number, low: number): number {
  return Math.floor(address / 2 ** 32) * 2 ** 32 + (low >>> 0);
}

function withHighHalf(address: number, high: number): number {
  return (high >>> 0) * 2 ** 32 + (address % 2 ** 32);
}

function splitBytes(value: number, size: number, into: Uint8Array, at: number): void {
  for (let i = 0; i < size; i++) into[at + i] = (value >>> (8 * i)) & 0xff;
}

export class VirtioPciDevice extends PciFunction {
  readonly queues: SplitVirtqueue[];
  readonly activity: VirtioActivity = {
    configReads: 0,
    registerAccesses: 0,
    interfaceUsed: "none",
    statusHistory: [],
    queuesSetUp: 0,
    requests: 0,
    driverOk: false,
  };
  private status = 0;
  private isr = 0;
  private driverFeatures: [number, number] = [0, 0];
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private queueSelect = 0;
  private ioBase = 0;
  private mmioBase = 0;
  private readonly mappedMmio = new Set<number>();
  private raisedIrq = -1;
  /** Bumped on reset: completions of requests from before a reset are dropped. */
  private generation = 0;
  private pending: Promise<void> | undefined;
  private readonly deviceFeatures: [number, number];

  constructor(
    readonly backend: VirtioBackend,
    private readonly options: VirtioPciOptions,
  ) {
    super({ vendor: VIRTIO_PCI_VENDOR, device: backend.pciDeviceId, classCode: backend.classCode });
    const view = new DataView(this.config.buffer);
    view.setUint16(0x2c, VIRTIO_PCI_VENDOR, true); // subsystem vendor
    view.setUint16(0x2e, backend.virtioDeviceId, true); // subsystem ID = virtio device ID (§4.1.2.1)
    this.config[PCI_INTERRUPT_PIN] = INTX_PIN_A;
    const modern = options.mmioBase !== undefined;
    this.deviceFeatures = [
      (backend.features[0] | (1 << VIRTIO_F_RING_INDIRECT_DESC)) >>> 0,
      (backend.features[1] | (modern ? 1 << (VIRTIO_F_VERSION_1 - 32) : 0)) >>> 0,
    ];
    this.queues = Array.from(
      { length: backend.queueCount },
      () => new SplitVirtqueue(options.memory, Math.min(MAX_QUEUE_SIZE, backend.queueSize)),
    );
    // BAR0: I/O, LEGACY_BAR_SIZE bytes (address bits below the size read as zero when sized).
    this.setBarMask(PCI_BAR0, LEGACY_BAR_SIZE, PCI_BAR_IO);
    view.setUint32(PCI_BAR0, (options.ioBase | PCI_BAR_IO) >>> 0, true);
    let command = PCI_COMMAND_IO;
    if (modern) {
      this.setBarMask(PCI_BAR0 + 4 * MODERN_BAR, MODERN_BAR_SIZE, 0);
      view.setUint32(PCI_BAR0 + 4 * MODERN_BAR, options.mmioBase!, true);
      command |= PCI_COMMAND_MEMORY;
      this.writeCapabilities();
    }
    // Firmware-like set-up: BARs assigned and decoded, the routed IRQ in the interrupt line.
    view.setUint16(PCI_COMMAND, command, true);
    this.config[PCI_INTERRUPT_LINE] = this.routedIrq() & 0xff;
    options.pci.add(options.slot, 0, this);
    this.updateBars();
  }

  /** Makes the address bits of a BAR of `size` bytes writable (sizing reads back ~(size-1)). */
  private setBarMask(offset: number, size: number, fixedLowBits: number): void {
    const mask = ~(size - 1) >>> 0;
    splitBytes(mask, 4, this.writeMask, offset);
    this.config[offset] = fixedLowBits;
  }

  private writeCapabilities(): void {
    const caps: { type: number; offset: number; length: number; extra?: number }[] = [
      { type: CFG_TYPE_COMMON, offset: MODERN_COMMON, length: COMMON_SIZE },
      { type: CFG_TYPE_ISR, offset: MODERN_ISR, length: 1 },
      { type: CFG_TYPE_DEVICE, offset: MODERN_DEVICE, length: this.backend.config.length },
      {
        type: CFG_TYPE_NOTIFY,
        offset: MODERN_NOTIFY,
        length: NOTIFY_OFF_MULTIPLIER * this.backend.queueCount,
        extra: NOTIFY_OFF_MULTIPLIER,
      },
    ];
    let at = CAP_START;
    this.config[PCI_CAPABILITY_LIST] = at;
    this.config[0x06] = (this.config[0x06] ?? 0) | PCI_STATUS_CAP_LIST;
    caps.forEach((cap, i) => {
      const length = cap.extra === undefined ? 16 : 20;
      const next = i === caps.length - 1 ? 0 : at + length;
      this.config.set([PCI_CAP_ID_VNDR, next, length, cap.type, MODERN_BAR, 0, 0, 0], at);
      splitBytes(cap.offset, 4, this.config, at + 8);
      splitBytes(cap.length, 4, this.config, at + 12);
      if (cap.extra !== undefined) splitBytes(cap.extra, 4, this.config, at + 16);
      at = next;
    });
  }

  // --- PCI configuration space -------------------------------------------------

  override read(offset: number, size: 1 | 2 | 4): number {
    this.activity.configReads++;
    return super.read(offset, size);
  }

  override write(offset: number, size: 1 | 2 | 4, value: number): void {
    super.write(offset, size, value);
    this.updateBars();
  }

  /** Re-maps BAR0's ports and BAR4's window after the guest moved them or changed decoding. */
  private updateBars(): void {
    const view = new DataView(this.config.buffer);
    const command = view.getUint16(PCI_COMMAND, true);
    const ioBase = command & PCI_COMMAND_IO ? view.getUint32(PCI_BAR0, true) & 0xfffc : 0;
    if (ioBase !== this.ioBase) {
      if (this.ioBase) this.options.io.unregister(this.ioBase, LEGACY_BAR_SIZE);
      // A BAR being sized (all ones) is not a decode address.
      if (ioBase && ioBase !== (0xffff & ~(LEGACY_BAR_SIZE - 1))) {
        this.options.io.register(ioBase, LEGACY_BAR_SIZE, this.legacyPorts);
        this.ioBase = ioBase;
      } else {
        this.ioBase = 0;
      }
    }
    if (this.options.mmioBase === undefined) return;
    const bar = view.getUint32(PCI_BAR0 + 4 * MODERN_BAR, true) & ~0xf;
    const sizing = bar >>> 0 === ~(MODERN_BAR_SIZE - 1) >>> 0;
    this.mmioBase = command & PCI_COMMAND_MEMORY && bar && !sizing ? bar >>> 0 : 0;
    if (this.mmioBase && !this.mappedMmio.has(this.mmioBase)) {
      // MemoryBus cannot unmap: each window answers only while the BAR still points at it.
      const base = this.mmioBase;
      this.mappedMmio.add(base);
      this.options.memory.mapMmio(base, MODERN_BAR_SIZE, this.modernWindow(base));
    }
  }

  private modernWindow(base: number): MmioHandler {
    return {
      read: (offset, size) =>
        this.mmioBase === base
          ? this.modernRead(offset, size)
          : size === 4
            ? 0xffffffff
            : (1 << (8 * size)) - 1,
      write: (offset, _size, value) => {
        if (this.mmioBase === base) this.modernWrite(offset, value);
      },
    };
  }

  // --- Interrupts ----------------------------------------------------------------

  /** ISA IRQ of INTA#: PIRQ[(slot + pin - 1) mod 4] of the PIIX ISA bridge (qemu's pc swizzle). */
  private routedIrq(): number {
    const bridge = this.options.pci.get(1, 0);
    const pirq = (this.options.slot + INTX_PIN_A - 1) & 3;
    const route = bridge?.config[PIIX_PIRQ_ROUTE + pirq] ?? 0x80;
    return route & 0x80 ? -1 : route & 0x0f;
  }

  private setIsr(bits: number): void {
    this.isr |= bits;
    if (this.raisedIrq >= 0) return;
    const irq = this.routedIrq();
    if (irq < 0) return;
    this.raisedIrq = irq;
    this.options.irqLine(irq).raise();
  }

  /** Reading the ISR clears it and deasserts INTx (§4.1.4.5). */
  private readIsr(): number {
    const value = this.isr;
    this.isr = 0;
    if (this.raisedIrq >= 0) {
      this.options.irqLine(this.raisedIrq).lower();
      this.raisedIrq = -1;
    }
    return value;
  }

  // --- Status and features --------------------------------------------------------

  get deviceStatus(): number {
    return this.status;
  }

  private setStatus(value: number): void {
    value &= 0xff;
    this.activity.statusHistory.push({ status: value, atNs: this.options.now?.() ?? 0 });
    if (this.activity.statusHistory.length > 64) this.activity.statusHistory.splice(1, 1);
    if (value === 0) {
      this.resetDevice();
      return;
    }
    if (value & STATUS_FEATURES_OK && !(this.status & STATUS_FEATURES_OK) && !this.featuresAcceptable()) {
      value &= ~STATUS_FEATURES_OK; // §2.2.2: the driver re-reads and sees it was refused.
    }
    this.status = value;
    if (value & STATUS_DRIVER_OK) this.activity.driverOk = true;
  }

  private featuresAcceptable(): boolean {
    return (
      (this.driverFeatures[0] & ~this.deviceFeatures[0]) === 0 &&
      (this.driverFeatures[1] & ~this.deviceFeatures[1]) === 0
    );
  }

  /** The features the driver accepted (bits 0-31, 32-63). */
  get negotiatedFeatures(): readonly [number, number] {
    return this.driverFeatures;
  }

  private resetDevice(): void {
    this.status = 0;
    this.generation++;
    this.driverFeatures = [0, 0];
    this.queueSelect = 0;
    for (const queue of this.queues) queue.reset();
    this.readIsr();
  }

  /** Puts the device in DEVICE_NEEDS_RESET (§2.1.2) and tells the driver through a config interrupt. */
  private fail(reason: string): void {
    this.activity.error ??= reason;
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    if (this.status & STATUS_DRIVER_OK) this.setIsr(ISR_CONFIG);
  }

  // --- Queues -------------------------------------------------------------------------

  private get selectedQueue(): SplitVirtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  private setLegacyPfn(pfn: number): void {
    const queue = this.selectedQueue;
    if (!queue) return;
    this.activity.interfaceUsed = "legacy";
    if (pfn === 0) {
      queue.reset();
      return;
    }
    const layout = legacyQueueLayout(pfn, queue.size);
    queue.descAddress = layout.desc;
    queue.availAddress = layout.avail;
    queue.usedAddress = layout.used;
    this.enableQueue(queue);
  }

  private enableQueue(queue: SplitVirtqueue): void {
    try {
      queue.validateLayout();
    } catch (error) {
      this.fail(asOvfkitError(error).message);
      return;
    }
    queue.enabled = true;
    this.activity.queuesSetUp++;
  }

  /** The driver kicked queue `index`: serve its requests asynchronously (disk reads are async). */
  notify(index: number): void {
    const queue = this.queues[index];
    if (!queue?.enabled || this.status & STATUS_DEVICE_NEEDS_RESET) return;
    const generation = this.generation;
    const previous = this.pending ?? Promise.resolve();
    const work = previous.then(() => this.drain(index, queue, generation));
    this.pending = work;
    void work.finally(() => {
      if (this.pending === work) this.pending = undefined;
    });
    this.options.requestStop?.();
  }

  /** The device's outstanding I/O, for the machine to await between CPU batches. */
  settle(): Promise<void> | undefined {
    return this.pending;
  }

  private async drain(index: number, queue: SplitVirtqueue, generation: number): Promise<void> {
    let completed = 0;
    for (;;) {
      if (generation !== this.generation || this.status & STATUS_DEVICE_NEEDS_RESET) break;
      let chain: Chain | undefined;
      try {
        chain = queue.next();
      } catch (error) {
        this.fail(asOvfkitError(error).message);
        break;
      }
      if (!chain) break;
      this.activity.requests++;
      let written: number;
      try {
        written = await this.backend.handle(index, chain);
      } catch (error) {
        // The backend reports request errors in the request's status byte; anything else is a bad chain.
        this.fail(asOvfkitError(error).message);
        break;
      }
      if (generation !== this.generation) return;
      queue.putUsed(chain.head, written);
      completed++;
    }
    if (completed > 0 && generation === this.generation && !queue.interruptSuppressed) this.setIsr(ISR_QUEUE);
  }

  // --- Legacy interface (BAR0) -------------------------------------------------------

  /** BAR0's ports (the class's own read/write are PCI configuration space). */
  private readonly legacyPorts: PortHandler = {
    read: (port, size) => this.legacyRead(port, size),
    write: (port, _size, value) => this.legacyWrite(port, value),
  };

  private legacyRead(port: number, size: 1 | 2 | 4): number {
    const offset = port - this.ioBase;
    this.activity.registerAccesses++;
    if (offset >= LEGACY_DEVICE_CONFIG) return this.readDeviceConfig(offset - LEGACY_DEVICE_CONFIG, size);
    switch (offset) {
      case LEGACY_HOST_FEATURES:
        return this.deviceFeatures[0];
      case LEGACY_GUEST_FEATURES:
        return this.driverFeatures[0];
      case LEGACY_QUEUE_PFN: {
        const queue = this.selectedQueue;
        return queue?.enabled ? Math.floor(queue.descAddress / 4096) : 0;
      }
      case LEGACY_QUEUE_SIZE:
        return this.selectedQueue?.size ?? 0;
      case LEGACY_QUEUE_SELECT:
        return this.queueSelect;
      case LEGACY_STATUS:
        return this.status;
      case LEGACY_ISR:
        return this.readIsr();
      default:
        return 0;
    }
  }

  private legacyWrite(port: number, value: number): void {
    const offset = port - this.ioBase;
    this.activity.registerAccesses++;
    if (offset < LEGACY_DEVICE_CONFIG) this.activity.interfaceUsed = "legacy";
    switch (offset) {
      case LEGACY_GUEST_FEATURES:
        // Legacy drivers see only bits 0-31 and never VERSION_1.
        this.driverFeatures = [(value & this.deviceFeatures[0]) >>> 0, 0];
        return;
      case LEGACY_QUEUE_PFN:
        this.setLegacyPfn(value >>> 0);
        return;
      case LEGACY_QUEUE_SELECT:
        this.queueSelect = value & 0xffff;
        return;
      case LEGACY_QUEUE_NOTIFY:
        this.notify(value & 0xffff);
        return;
      case LEGACY_STATUS:
        this.setStatus(value);
        return;
      default:
        // Host features, queue size, ISR and the block config are read-only.
        return;
    }
  }

  private readDeviceConfig(offset: number, size: 1 | 2 | 4): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= (this.backend.config[offset + i] ?? 0) << (8 * i);
    return value >>> 0;
  }

  // --- Modern interface (BAR4) ---------------------------------------------------------

  private modernRead(offset: number, size: 1 | 2 | 4): number {
    this.activity.registerAccesses++;
    if (offset >= MODERN_DEVICE && offset < MODERN_DEVICE + 0x1000) {
      return this.readDeviceConfig(offset - MODERN_DEVICE, size);
    }
    if (offset === MODERN_ISR) return this.readIsr();
    if (offset >= MODERN_COMMON && offset < MODERN_COMMON + COMMON_SIZE) return this.commonRead(offset);
    return 0;
  }

  private modernWrite(offset: number, value: number): void {
    this.activity.registerAccesses++;
    if (offset >= MODERN_NOTIFY && offset < MODERN_NOTIFY + 0x1000) {
      this.notify(Math.floor((offset - MODERN_NOTIFY) / NOTIFY_OFF_MULTIPLIER));
      return;
    }
    if (offset >= MODERN_COMMON && offset < MODERN_COMMON + COMMON_SIZE)
      this.commonWrite(offset, value >>> 0);
  }

  private commonRead(offset: number): number {
    const queue = this.selectedQueue;
    switch (offset) {
      case COMMON_DFSELECT:
        return this.deviceFeatureSelect;
      case COMMON_DF:
        return this.deviceFeatures[this.deviceFeatureSelect] ?? 0;
      case COMMON_GFSELECT:
        return this.driverFeatureSelect;
      case COMMON_GF:
        return this.driverFeatures[this.driverFeatureSelect] ?? 0;
      case COMMON_MSIX:
      case COMMON_Q_MSIX:
        return NO_VECTOR;
      case COMMON_NUMQ:
        return this.queues.length;
      case COMMON_STATUS:
        return this.status;
      case COMMON_CFGGENERATION:
        return 0;
      case COMMON_Q_SELECT:
        return this.queueSelect;
      case COMMON_Q_SIZE:
        return queue?.size ?? 0;
      case COMMON_Q_ENABLE:
        return queue?.enabled ? 1 : 0;
      case COMMON_Q_NOFF:
        return this.queueSelect;
      case COMMON_Q_DESCLO:
        return (queue?.descAddress ?? 0) % 2 ** 32;
      case COMMON_Q_DESCHI:
        return Math.floor((queue?.descAddress ?? 0) / 2 ** 32);
      case COMMON_Q_AVAILLO:
        return (queue?.availAddress ?? 0) % 2 ** 32;
      case COMMON_Q_AVAILHI:
        return Math.floor((queue?.availAddress ?? 0) / 2 ** 32);
      case COMMON_Q_USEDLO:
        return (queue?.usedAddress ?? 0) % 2 ** 32;
      case COMMON_Q_USEDHI:
        return Math.floor((queue?.usedAddress ?? 0) / 2 ** 32);
      default:
        return 0;
    }
  }

  private commonWrite(offset: number, value: number): void {
    this.activity.interfaceUsed = "modern";
    const queue = this.selectedQueue;
    switch (offset) {
      case COMMON_DFSELECT:
        this.deviceFeatureSelect = value;
        return;
      case COMMON_GFSELECT:
        this.driverFeatureSelect = value;
        return;
      case COMMON_GF:
        if (this.driverFeatureSelect < 2) this.driverFeatures[this.driverFeatureSelect] = value;
        return;
      case COMMON_STATUS:
        this.setStatus(value);
        return;
      case COMMON_Q_SELECT:
        this.queueSelect = value & 0xffff;
        return;
      case COMMON_Q_SIZE:
        // §4.1.4.3.2: the driver may shrink the queue to a power of two.
        if (queue && !queue.enabled && value > 0 && value <= queue.maxSize && (value & (value - 1)) === 0) {
          queue.size = value;
        }
        return;
      case COMMON_Q_ENABLE:
        if (queue && value === 1 && !queue.enabled) this.enableQueue(queue);
        return;
      case COMMON_Q_DESCLO:
        if (queue) queue.descAddress = withLowHalf(queue.descAddress, value);
        return;
      case COMMON_Q_AVAILLO:
        if (queue) queue.availAddress = withLowHalf(queue.availAddress, value);
        return;
      case COMMON_Q_USEDLO:
        if (queue) queue.usedAddress = withLowHalf(queue.usedAddress, value);
        return;
      // High halves: kept, so an address above RAM fails the layout check at queue_enable.
      case COMMON_Q_DESCHI:
        if (queue) queue.descAddress = withHighHalf(queue.descAddress, value);
        return;
      case COMMON_Q_AVAILHI:
        if (queue) queue.availAddress = withHighHalf(queue.availAddress, value);
        return;
      case COMMON_Q_USEDHI:
        if (queue) queue.usedAddress = withHighHalf(queue.usedAddress, value);
        return;
      default:
        return;
    }
  }

  /** One line for verdicts: how far the guest's driver got with this device. */
  describe(): string {
    const a = this.activity;
    const statuses = a.statusHistory.map((s) => `0x${s.status.toString(16)}`).join(" → ") || "none";
    const parts = [
      `PCI config reads ${a.configReads}`,
      `driver interface ${a.interfaceUsed}`,
      `status writes ${statuses}`,
      `DRIVER_OK ${a.driverOk ? "yes" : "no"}`,
      `queues set up ${a.queuesSetUp}`,
      `requests ${a.requests}`,
    ];
    if (a.error) parts.push(`device error: ${a.error}`);
    return parts.join(", ");
  }
}
