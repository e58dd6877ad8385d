import type { Argv, CommandModule } from "yargs";
import { OvfkitError } from "../errors.js";
import { openDisk, resizeDisk } from "../formats/index.js";
import { parseSize } from "../util/size.js";
import { runCommand } from "./common.js";

/** A missing argument is a usage error, exit 2 like every other usage error. */
const USAGE_EXIT = 2;

interface ResizeArgs {
  file: string;
  size?: string;
  _: (string | number)[];
  f?: string;
  shrink?: boolean;
}

/**
 * The new size from `SIZE`, `+SIZE` or `-SIZE` (relative to `current`), as
 * qemu-img resize reads it.
 */
export function targetSize(spec: string, current: number): number {
  const sign = spec.startsWith("+") ? 1 : spec.startsWith("-") ? -1 : 0;
  const amount = parseSize(sign === 0 ? spec : spec.slice(1));
  const size = sign === 0 ? amount : current + sign * amount;
  if (size < 0) {
    throw new OvfkitError("BAD_SIZE", `cannot shrink by ${spec}: the image is only ${current} bytes`);
  }
  return size;
}

/** The size given after `--` (yargs keeps it in `_`, after the command name). */
function sizeAfterDoubleDash(rest: readonly (string | number)[]): string | undefined {
  return rest[1] === undefined ? undefined : String(rest[1]);
}

/** `ovfkit resize`: grow an image in place; shrinking needs --shrink and an empty cut-off range. */
export const resizeCommand: CommandModule<object, ResizeArgs> = {
  // [size] is optional to yargs only so that `-- -1G` (a size after `--`, which yargs leaves in `_`) works.
  command: "resize <file> [size]",
  describe: "change an image's virtual size: SIZE, +SIZE or -SIZE (shrinking needs --shrink)",
  builder: (yargs: Argv) =>
    yargs
      .positional("file", { type: "string", demandOption: true, describe: "image to resize in place" })
      .positional("size", {
        type: "string",
        describe: "new size, or +/- a size (put `--` before a negative size)",
      })
      .options({
        f: { alias: "format", type: "string", describe: "image format; detected if omitted" },
        shrink: {
          type: "boolean",
          default: false,
          describe: "allow making the image smaller (only if the cut-off range holds no data)",
        },
      })
      .example("$0 resize disk.vhd 20G", "grow to 20 GiB")
      .example("$0 resize disk.vhd +1G", "grow by 1 GiB")
      .example("$0 resize --shrink disk.raw -- -512M", "shrink by 512 MiB (`--` before a negative size)")
      .parserConfiguration({ "parse-positional-numbers": false }) as Argv<ResizeArgs>,
  handler: (args) =>
    runCommand(async () => {
      const spec = args.size ?? sizeAfterDoubleDash(args._);
      if (spec === undefined) {
        process.stderr.write("ovfkit: resize needs a SIZE: 20G, +1G or -- -512M (ovfkit resize --help)\n");
        return USAGE_EXIT;
      }
      const reader = await openDisk(args.file, { format: args.f });
      const format = reader.format;
      const current = reader.virtualSize;
      await reader.close();
      const size = targetSize(spec, current);
      if (size < current && !args.shrink) {
        throw new OvfkitError(
          "SHRINK_REFUSED",
          `shrinking ${args.file} from ${current} to ${size} bytes needs --shrink`,
          { file: args.file },
        );
      }
      await resizeDisk(args.file, size, { format, shrink: args.shrink });
      return 0;
    }),
};
