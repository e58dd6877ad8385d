import { resolve } from "node:path";
import { type RunResult, run } from "./tools.js";

export const BIN = resolve(import.meta.dirname, "../../bin/ovfkit");

/** Runs the real `bin/ovfkit` in a subprocess (built by the global set-up). */
export function ovfkit(args: string[], options: { cwd?: string; input?: string } = {}): RunResult {
  return run(process.execPath, [BIN, ...args], options);
}
