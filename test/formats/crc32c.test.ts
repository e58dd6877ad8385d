import { describe, expect, it } from "vitest";
import { crc32c, crc32cImplementation, crc32cTable, nativeCrc32c } from "../../src/formats/crc32c.js";

/**
 * Known answers from RFC 3720 (iSCSI) Appendix B.4 "CRC Examples", plus the
 * classic "123456789" check value of CRC-32C (0xE3069283).
 */
const incrementing = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const decrementing = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));
/** RFC 3720 B.4: an iSCSI Read (10) command PDU. */
const iscsiRead = Buffer.from(
  "01c00000" +
    "00000000".repeat(3) +
    "14000000" +
    "00000400" +
    "00000014" +
    "00000018" +
    "28000000" +
    "00000000" +
    "02000000" +
    "00000000",
  "hex",
);
const VECTORS: Array<[string, Buffer, number]> = [
  ["32 bytes of zeros", Buffer.alloc(32), 0x8a9136aa],
  ["32 bytes of 0xff", Buffer.alloc(32, 0xff), 0x62a8ab43],
  ["32 incrementing bytes", incrementing, 0x46dd794e],
  ["32 decrementing bytes", decrementing, 0x113fdb5c],
  ["an iSCSI read command PDU", iscsiRead, 0xd9963a56],
  ['"123456789"', Buffer.from("123456789"), 0xe3069283],
];

describe("crc32c", () => {
  for (const [name, data, expected] of VECTORS) {
    it(`table implementation: ${name}`, () => {
      expect(crc32cTable(data)).toBe(expected);
    });
    it(`chosen implementation (${crc32cImplementation}): ${name}`, () => {
      expect(crc32c(data)).toBe(expected);
    });
  }

  it("continues across pieces split at every length (both implementations)", () => {
    const data = Buffer.from(Array.from({ length: 61 }, (_, i) => (i * 37 + 11) & 0xff));
    const whole = crc32cTable(data);
    for (let cut = 0; cut <= data.length; cut++) {
      const head = data.subarray(0, cut);
      const tail = data.subarray(cut);
      expect(crc32cTable(tail, crc32cTable(head))).toBe(whole);
      expect(crc32c(tail, crc32c(head))).toBe(whole);
    }
  });

  it("accepts plain Uint8Array views at an offset", () => {
    const backing = new Uint8Array(40);
    backing.set(incrementing, 8);
    expect(crc32c(backing.subarray(8))).toBe(0x46dd794e);
  });

  it("native and table agree on a large random-looking buffer", () => {
    const data = Buffer.alloc(1 << 20);
    let x = 0x12345678;
    for (let i = 0; i < data.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      data[i] = x >>> 24;
    }
    const table = crc32cTable(data);
    expect(crc32c(data)).toBe(table);
    if (nativeCrc32c) expect(nativeCrc32c(data) >>> 0).toBe(table);
  });
});
