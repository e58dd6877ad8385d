import type { Argv, CommandModule } from "yargs";
import { type Extent, openDisk } from "../formats/index.js";
import {
  formatOption,
  type OutputMode,
  openOptionsFrom,
  outputOption,
  reportError,
  runCommand,
} from "./common.js";

interface MapArgs {
  file: string;
  f?: string;
  output: OutputMode;
}

/**
 * One entry of `map --output json`, named as qemu-img map names them:
 * `data` = bytes are stored, `zero` = reads as zeros, `present` = allocated
 * in this image or a parent (false for unallocated).
 */
export interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  present: boolean;
}

export function mapEntry(extent: Extent): MapEntry {
  return {
    start: extent.offset,
    length: extent.length,
    data: extent.kind === "data",
    zero: extent.kind !== "data",
    present: extent.kind !== "unallocated",
  };
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * `ovfkit map`: the allocation map. Printed as it is read, one extent at a
 * time, so a fragmented multi-terabyte image needs no memory for it.
 */
export const mapCommand: CommandModule<object, MapArgs> = {
  command: "map <file>",
  describe: "print an image's allocation map (data, zero and unallocated ranges)",
  builder: (yargs: Argv) =>
    yargs
      .positional("file", { type: "string", demandOption: true, describe: "disk image" })
      .options({ ...formatOption, ...outputOption })
      .example("$0 map disk.vhd", "a table of ranges and what they hold")
      .example(
        "$0 map --output json disk.vhd",
        "qemu-img map's JSON fields: start, length, data, zero, present",
      ) as Argv<MapArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const reader = await openDisk(args.file, openOptionsFrom(args));
        try {
          if (args.output === "json") {
            // Streamed (a map can have millions of entries); an error part-way still closes the
            // array so stdout stays valid JSON, and goes to stderr with exit 1.
            let first = true;
            process.stdout.write("[");
            try {
              for await (const extent of reader.map()) {
                process.stdout.write(`${first ? "" : ","}\n  ${JSON.stringify(mapEntry(extent))}`);
                first = false;
              }
            } catch (error) {
              process.stdout.write(`${first ? "" : "\n"}]\n`);
              return reportError(error, "human");
            }
            process.stdout.write(`${first ? "" : "\n"}]\n`);
          } else {
            process.stdout.write(`${"Offset".padEnd(20)}${"Length".padEnd(20)}Kind\n`);
            for await (const extent of reader.map()) {
              process.stdout.write(
                `${hex(extent.offset).padEnd(20)}${hex(extent.length).padEnd(20)}${extent.kind}\n`,
              );
            }
          }
          return 0;
        } finally {
          await reader.close();
        }
      },
      { mode: args.output },
    ),
};
