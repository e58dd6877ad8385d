import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { collectMap } from "../../src/formats/disk.js";
import { CowOverlay } from "../../src/runtime/disk-overlay.js";
import { bufferDisk } from "./harness.js";

describe("copy-on-write disk overlay", () => {
  it("reads through to the base until written, then returns the written bytes; the base never changes", async () => {
    const base = Buffer.alloc(8192);
    for (let i = 0; i < base.length; i++) base[i] = i % 251;
    const original = Buffer.from(base);
    const overlay = new CowOverlay(bufferDisk(base));
    expect((await overlay.read(100, 50)).equals(original.subarray(100, 150))).toBe(true);
    await overlay.write(1000, Buffer.alloc(30, 0xaa)); // partial sector: read-modify-write
    await overlay.write(4096, Buffer.alloc(1024, 0xbb)); // two whole sectors
    expect(base.equals(original)).toBe(true);
    const all = await overlay.read(0, 8192);
    const expected = Buffer.from(original);
    expected.fill(0xaa, 1000, 1030);
    expected.fill(0xbb, 4096, 5120);
    expect(all.equals(expected)).toBe(true);
    expect(overlay.writtenSectors).toBe(4); // 1000-1029 straddles sectors 1 and 2
    await expect(overlay.write(8190, Buffer.alloc(4))).rejects.toMatchObject({ code: "WRITE_OUT_OF_RANGE" });
    await expect(overlay.read(8190, 4)).rejects.toMatchObject({ code: "READ_OUT_OF_RANGE" });
  });

  it("maps written sectors as data inside the base's extents", async () => {
    const overlay = new CowOverlay(bufferDisk(Buffer.alloc(4096)));
    await overlay.write(1024, Buffer.alloc(512, 1));
    const map = await collectMap(overlay);
    expect(map).toEqual([{ offset: 0, length: 4096, kind: "data" }]);
  });

  it("matches a plain buffer model under random writes and reads", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            offset: fc.integer({ min: 0, max: 6000 }),
            length: fc.integer({ min: 1, max: 2000 }),
            byte: fc.integer({ min: 0, max: 255 }),
          }),
          { maxLength: 12 },
        ),
        async (writes) => {
          const base = Buffer.alloc(8192, 7);
          const model = Buffer.from(base);
          const overlay = new CowOverlay(bufferDisk(base));
          for (const w of writes) {
            const length = Math.min(w.length, 8192 - w.offset);
            await overlay.write(w.offset, Buffer.alloc(length, w.byte));
            model.fill(w.byte, w.offset, w.offset + length);
          }
          expect((await overlay.read(0, 8192)).equals(model)).toBe(true);
          expect((await overlay.read(513, 3000)).equals(model.subarray(513, 3513))).toBe(true);
          expect(base.every((b) => b === 7)).toBe(true);
        },
      ),
      { numRuns: 100, seed: 7 },
    );
  });
});
