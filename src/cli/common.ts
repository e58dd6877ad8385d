import { isOvfkitError } from "../errors.js";

/**
 * Shared plumbing for the command modules: output mode, error reporting and
 * exit codes. Commands stay thin: parse arguments, call the library, print.
 */

export type OutputMode = "human" | "json";

export const outputOption = {
  output: {
    choices: ["human", "json"] as const,
    default: "human" as const,
    describe: "human-readable text or JSON on stdout",
  },
} as const;

export const formatOption = {
  f: {
    alias: "format",
    type: "string",
    describe: "input format (raw, vpc/vhd, vmdk, vhdx, qcow2); detected if omitted",
  },
  "allow-parent-outside": {
    type: "boolean",
    describe: "follow parent/backing files and VMDK extents outside the image's folder tree",
  },
} as const;

/** The open options every command that reads an image takes from its arguments. */
export function openOptionsFrom(
  args: { f?: string; "allow-parent-outside"?: boolean },
  format: string | undefined = args.f,
): { format?: string; allowParentOutside?: boolean; allowExtentOutside?: boolean } {
  const outside = args["allow-parent-outside"] ?? false;
  return { format, allowParentOutside: outside, allowExtentOutside: outside };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** True when colour may be used on `stream` (a TTY and NO_COLOR unset). */
export function useColor(stream: NodeJS.WriteStream = process.stdout): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR;
}

/**
 * Prints an error the way every command does (`ovfkit: CODE: message (where)`)
 * or as JSON, and returns the exit code to use.
 */
export function reportError(error: unknown, mode: OutputMode = "human", exitCode = 1): number {
  if (isOvfkitError(error)) {
    if (mode === "json") {
      printJson({ error: error.toJSON() });
    } else {
      const where = error.where ? ` (${error.where})` : "";
      process.stderr.write(`ovfkit: ${error.code}: ${error.message}${where}\n`);
    }
  } else {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`ovfkit: internal error: ${message}\n`);
  }
  return exitCode;
}

/**
 * Runs a command body; an OvfkitError (or any error) becomes a printed
 * message and `errorExitCode`, so handlers never crash with a stack trace.
 */
export async function runCommand(
  body: () => Promise<number | undefined>,
  options: { mode?: OutputMode; errorExitCode?: number } = {},
): Promise<void> {
  try {
    process.exitCode = (await body()) ?? 0;
  } catch (error) {
    process.exitCode = reportError(error, options.mode, options.errorExitCode ?? 1);
  }
}
