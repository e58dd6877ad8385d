/**
 * DSP0004 (CIM) programmatic units as OVF uses them for capacities and
 * RASD AllocationUnits: `byte * 2^30`, `byte*10^9`, `hertz * 10^6`, plus the
 * legacy names real exporters write (`MegaBytes`, `GigaBytes`, `MB`).
 */

export interface ParsedUnit {
  base: "byte" | "bit" | "hertz" | "count";
  /** Multiplier to the base unit. */
  factor: number;
}

const LEGACY: Record<string, ParsedUnit> = {
  byte: { base: "byte", factor: 1 },
  bytes: { base: "byte", factor: 1 },
  kilobytes: { base: "byte", factor: 2 ** 10 },
  kb: { base: "byte", factor: 2 ** 10 },
  megabytes: { base: "byte", factor: 2 ** 20 },
  mb: { base: "byte", factor: 2 ** 20 },
  gigabytes: { base: "byte", factor: 2 ** 30 },
  gb: { base: "byte", factor: 2 ** 30 },
  terabytes: { base: "byte", factor: 2 ** 40 },
  tb: { base: "byte", factor: 2 ** 40 },
  hertz: { base: "hertz", factor: 1 },
  hz: { base: "hertz", factor: 1 },
  megahertz: { base: "hertz", factor: 1e6 },
  mhz: { base: "hertz", factor: 1e6 },
  gigahertz: { base: "hertz", factor: 1e9 },
  ghz: { base: "hertz", factor: 1e9 },
  bit: { base: "bit", factor: 1 },
  count: { base: "count", factor: 1 },
};

const PROGRAMMATIC = /^(byte|bit|hertz)((?:\*\d+\^-?\d+|\*\d+)*)$/;

/** Parses a unit string; undefined when it is not one OVF importers understand. */
export function parseUnits(units: string): ParsedUnit | undefined {
  const compact = units.trim().toLowerCase().replace(/\s+/g, "");
  const legacy = LEGACY[compact];
  if (legacy) return legacy;
  const match = PROGRAMMATIC.exec(compact);
  if (!match) return undefined;
  let factor = 1;
  for (const term of match[2]!.split("*").filter(Boolean)) {
    const [base, exponent] = term.split("^");
    factor *= exponent === undefined ? Number(base) : Number(base) ** Number(exponent);
  }
  return Number.isFinite(factor) && factor > 0 ? { base: match[1] as ParsedUnit["base"], factor } : undefined;
}

/** Parses a non-negative decimal integer attribute/field ("" or signs are rejected). */
export function parseInteger(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*\d+\s*$/.test(text)) return undefined;
  const value = Number(text.trim());
  // beyond 2^53 the value is approximate, which is fine for comparisons; digits-only was checked above
  return Number.isFinite(value) ? value : undefined;
}

const UNSIGNED_LONG_MAX = 2n ** 64n - 1n;

/** True for an xs:unsignedLong (what DSP8023 types File ovf:size as): 0 ≤ n ≤ 2^64-1, digits only. */
export function isUnsignedLong(text: string | undefined): boolean {
  if (text === undefined || !/^\s*\d+\s*$/.test(text)) return false;
  return BigInt(text.trim()) <= UNSIGNED_LONG_MAX;
}

/** A Disk's capacity in bytes (`ovf:capacity` × `ovf:capacityAllocationUnits`, default byte). */
export function capacityBytes(capacity: string | undefined, units: string | undefined): number | undefined {
  const amount = parseInteger(capacity);
  if (amount === undefined) return undefined;
  const unit = units === undefined ? { base: "byte" as const, factor: 1 } : parseUnits(units);
  if (unit?.base !== "byte") return undefined;
  return amount * unit.factor;
}
