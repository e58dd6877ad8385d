import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { OvfkitError } from "../errors.js";

/**
 * Deflate (zlib format, RFC 1950) on worker threads, so a writer uses every
 * core. Any format that compresses independent blocks (VMDK grains, qcow2
 * clusters) can use it:
 *
 *   const pool = new DeflatePool({ threads, level });
 *   for await (const { meta, compressed } of pool.ordered(batches)) ...   // input order kept
 *   await pool.close();
 *
 * Memory stays flat: at most `maxInFlight` batches exist at once, and each
 * batch travels to a worker and back in one reusable slab (transferred, not
 * copied), so a long conversion allocates no new buffers.
 *
 * The worker code is an inline string run with `{ eval: true }`: ovfkit is
 * bundled by esbuild and its tests run the TypeScript sources under vitest,
 * so a separate worker file would exist in neither case.
 */
/** Sampled order-0 entropy above which a block is stored instead of deflated (random data: ~7.99). */
const INCOMPRESSIBLE_BITS = 7.9;

const WORKER_CODE = `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
const counts = new Uint32Array(256);
const log2 = Math.log2;
// Order-0 entropy (bits per byte) of every 4th byte: ~0.1 ms per 64 KiB. Random data (already
// compressed or encrypted) scores ~8; deflating it at any level costs ~20x more than storing it
// and saves nothing, so such blocks are stored (level 0), as zstd and lz4 also do.
function looksIncompressible(item) {
  if (item.length < 4096) return false;
  counts.fill(0);
  let n = 0;
  for (let i = 0; i < item.length; i += 4) { counts[item[i]]++; n++; }
  let bits = 0;
  for (let b = 0; b < 256; b++) { const c = counts[b]; if (c) bits -= (c / n) * log2(c / n); }
  return bits > ${INCOMPRESSIBLE_BITS};
}
parentPort.on("message", (job) => {
  try {
    // Compress every item first, then copy the results over the slab (inputs are no longer
    // needed), so the same memory goes back and forth between threads instead of new buffers.
    const slab = new Uint8Array(job.slab);
    const results = job.spans.map(([at, length]) => {
      const item = slab.subarray(at, at + length);
      const level = job.detectIncompressible && looksIncompressible(item) ? 0 : job.level;
      return (job.raw ? zlib.deflateRawSync : zlib.deflateSync)(item, { level });
    });
    const total = results.reduce((sum, r) => sum + r.length, 0);
    const target = total <= slab.length ? slab : new Uint8Array(total);
    const spans = [];
    let at = 0;
    for (const r of results) { target.set(r, at); spans.push([at, r.length]); at += r.length; }
    parentPort.postMessage({ seq: job.seq, slab: target.buffer, spans }, [target.buffer]);
  } catch (error) {
    parentPort.postMessage({ seq: job.seq, error: String(error && error.message || error) });
  }
});
`;

export interface DeflatePoolOptions {
  /** Worker threads; default: all cores (`os.availableParallelism()`). */
  threads?: number;
  /** zlib level 0-9. */
  level?: number;
  /** Raw deflate (RFC 1951, qcow2) instead of the zlib wrapper (VMDK). */
  raw?: boolean;
  /** Batches queued or being compressed at once (memory bound); default 2 per thread. */
  maxInFlight?: number;
  /** Store blocks that look like random data instead of deflating them (default true). */
  detectIncompressible?: boolean;
}

/** A batch's items side by side in one ArrayBuffer, as [offset, length] spans. */
type Spans = [number, number][];

interface JobResult {
  seq: number;
  slab?: ArrayBuffer;
  spans?: Spans;
  error?: string;
}

/** Room a deflated item may need beyond its input size (stored blocks: 5 bytes per 64 KiB, plus the zlib wrapper). */
const GROWTH_PER_ITEM = 64;
/** Slabs smaller than this are rounded up to it so that they can be reused for any batch up to 1 MiB. */
const STANDARD_SLAB = 1024 * 1024 + 64 * GROWTH_PER_ITEM;

interface PendingJob {
  resolve: (out: { slab: ArrayBuffer; spans: Spans }) => void;
  reject: (error: Error) => void;
}

export class DeflatePool {
  readonly threads: number;
  readonly level: number;
  readonly maxInFlight: number;
  private readonly raw: boolean;
  private readonly detectIncompressible: boolean;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: { seq: number; slab: ArrayBuffer; spans: Spans }[] = [];
  /** Slabs returned by the consumer, reused for the next batches (memory stays flat). */
  private readonly freeSlabs: ArrayBuffer[] = [];
  private readonly pending = new Map<number, PendingJob>();
  private nextSeq = 0;
  private failure: Error | undefined;

  constructor(options: DeflatePoolOptions = {}) {
    this.threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
    this.level = options.level ?? 6;
    this.raw = options.raw ?? false;
    this.detectIncompressible = options.detectIncompressible ?? true;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? this.threads * 2);
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) {
      throw new OvfkitError("BAD_OPTION", `compression level must be 0-9, got ${options.level}`);
    }
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(WORKER_CODE, { eval: true });
      worker.on("message", (result: JobResult) => this.onResult(worker, result));
      worker.on("error", (error) => this.fail(error));
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  /**
   * Compresses each item of a batch separately. The items are copied into a
   * slab, so the caller may reuse its buffers as soon as this returns. The
   * results are views of one slab: hand it back with `release` once they
   * have been written.
   */
  async compress(items: readonly Uint8Array[]): Promise<{ slab: ArrayBuffer; compressed: Uint8Array[] }> {
    if (this.failure) throw this.failure;
    const seq = this.nextSeq++;
    const needed = items.reduce((sum, item) => sum + item.length + GROWTH_PER_ITEM, 0);
    const slab = this.takeSlab(needed);
    const bytes = new Uint8Array(slab);
    const spans: Spans = [];
    let at = 0;
    for (const item of items) {
      bytes.set(item, at);
      spans.push([at, item.length]);
      at += item.length;
    }
    const result = await new Promise<{ slab: ArrayBuffer; spans: Spans }>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.waiting.push({ seq, slab, spans });
      this.dispatch();
    });
    return {
      slab: result.slab,
      compressed: result.spans.map(([offset, length]) => new Uint8Array(result.slab, offset, length)),
    };
  }

  /** Gives a slab back for reuse (its views must no longer be used). */
  release(slab: ArrayBuffer): void {
    if (slab.byteLength >= STANDARD_SLAB && this.freeSlabs.length < this.maxInFlight + this.threads) {
      this.freeSlabs.push(slab);
    }
  }

  private takeSlab(needed: number): ArrayBuffer {
    const index = this.freeSlabs.findIndex((s) => s.byteLength >= needed);
    if (index >= 0) return this.freeSlabs.splice(index, 1)[0]!;
    return new ArrayBuffer(Math.max(needed, STANDARD_SLAB));
  }

  /**
   * Compresses a stream of batches with at most `maxInFlight` batches in
   * memory, yielding results in input order (results that finish early wait
   * for their predecessors: the sequence order is the output order). A
   * batch's `compressed` views are valid until the next iteration.
   */
  async *ordered<T>(
    batches: AsyncIterable<{ meta: T; items: Uint8Array[] }>,
  ): AsyncGenerator<{ meta: T; compressed: Uint8Array[] }> {
    const queue: { meta: T; result: Promise<{ slab: ArrayBuffer; compressed: Uint8Array[] }> }[] = [];
    const emit = async function* (this: DeflatePool, head: (typeof queue)[number]) {
      const { slab, compressed } = await head.result;
      yield { meta: head.meta, compressed };
      this.release(slab);
    }.bind(this);
    for await (const batch of batches) {
      const result = this.compress(batch.items);
      result.catch(() => {}); // observed below, in order; avoid an unhandled rejection meanwhile
      queue.push({ meta: batch.meta, result });
      while (queue.length >= this.maxInFlight) yield* emit(queue.shift()!);
    }
    while (queue.length > 0) yield* emit(queue.shift()!);
  }

  async close(): Promise<void> {
    const error = new OvfkitError("ABORTED", "compression pool closed");
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const worker = this.idle.pop()!;
      const job = this.waiting.shift()!;
      worker.postMessage(
        {
          seq: job.seq,
          level: this.level,
          raw: this.raw,
          detectIncompressible: this.detectIncompressible,
          slab: job.slab,
          spans: job.spans,
        },
        [job.slab],
      );
    }
  }

  private onResult(worker: Worker, result: JobResult): void {
    this.idle.push(worker);
    const job = this.pending.get(result.seq);
    this.pending.delete(result.seq);
    if (job) {
      if (result.error !== undefined || !result.slab || !result.spans) {
        job.reject(new OvfkitError("COMPRESSION_FAILED", `deflate failed: ${result.error ?? "no output"}`));
      } else {
        job.resolve({ slab: result.slab, spans: result.spans });
      }
    }
    this.dispatch();
  }

  private fail(error: Error): void {
    this.failure = new OvfkitError("COMPRESSION_FAILED", `compression worker failed: ${error.message}`, {
      cause: error,
    });
    for (const job of this.pending.values()) job.reject(this.failure);
    this.pending.clear();
  }
}
