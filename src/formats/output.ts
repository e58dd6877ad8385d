import { randomBytes } from "node:crypto";
import { existsSync, unlinkSync } from "node:fs";
import { link, lstat, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";

/**
 * Makes outputs appear atomically or not at all.
 *
 * Every file an operation produces (one VHD, or a VMDK descriptor and its
 * extents) is written to a hidden temporary file in the target's own folder
 * (same file system, so the final rename is atomic). `commit()` renames them
 * all into place; `abort()` (or any error inside `withOutputs`) removes
 * them. A SIGINT/SIGTERM during the operation removes them too.
 */
export class OutputTransaction {
  private readonly pending = new Map<string, string>(); // final path -> temp path
  private committed = false;

  constructor(private readonly overwrite = false) {
    activeTransactions.add(this);
  }

  /**
   * Registers `finalPath` as an output and returns the temporary path to
   * write it at. Refuses an existing destination unless overwriting was asked for.
   */
  file(finalPath: string): string {
    const target = resolve(finalPath);
    if (this.pending.has(target)) throw new OvfkitError("OUTPUT_TWICE", `output ${target} is written twice`);
    if (!this.overwrite && existsSync(target)) {
      throw new OvfkitError("OUTPUT_EXISTS", `${finalPath} exists (use --force to overwrite)`, {
        file: finalPath,
      });
    }
    const temp = join(dirname(target), `.${basename(target)}.ovfkit-${randomBytes(4).toString("hex")}.tmp`);
    this.pending.set(target, temp);
    return temp;
  }

  /** The final paths registered so far. */
  get outputs(): string[] {
    return [...this.pending.keys()];
  }

  async commit(): Promise<void> {
    try {
      for (const [target, temp] of this.pending) {
        if (this.overwrite) {
          await rename(temp, target);
        } else {
          // link() fails if the target appeared meanwhile: never clobber a file we were told not to.
          await link(temp, target);
          await unlink(temp);
        }
      }
      this.committed = true;
    } catch (error) {
      await this.abort();
      throw asOvfkitError(error);
    } finally {
      activeTransactions.delete(this);
    }
  }

  async abort(): Promise<void> {
    activeTransactions.delete(this);
    if (this.committed) return;
    for (const temp of this.pending.values()) {
      try {
        await lstat(temp);
        await unlink(temp);
      } catch {
        // already gone
      }
    }
  }

  /** Synchronous clean-up for signal handlers, where awaiting is not possible. */
  abortSync(): void {
    if (this.committed) return;
    for (const temp of this.pending.values()) {
      try {
        unlinkSync(temp);
      } catch {
        // already gone
      }
    }
  }
}

const activeTransactions = new Set<OutputTransaction>();
let signalHandlersInstalled = false;

/** Removes every uncommitted temporary output; called on SIGINT/SIGTERM. */
function installSignalCleanup(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      for (const tx of activeTransactions) tx.abortSync();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Runs `work` with a fresh transaction: commits when it resolves, removes
 * every temporary output when it throws.
 */
export async function withOutputs<T>(
  work: (tx: OutputTransaction) => Promise<T>,
  options: { overwrite?: boolean } = {},
): Promise<T> {
  installSignalCleanup();
  const tx = new OutputTransaction(options.overwrite ?? false);
  try {
    const result = await work(tx);
    await tx.commit();
    return result;
  } catch (error) {
    await tx.abort();
    throw error;
  }
}
