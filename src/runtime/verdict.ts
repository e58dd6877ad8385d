/**
 * Verdict rules read from the guest's console, shared by both engines
 * (`--engine ovfkit` and `--engine qemu`), so the two give the same verdict
 * for the same console text.
 */

/** The kernel's panic line (include/linux/panic.c: "Kernel panic - not syncing: ..."). */
export const PANIC_PATTERN = /Kernel panic - not syncing[^\n]*/;

/**
 * The guest found no root disk. The reference appliances print
 * `APPLIANCE-BOOT-FAIL no-root-device`; stock initramfs-tools and the
 * kernel print the others (initramfs-tools scripts/local: "Gave up waiting
 * for root file system device", "ALERT! ... does not exist"; the kernel:
 * "VFS: Unable to mount root fs").
 */
const NO_ROOT_PATTERNS: RegExp[] = [
  /APPLIANCE-BOOT-FAIL no-root-device[^\n]*/,
  /Gave up waiting for root (?:file system )?device[^\n]*/,
  /ALERT! +\S+ does not exist[^\n]*/,
  /VFS: Unable to mount root fs[^\n]*/,
];

export type ConsoleFailureVerdict = "no-root-device" | "kernel-panic";

export interface ConsoleFailure {
  verdict: ConsoleFailureVerdict;
  /** The console line that decided it. */
  line: string;
}

/**
 * The failure the console shows, if any: a missing root device first (its
 * panic, if any, is a consequence), then a kernel panic.
 */
export function consoleFailure(consoleText: string): ConsoleFailure | undefined {
  for (const pattern of NO_ROOT_PATTERNS) {
    const match = consoleText.match(pattern);
    if (match) return { verdict: "no-root-device", line: match[0].trim() };
  }
  const panic = consoleText.match(PANIC_PATTERN);
  if (panic) return { verdict: "kernel-panic", line: panic[0].trim() };
  return undefined;
}

/** The last `lines` lines of a console transcript (CR LF normalised). */
export function consoleTail(text: string, lines: number): string {
  return text.replace(/\r\n?/g, "\n").split("\n").slice(-lines).join("\n");
}
