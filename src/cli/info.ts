import { stat } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { allocatedBytes, openDisk } from "../formats/index.js";
import { formatSize } from "../util/size.js";
import {
  formatOption,
  type OutputMode,
  openOptionsFrom,
  outputOption,
  printJson,
  runCommand,
} from "./common.js";

interface InfoArgs {
  file: string;
  f?: string;
  output: OutputMode;
}

/** `ovfkit info`: what qemu-img info prints, with qemu-img's JSON field names, plus ovfkit's own. */
export const infoCommand: CommandModule<object, InfoArgs> = {
  command: "info <file>",
  describe: "show an image's format, virtual size, allocation and format details",
  builder: (yargs: Argv) =>
    yargs
      .positional("file", { type: "string", demandOption: true, describe: "disk image" })
      .options({ ...formatOption, ...outputOption })
      .example("$0 info disk.vhd", "format, sizes and creator")
      .example(
        "$0 info --output json disk.vmdk",
        "the same as JSON (qemu-img field names)",
      ) as Argv<InfoArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const reader = await openDisk(args.file, openOptionsFrom(args));
        try {
          const actual = (await stat(args.file)).blocks * 512;
          const info = {
            filename: args.file,
            format: reader.format,
            "virtual-size": reader.virtualSize,
            "actual-size": actual,
            "dirty-flag": reader.dirty ?? false,
            ...(reader.backingFile ? { "backing-filename": reader.backingFile } : {}),
            "format-specific": reader.formatSpecific,
            creator: reader.creator ?? null,
            geometry: reader.geometry ?? null,
            "allocated-bytes": await allocatedBytes(reader),
            files: reader.files,
          };
          if (args.output === "json") {
            printJson(info);
          } else {
            const lines = [
              `image: ${info.filename}`,
              `file format: ${info.format}`,
              `virtual size: ${formatSize(info["virtual-size"])} (${info["virtual-size"]} bytes)`,
              `disk size: ${formatSize(actual)}`,
              `allocated: ${formatSize(info["allocated-bytes"])}`,
            ];
            if (reader.creator) lines.push(`creator: ${reader.creator}`);
            if (reader.geometry) {
              const g = reader.geometry;
              lines.push(`geometry (CHS): ${g.cylinders}/${g.heads}/${g.sectors}`);
            }
            if (reader.backingFile) lines.push(`backing file: ${reader.backingFile}`);
            for (const [key, value] of Object.entries(reader.formatSpecific)) {
              lines.push(`${key}: ${typeof value === "object" ? JSON.stringify(value) : String(value)}`);
            }
            process.stdout.write(`${lines.join("\n")}\n`);
          }
          return 0;
        } finally {
          await reader.close();
        }
      },
      { mode: args.output },
    ),
};
