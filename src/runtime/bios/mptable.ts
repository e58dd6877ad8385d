import { IOAPIC_BASE } from "../devices/apic-constants.js";

/**
 * The MP configuration table (Intel MultiProcessor Specification 1.4,
 * ch. 4): a floating pointer "_MP_" in the BIOS ROM area pointing to a
 * "PCMP" table with one processor, the PCI and ISA buses, one I/O APIC
 * and the interrupt wiring — ISA IRQ n on I/O APIC pin n except IRQ 0 on
 * pin 2 (the PIT through the ISA override, as on every PC), the 8259 as
 * ExtINT on LINT0 and NMI on LINT1. Linux reads it to enable the I/O APIC
 * (without it, or ACPI, the kernel ignores the I/O APIC).
 */

export const MP_FLOATING_POINTER_OFFSET = 0xfc00; // in the F segment, 16-byte aligned
const LAPIC_ADDRESS = 0xfee00000;
const SPEC_REVISION = 4; // MP spec 1.4
const ENTRY_PROCESSOR = 0;
const ENTRY_BUS = 1;
const ENTRY_IOAPIC = 2;
const ENTRY_IO_INTERRUPT = 3;
const ENTRY_LOCAL_INTERRUPT = 4;
const INT_TYPE_INT = 0;
const INT_TYPE_NMI = 1;
const INT_TYPE_EXTINT = 3;
const PCI_BUS = 0;
const ISA_BUS = 1;
const IOAPIC_ID = 1;
const IOAPIC_VERSION = 0x11;
const LAPIC_VERSION = 0x14;

function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** The floating pointer and the configuration table, to be placed at `physical` (16-byte aligned). */
export function buildMpTable(physical: number, cpuSignature = 0x0633, cpuFeatures = 0x0000_0201): Uint8Array {
  const entries: number[][] = [];
  const u16 = (v: number) => [v & 0xff, (v >> 8) & 0xff];
  const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  const text = (s: string, n: number) => [...Buffer.from(s.padEnd(n, " ").slice(0, n), "latin1")];
  // Processor: LAPIC 0, enabled bootstrap processor.
  entries.push([
    ENTRY_PROCESSOR,
    0,
    LAPIC_VERSION,
    0x03,
    ...u32(cpuSignature),
    ...u32(cpuFeatures),
    ...u32(0),
    ...u32(0),
  ]);
  entries.push([ENTRY_BUS, PCI_BUS, ...text("PCI", 6)]);
  entries.push([ENTRY_BUS, ISA_BUS, ...text("ISA", 6)]);
  entries.push([ENTRY_IOAPIC, IOAPIC_ID, IOAPIC_VERSION, 0x01, ...u32(IOAPIC_BASE)]);
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue; // the cascade has no pin
    const pin = irq === 0 ? 2 : irq;
    entries.push([ENTRY_IO_INTERRUPT, INT_TYPE_INT, ...u16(0), ISA_BUS, irq, IOAPIC_ID, pin]);
  }
  entries.push([ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, ...u16(0), ISA_BUS, 0, 0xff, 0]);
  entries.push([ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, ...u16(0), ISA_BUS, 0, 0xff, 1]);
  const body = entries.flat();
  const headerSize = 44;
  const tableLength = headerSize + body.length;
  const table = new Uint8Array(tableLength);
  table.set([...Buffer.from("PCMP", "latin1"), ...u16(tableLength), SPEC_REVISION, 0]);
  table.set(text("OVFKIT", 8), 8);
  table.set(text("EMBEDDED PC", 12), 16);
  table.set([...u32(0), ...u16(0), ...u16(entries.length), ...u32(LAPIC_ADDRESS), ...u16(0), 0, 0], 28);
  table.set(body, headerSize);
  table[7] = checksum(table);
  const pointer = new Uint8Array(16);
  pointer.set([...Buffer.from("_MP_", "latin1"), ...u32(physical + 16), 1, SPEC_REVISION, 0, 0, 0, 0, 0, 0]);
  pointer[10] = checksum(pointer);
  const out = new Uint8Array(16 + tableLength);
  out.set(pointer, 0);
  out.set(table, 16);
  return out;
}
