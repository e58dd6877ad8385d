import { dirname, isAbsolute, join } from "node:path";
import type { Argv, CommandModule } from "yargs";
import { OvfkitError } from "../errors.js";
import { createDisk, driverFor, type FormatDriver, openDisk } from "../formats/index.js";
import { parseSize } from "../util/size.js";
import { runCommand } from "./common.js";
import { requireOutputFolder } from "./convert.js";
import { describeWriterOptions, parseWriterOptions, wantsOptionHelp } from "./options.js";

interface CreateArgs {
  file: string;
  size?: string;
  f: string;
  o?: string | string[];
  b?: string;
  force?: boolean;
}

/** The writer option through which a format takes a parent (differencing/backing) image. */
const PARENT_OPTION = "parent";

/**
 * A backing path given relative is relative to the new image's folder (as
 * in qemu-img create -b): that is where the child will look for it.
 */
function backingPathFromChild(child: string, backing: string): string {
  return isAbsolute(backing) ? backing : join(dirname(child), backing);
}

function refuseBackingUnlessSupported(driver: FormatDriver): void {
  if (!driver.writerOptions || !(PARENT_OPTION in driver.writerOptions)) {
    throw new OvfkitError("BAD_OPTION", `${driver.name} images cannot have a backing (parent) file`);
  }
}

/** `ovfkit create`: a new, empty image (create = convert an empty disk). */
export const createCommand: CommandModule<object, CreateArgs> = {
  command: "create <file> [size]",
  describe: "create an empty image of SIZE bytes (10G, 512M...)",
  builder: (yargs: Argv) =>
    yargs
      .positional("file", { type: "string", demandOption: true, describe: "image to create" })
      .positional("size", {
        type: "string",
        describe: "virtual size: 512, 64K, 512M, 10G, 2T (optional with -b: the parent's size)",
      })
      .options({
        f: { alias: "format", type: "string", demandOption: true, describe: "format of the new image" },
        o: {
          alias: "options",
          type: "string",
          // not `array: true`: that would swallow the positionals after -o; repeated -o still gives an array
          describe: "format options key=value,... (-o help lists them)",
        },
        b: {
          alias: "backing",
          type: "string",
          describe: "parent image (differencing VHD...), relative to FILE's folder; passed as -o parent=",
        },
        force: { type: "boolean", default: false, describe: "overwrite an existing FILE" },
      })
      .example("$0 create -f vpc disk.vhd 10G", "an empty 10 GiB dynamic VHD")
      .example("$0 create -f vpc -o subformat=fixed azure.vhd 30G", "a fixed VHD")
      .example(
        "$0 create -f vpc -b base.vhd child.vhd",
        "a differencing child of base.vhd",
      ) as Argv<CreateArgs>,
  handler: (args) =>
    runCommand(async () => {
      const driver = driverFor(args.f);
      const options = parseWriterOptions(args.o);
      if (wantsOptionHelp(options)) {
        process.stdout.write(describeWriterOptions(driver));
        return 0;
      }
      requireOutputFolder(args.file);
      let size: number | undefined = args.size === undefined ? undefined : parseSize(args.size);
      if (args.b !== undefined) {
        refuseBackingUnlessSupported(driver);
        options[PARENT_OPTION] = args.b;
        if (size === undefined) {
          const parent = await openDisk(backingPathFromChild(args.file, args.b));
          size = parent.virtualSize;
          await parent.close();
        }
      }
      if (size === undefined) throw new OvfkitError("BAD_SIZE", "give the new image's size (e.g. 10G)");
      await createDisk(args.file, size, { format: driver.name, options, overwrite: args.force });
      return 0;
    }),
};
