import type { Argv, CommandModule } from "yargs";
import { compareDisks, type DiskReader, openDisk } from "../formats/index.js";
import { formatOption, openOptionsFrom, reportError } from "./common.js";

interface CompareArgs {
  a: string;
  b: string;
  f?: string;
  F?: string;
  strict?: boolean;
}

/** qemu-img compare's exit codes: 0 identical, 1 different, 2 error. */
export const COMPARE_EXIT = { identical: 0, different: 1, error: 2 } as const;

/**
 * `ovfkit compare`: do two images present the same content? As with
 * qemu-img compare, images of different sizes are identical when the larger
 * one holds only zeros past the end of the smaller, unless --strict.
 */
export const compareCommand: CommandModule<object, CompareArgs> = {
  command: "compare <a> <b>",
  describe: "compare the contents of two images (exit 0 identical, 1 different, 2 error)",
  builder: (yargs: Argv) =>
    yargs
      .positional("a", { type: "string", demandOption: true, describe: "first image" })
      .positional("b", { type: "string", demandOption: true, describe: "second image" })
      .options({
        f: { type: "string", describe: "format of the first image; detected if omitted" },
        F: { type: "string", describe: "format of the second image; detected if omitted" },
        "allow-parent-outside": formatOption["allow-parent-outside"],
        strict: { type: "boolean", default: false, describe: "images of different virtual sizes differ" },
      })
      .example("$0 compare disk.raw disk.vhd", "prints the first differing offset, if any")
      .example("$0 compare --strict -f raw -F vpc a.img b.vhd", "sizes must match too")
      .epilogue("Exit status: 0 identical, 1 different, 2 an image could not be read.") as Argv<CompareArgs>,
  handler: async (args) => {
    const opened: DiskReader[] = [];
    try {
      const a = await openDisk(args.a, openOptionsFrom(args));
      opened.push(a);
      const b = await openDisk(args.b, openOptionsFrom(args, args.F));
      opened.push(b);
      if (args.strict && a.virtualSize !== b.virtualSize) {
        process.stdout.write("Image size mismatch!\n");
        process.exitCode = COMPARE_EXIT.different;
        return;
      }
      // qemu-img warns about a size difference even when the extra part holds only zeros.
      if (a.virtualSize !== b.virtualSize) process.stdout.write("Warning: Image size mismatch!\n");
      const result = await compareDisks(a, b);
      if (result.identical) {
        process.stdout.write("Images are identical.\n");
        process.exitCode = COMPARE_EXIT.identical;
      } else {
        process.stdout.write(`Content mismatch at offset ${result.firstDifference}!\n`);
        process.exitCode = COMPARE_EXIT.different;
      }
    } catch (error) {
      process.exitCode = reportError(error, "human", COMPARE_EXIT.error);
    } finally {
      for (const reader of opened) await reader.close();
    }
  },
};
