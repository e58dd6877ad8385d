import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import type { DiskReader } from "../../src/formats/disk.js";

/**
 * Test helpers of the VHD suites: hashing a reader's whole virtual disk
 * without writing it anywhere, and patching bytes of a file copy.
 */

const CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

/**
 * sha256 of the virtual disk a reader presents, streamed: data ranges are
 * read, zero and unallocated ranges hashed as zero buffers (what `qemu-img
 * convert -O raw` writes there).
 */
export async function sha256OfReader(reader: DiskReader): Promise<string> {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(CHUNK);
  for await (const extent of reader.map()) {
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += CHUNK) {
      const n = Math.min(CHUNK, end - offset);
      hash.update(extent.kind === "data" ? await reader.read(offset, n, buf) : ZEROS.subarray(0, n));
    }
  }
  return hash.digest("hex");
}

/** Overwrites bytes of `path` at `offset` (corrupting copies of real images). */
export function patchFile(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

export function readBytes(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}
