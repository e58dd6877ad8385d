import { createHash } from "node:crypto";
import { type DiskReader, STREAM_CHUNK } from "../../src/formats/index.js";

const ZEROS = Buffer.alloc(STREAM_CHUNK);

/**
 * sha256 of a reader's whole virtual disk, streamed through the reader (no
 * temporary file): data extents are read, holes are hashed as zeros.
 */
export async function streamSha256(reader: DiskReader): Promise<string> {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(STREAM_CHUNK);
  for await (const extent of reader.map()) {
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += STREAM_CHUNK) {
      const n = Math.min(STREAM_CHUNK, end - offset);
      hash.update(extent.kind === "data" ? await reader.read(offset, n, buf) : ZEROS.subarray(0, n));
    }
  }
  return hash.digest("hex");
}

/** Images with more virtual bytes than this are fully hashed only in the long suite. */
export const FULL_HASH_LIMIT = 2 * 1024 * 1024 * 1024;
