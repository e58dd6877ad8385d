/** Where the APICs live in the physical address space (the PC defaults). */
export const LAPIC_BASE = 0xfee00000;
export const IOAPIC_BASE = 0xfec00000;
