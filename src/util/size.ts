import { OvfkitError } from "../errors.js";

const SUFFIXES: Record<string, number> = {
  "": 1,
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
  P: 1024 ** 5,
};

/**
 * Parses sizes the way qemu-img does: a number with an optional binary
 * suffix (`512`, `64K`, `10G`, `1.5T`, also `10GiB`/`10GB`, all powers of 1024).
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGTPB]?)(?:i?B)?\s*$/i.exec(text);
  if (!match) throw new OvfkitError("BAD_SIZE", `cannot parse size "${text}" (examples: 512, 64K, 10G)`);
  const value = Number(match[1]) * SUFFIXES[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(Math.round(value)))
    throw new OvfkitError("BAD_SIZE", `size "${text}" is too large`);
  return Math.round(value);
}

/** 10737418240 -> "10 GiB"; exact values keep their unit, others get one decimal. */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text} ${units[unit]}`;
}
