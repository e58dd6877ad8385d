import type { CheckReport, DiskFormat, DiskReader } from "./disk.js";
import type { OutputTransaction } from "./output.js";

/**
 * One disk format = one module exporting a `FormatDriver` (after qemu's
 * block/ drivers: each format one file behind one small interface).
 * Register it in `registry.ts`.
 */

/** What detection sees of a file: its head, its tail and its size. */
export interface ProbeInput {
  /** The first bytes of the file (up to PROBE_HEAD_BYTES). */
  head: Buffer;
  /** The last bytes of the file (up to PROBE_TAIL_BYTES). */
  tail: Buffer;
  size: number;
  path: string;
}

export const PROBE_HEAD_BYTES = 64 * 1024;
export const PROBE_TAIL_BYTES = 1536;

export interface OpenOptions {
  /** Follow parent/backing files outside the image's own folder tree. */
  allowParentOutside?: boolean;
  /** VMDK extents with absolute paths or `..`. */
  allowExtentOutside?: boolean;
  /** Open only this image, not its parents (unallocated ranges read as zeros). */
  noBacking?: boolean;
  /** Parent chain depth so far (loop and depth protection). */
  depth?: number;
}

/**
 * Writer options as `-o key=value,...` gives them (qemu-img style). Each
 * driver documents and validates its own keys and refuses unknown ones
 * with BAD_OPTION.
 */
export type WriterOptions = Record<string, string>;

export interface WriteContext {
  /** Where the output's temporary files come from; the caller commits. */
  tx: OutputTransaction;
  /** Called with bytes of the source processed so far (for progress bars). */
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Worker threads for compression; default: all cores. */
  threads?: number;
}

export interface FormatDriver {
  readonly name: DiskFormat;
  readonly aliases?: readonly string[];
  readonly description: string;
  /**
   * Scores how sure we are that the file is in this format: 0 = not, 100 =
   * certain (magic and checksum). Detection picks the highest score; raw
   * scores 1. Never looks at the file name.
   */
  probe(input: ProbeInput): number;
  open(path: string, options?: OpenOptions): Promise<DiskReader>;
  /**
   * Streams `source` into a new image at `destPath`; every file it creates
   * comes from `ctx.tx.file(...)`. Absent for read-only formats.
   */
  write?(source: DiskReader, destPath: string, options: WriterOptions, ctx: WriteContext): Promise<void>;
  /** Structural checks (`ovfkit check`). */
  check?(path: string, options?: OpenOptions): Promise<CheckReport>;
  /** Grows (or, with shrink, cuts) the image in place, atomically. */
  resize?(path: string, newSize: number, options: { shrink?: boolean }): Promise<void>;
  /** The writer option keys this driver accepts, with a one-line help each. */
  readonly writerOptions?: Readonly<Record<string, string>>;
}
