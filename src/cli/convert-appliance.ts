import { extname } from "node:path";
import { OvfkitError } from "../errors.js";
import { type ManifestAlgorithm, parseAlgorithm } from "../ovf/manifest.js";
import { CONVERT_TARGETS, convertAppliance, isConvertTarget } from "../ovf/target-convert.js";
import { type OutputMode, printJson, reportError } from "./common.js";
import { createProgress } from "./progress.js";

/**
 * Whole-appliance conversion for `ovfkit convert APP.ova OUT.ova --target X`.
 * The disk `convert` command (src/cli/convert.ts, owned by the CLI
 * module) calls `runApplianceConvert` when `wantsApplianceConvert` says
 * the source is a package or a --target was given.
 */

export interface ApplianceConvertArgs {
  src: string;
  dst: string;
  target?: string;
  manifest?: string;
  force?: boolean;
  p?: boolean;
  threads?: number;
  output?: OutputMode;
}

/** True when `convert` should treat its arguments as an appliance, not a disk. */
export function wantsApplianceConvert(args: { src: string; target?: string }): boolean {
  return args.target !== undefined || /^\.(ova|ovf)$/i.test(extname(args.src));
}

/** yargs option definitions the disk convert command adds for appliances. */
export const applianceConvertOptions = {
  target: { choices: CONVERT_TARGETS, describe: "convert a whole appliance (.ova/.ovf) for this importer" },
  manifest: { type: "string", describe: "appliance manifest algorithm (sha1, sha256, sha512)" },
} as const;

/** Runs the conversion and returns the exit code (0 ok, 1 failed), printing like every command. */
export async function runApplianceConvert(args: ApplianceConvertArgs): Promise<number> {
  const progress = createProgress("convert", { forced: args.p });
  try {
    const target = args.target ?? "vsphere";
    if (!isConvertTarget(target)) {
      throw new OvfkitError("BAD_ARGUMENT", `unknown --target ${target} (${CONVERT_TARGETS.join(", ")})`);
    }
    const manifest: ManifestAlgorithm | undefined = args.manifest ? parseAlgorithm(args.manifest) : undefined;
    const result = await convertAppliance(args.src, args.dst, {
      target,
      manifest,
      overwrite: args.force,
      threads: args.threads,
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.stop();
    if (args.output === "json") printJson(result);
    else
      process.stdout.write(
        `${result.output} (${result.target}):\n${result.changes.map((c) => `  ${c}`).join("\n")}\n`,
      );
    return 0;
  } catch (error) {
    progress.stop();
    return reportError(error, args.output ?? "human", 1);
  }
}
