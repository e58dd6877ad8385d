import { readFile } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { asOvfkitError } from "../errors.js";
import { unpackOva } from "../ovf/pack.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";
import { createProgress } from "./progress.js";

interface UnpackArgs {
  ova: string;
  d: string;
  verify: boolean;
  ca?: string;
  force: boolean;
  p?: boolean;
  output: OutputMode;
}

/** `ovfkit unpack`: extracts an OVA, refusing hostile members, verifying while extracting. */
export const unpackCommand: CommandModule<object, UnpackArgs> = {
  command: "unpack <ova>",
  describe: "extract an OVA into a folder (refuses paths, links, devices; verifies the manifest as it goes)",
  builder: (yargs: Argv) =>
    yargs
      .positional("ova", { type: "string", demandOption: true, describe: "APP.ova" })
      .options({
        d: { alias: "directory", type: "string", demandOption: true, describe: "folder to extract into" },
        verify: {
          type: "boolean",
          default: true,
          describe: "check manifest/certificate/sizes (--no-verify to skip)",
        },
        ca: { type: "string", describe: "PEM bundle of trusted CAs the signer must chain to" },
        force: { type: "boolean", default: false, describe: "overwrite existing files" },
        p: { alias: "progress", type: "boolean", describe: "progress bar on stderr" },
        ...outputOption,
      })
      .example("$0 unpack app.ova -d app/", "extract and verify")
      .example(
        "$0 unpack --no-verify broken.ova -d x/",
        "extract without checking digests",
      ) as Argv<UnpackArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const ca = args.ca
          ? await readFile(args.ca, "utf8").catch((e: unknown) => Promise.reject(asOvfkitError(e, args.ca)))
          : undefined;
        const progress = createProgress("unpack", { forced: args.p });
        try {
          const result = await unpackOva(args.ova, args.d, {
            verify: args.verify,
            overwrite: args.force,
            verifyOptions: { ca },
            onProgress: (done, total) => progress.update(done, total),
          });
          progress.stop();
          if (args.output === "json") printJson(result);
          else process.stdout.write(`${result.files.join("\n")}\n`);
        } finally {
          progress.stop();
        }
        return 0;
      },
      { mode: args.output },
    ),
};
