import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { OvfkitError } from "../errors.js";

/**
 * Deflate (zlib format, RFC 1950) on worker threads, so a writer uses every
 * core. Any format that compresses independent blocks (VMDK grains, qcow2
 * clusters) can use it:
 *
 *   const pool = new DeflatePool({ threads, level });
 *   for await (const batch of pool.ordered(batches)) ...   // input order kept
 *   await pool.close();
 *
 * The worker code is an inline string run with `{ eval: true }`: ovfkit is
 * bundled by esbuild and its tests run the TypeScript sources under vitest,
 * so a separate worker file would exist in neither case.
 */
const WORKER_CODE = `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
parentPort.on("message", (job) => {
  try {
    const out = job.items.map((item) => {
      // Copy into an exact-size ArrayBuffer so transferring it moves only these bytes.
      return new Uint8Array(zlib.deflateSync(item, { level: job.level, raw: job.raw }));
    });
    parentPort.postMessage({ seq: job.seq, out }, out.map((b) => b.buffer));
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
  /** Batches queued or being compressed at once (memory bound); default 4 per thread. */
  maxInFlight?: number;
}

interface JobResult {
  seq: number;
  out?: Uint8Array[];
  error?: string;
}

interface PendingJob {
  resolve: (out: Uint8Array[]) => void;
  reject: (error: Error) => void;
}

export class DeflatePool {
  readonly threads: number;
  readonly level: number;
  readonly maxInFlight: number;
  private readonly raw: boolean;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: { seq: number; items: Uint8Array[] }[] = [];
  private readonly pending = new Map<number, PendingJob>();
  private nextSeq = 0;
  private failure: Error | undefined;

  constructor(options: DeflatePoolOptions = {}) {
    this.threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
    this.level = options.level ?? 6;
    this.raw = options.raw ?? false;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? this.threads * 4);
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
   * Compresses each item of a batch separately; resolves with the compressed
   * items in the same order. The items are copied, so the caller may reuse
   * its buffers as soon as this returns.
   */
  compress(items: readonly Uint8Array[]): Promise<Uint8Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.nextSeq++;
    const copies = items.map((item) => new Uint8Array(item));
    return new Promise<Uint8Array[]>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.waiting.push({ seq, items: copies });
      this.dispatch();
    });
  }

  /**
   * Compresses a stream of batches with at most `maxInFlight` batches in
   * memory, yielding results in input order (results that finish early wait
   * for their predecessors: the sequence order is the output order).
   */
  async *ordered<T>(
    batches: AsyncIterable<{ meta: T; items: Uint8Array[] }>,
  ): AsyncGenerator<{ meta: T; items: Uint8Array[]; compressed: Uint8Array[] }> {
    const queue: { meta: T; items: Uint8Array[]; result: Promise<Uint8Array[]> }[] = [];
    for await (const batch of batches) {
      const result = this.compress(batch.items);
      result.catch(() => {}); // observed below, in order; avoid an unhandled rejection meanwhile
      queue.push({ meta: batch.meta, items: batch.items, result });
      while (queue.length >= this.maxInFlight) {
        const head = queue.shift()!;
        yield { meta: head.meta, items: head.items, compressed: await head.result };
      }
    }
    while (queue.length > 0) {
      const head = queue.shift()!;
      yield { meta: head.meta, items: head.items, compressed: await head.result };
    }
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
        { seq: job.seq, level: this.level, raw: this.raw, items: job.items },
        job.items.map((b) => b.buffer as ArrayBuffer),
      );
    }
  }

  private onResult(worker: Worker, result: JobResult): void {
    this.idle.push(worker);
    const job = this.pending.get(result.seq);
    this.pending.delete(result.seq);
    if (job) {
      if (result.error !== undefined || !result.out) {
        job.reject(new OvfkitError("COMPRESSION_FAILED", `deflate failed: ${result.error ?? "no output"}`));
      } else {
        job.resolve(result.out);
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
