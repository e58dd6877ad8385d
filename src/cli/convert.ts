import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Argv, CommandModule } from "yargs";
import { OvfkitError } from "../errors.js";
import { convert, driverFor, openDisk } from "../formats/index.js";
import { formatOption, openOptionsFrom, runCommand } from "./common.js";
import { applianceConvertOptions, runApplianceConvert, wantsApplianceConvert } from "./convert-appliance.js";
import { describeWriterOptions, parseWriterOptions, wantsOptionHelp } from "./options.js";
import { createProgress } from "./progress.js";

/**
 * Refuses an output whose folder does not exist, naming the folder: the
 * failure would otherwise surface as the hidden temporary file's name.
 */
export function requireOutputFolder(output: string): void {
  const folder = dirname(resolve(output));
  if (!existsSync(folder)) {
    throw new OvfkitError("FILE_NOT_FOUND", `no such folder: ${folder}`, { file: output });
  }
}

interface ConvertArgs {
  src: string;
  dst: string;
  f?: string;
  O?: string;
  o?: string | string[];
  target?: string;
  manifest?: string;
  p?: boolean;
  force?: boolean;
  threads?: number;
}

/**
 * `ovfkit convert`: streams SRC into DST in another format. The output is
 * written to a hidden temporary file beside DST and renamed at the end, so
 * an error or Ctrl-C leaves nothing behind (see formats/output.ts).
 */
export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: "convert <src> <dst>",
  describe: "convert an image to another format (streaming, sparse, atomic)",
  builder: (yargs: Argv) =>
    yargs
      .positional("src", { type: "string", demandOption: true, describe: "source image" })
      .positional("dst", { type: "string", demandOption: true, describe: "destination image" })
      .options({
        ...formatOption,
        O: {
          alias: "output-format",
          type: "string",
          describe: "output format (raw, vpc/vhd, vmdk, vhdx, qcow2); not used with --target",
        },
        ...applianceConvertOptions,
        o: {
          alias: "options",
          type: "string",
          // not `array: true`: that would swallow the positionals after -o; repeated -o still gives an array
          describe: "output format options key=value,... (-o help lists them)",
        },
        p: {
          alias: "progress",
          type: "boolean",
          describe: "show a progress bar even when stderr is not a terminal",
        },
        force: { type: "boolean", default: false, describe: "overwrite an existing DST" },
        threads: { type: "number", describe: "worker threads for compression (default: all cores)" },
      })
      .example("$0 convert -O vpc disk.raw disk.vhd", "raw to dynamic VHD")
      .example("$0 convert -O vpc -o subformat=fixed disk.vmdk azure.vhd", "a fixed VHD")
      .example("$0 convert -O raw -p --force disk.vhd disk.raw", "with a progress bar, replacing disk.raw")
      .example("$0 convert -O vmdk -o help x y", "list the vmdk writer's options")
      .example(
        "$0 convert app.ova app-azure.ova --target azure",
        "a whole appliance for an importer",
      ) as Argv<ConvertArgs>,
  handler: (args) =>
    runCommand(async () => {
      if (args.threads !== undefined && !(Number.isInteger(args.threads) && args.threads >= 1)) {
        throw new OvfkitError(
          "BAD_ARGUMENT",
          `--threads must be a whole number of at least 1 (got ${args.threads})`,
        );
      }
      if (wantsApplianceConvert(args)) return runApplianceConvert(args);
      if (!args.O) {
        // -O is required for disks but not for appliances, so yargs cannot demand it: a usage error by hand.
        process.stderr.write(
          "ovfkit: Missing required argument: O (the output format; --target for an .ova/.ovf)\n",
        );
        return 2;
      }
      const driver = driverFor(args.O);
      const options = parseWriterOptions(args.o);
      if (wantsOptionHelp(options)) {
        process.stdout.write(describeWriterOptions(driver));
        return 0;
      }
      requireOutputFolder(args.dst);
      const source = await openDisk(args.src, openOptionsFrom(args));
      const progress = createProgress("convert", { forced: args.p });
      try {
        await convert(source, args.dst, {
          format: driver.name,
          options,
          overwrite: args.force,
          threads: args.threads,
          progress: (done, total) => progress.update(done, total),
        });
      } finally {
        progress.stop();
        await source.close();
      }
      return 0;
    }),
};
