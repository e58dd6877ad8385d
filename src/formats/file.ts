import { type FileHandle, open } from "node:fs/promises";
import { asOvfkitError, OvfkitError } from "../errors.js";

/**
 * A file opened for positioned reads (and, for writers, writes). Readers of
 * binary formats use `readExact`, which turns a short read into a typed
 * TRUNCATED error with the offset instead of silently returning zeros.
 */
export class RandomAccessFile {
  private constructor(
    readonly path: string,
    readonly handle: FileHandle,
    public size: number,
    readonly writable: boolean,
  ) {}

  /** Opens read-only: readers never modify their input. */
  static async open(path: string): Promise<RandomAccessFile> {
    try {
      const handle = await open(path, "r");
      const stat = await handle.stat();
      if (stat.isDirectory()) {
        await handle.close();
        throw new OvfkitError("IS_A_DIRECTORY", `is a directory: ${path}`, { file: path });
      }
      return new RandomAccessFile(path, handle, stat.size, false);
    } catch (error) {
      throw asOvfkitError(error, path);
    }
  }

  /** Opens (creating or truncating) for writing; used on temporary outputs only. */
  static async create(path: string): Promise<RandomAccessFile> {
    try {
      const handle = await open(path, "w+");
      return new RandomAccessFile(path, handle, 0, true);
    } catch (error) {
      throw asOvfkitError(error, path);
    }
  }

  /** Opens an existing file read-write (in-place `resize`). */
  static async openForUpdate(path: string): Promise<RandomAccessFile> {
    try {
      const handle = await open(path, "r+");
      const stat = await handle.stat();
      return new RandomAccessFile(path, handle, stat.size, true);
    } catch (error) {
      throw asOvfkitError(error, path);
    }
  }

  /** Reads up to `length` bytes; returns how many were read (short at EOF). */
  async readAt(offset: number, length: number, into: Buffer = Buffer.allocUnsafe(length)): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(into, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  /**
   * Reads exactly `length` bytes at `offset` or throws TRUNCATED naming
   * `what` (e.g. "VHD footer") so the user learns which structure is cut off.
   */
  async readExact(offset: number, length: number, what: string, into?: Buffer): Promise<Buffer> {
    const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    if (offset < 0 || offset + length > this.size) {
      throw new OvfkitError(
        "TRUNCATED",
        `${what} (${length} bytes at offset ${offset}) lies past the end of the file (${this.size} bytes)`,
        { file: this.path, offset },
      );
    }
    const n = await this.readAt(offset, length, buf);
    if (n < length) {
      throw new OvfkitError("TRUNCATED", `${what}: file ended after ${n} of ${length} bytes`, {
        file: this.path,
        offset: offset + n,
      });
    }
    return buf;
  }

  async writeAt(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      this.size = Math.max(this.size, offset + data.length);
    } catch (error) {
      throw asOvfkitError(error, this.path);
    }
  }

  async truncate(length: number): Promise<void> {
    await this.handle.truncate(length);
    this.size = length;
  }

  async sync(): Promise<void> {
    await this.handle.sync();
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
