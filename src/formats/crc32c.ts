import { createRequire } from "node:module";

/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every VHDX header, region table and log entry (MS-VHDX §2.2.2, §2.2.3,
 * §2.3.1.1). Not the CRC-32 of zip/zlib: same algorithm, other polynomial.
 *
 * Two implementations behind one function:
 * - `crc32cTable`: a portable slice-by-8 table implementation in
 *   TypeScript (8 table look-ups per 8 input bytes),
 * - `@node-rs/crc32`'s native crc32c (SSE4.2 / ARMv8 CRC instructions)
 *   when that optional package loads on this platform.
 * `crc32c` picks the native one when present; both give identical results
 * (test/formats/crc32c.test.ts checks them against RFC 3720 vectors).
 */

const POLY_REFLECTED = 0x82f63b78;

/** TABLES[k][b]: CRC of byte b followed by k zero bytes (slice-by-8). */
const TABLES: Uint32Array[] = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let b = 0; b < 256; b++) {
    let crc = b;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLY_REFLECTED : crc >>> 1;
    tables[0][b] = crc >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) {
      const prev = tables[k - 1][b];
      tables[k][b] = ((prev >>> 8) ^ tables[0][prev & 0xff]) >>> 0;
    }
  }
  return tables;
}

/**
 * Slice-by-8 CRC-32C of `data`, continuing from `initial` (the CRC of the
 * bytes before, 0 for a fresh start).
 */
export function crc32cTable(data: Uint8Array, initial = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let crc = ~initial >>> 0;
  let i = 0;
  const end8 = data.length - (data.length % 8);
  for (; i < end8; i += 8) {
    const lo = (crc ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>> 0;
    crc =
      t7[lo & 0xff] ^
      t6[(lo >>> 8) & 0xff] ^
      t5[(lo >>> 16) & 0xff] ^
      t4[lo >>> 24] ^
      t3[data[i + 4]] ^
      t2[data[i + 5]] ^
      t1[data[i + 6]] ^
      t0[data[i + 7]];
  }
  for (; i < data.length; i++) crc = (crc >>> 8) ^ t0[(crc ^ data[i]) & 0xff];
  return ~crc >>> 0;
}

type NativeCrc32c = (input: Buffer, initialState?: number) => number;

/** The native implementation, or undefined when the optional package is missing or fails to load. */
export const nativeCrc32c: NativeCrc32c | undefined = loadNative();

function loadNative(): NativeCrc32c | undefined {
  if (process.env.OVFKIT_NO_NATIVE_CRC32C) return undefined;
  try {
    const require = createRequire(import.meta.url);
    const mod = require("@node-rs/crc32") as { crc32c?: NativeCrc32c };
    if (typeof mod.crc32c !== "function") return undefined;
    // Self-test with the RFC 3720 "32 bytes of zeros" vector before trusting it.
    return mod.crc32c(Buffer.alloc(32)) === 0x8a9136aa ? mod.crc32c : undefined;
  } catch {
    return undefined;
  }
}

/** CRC-32C of `data` (continuing from `initial`), native when available. */
export function crc32c(data: Uint8Array, initial = 0): number {
  if (nativeCrc32c) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return nativeCrc32c(buf, initial) >>> 0;
  }
  return crc32cTable(data, initial);
}

/** Which implementation `crc32c` uses (for `info`/benchmarks). */
export const crc32cImplementation: "native (@node-rs/crc32)" | "slice-by-8 (TypeScript)" = nativeCrc32c
  ? "native (@node-rs/crc32)"
  : "slice-by-8 (TypeScript)";
