import { readFile } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { asOvfkitError, OvfkitError } from "../errors.js";
import type { SignOptions } from "../ovf/cert.js";
import { type ManifestAlgorithm, parseAlgorithm } from "../ovf/manifest.js";
import { packOva } from "../ovf/pack.js";
import { parseSize } from "../util/size.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";
import { createProgress } from "./progress.js";

interface PackArgs {
  descriptor: string;
  o: string;
  manifest: string;
  sign?: string;
  cert?: string;
  passphrase?: string;
  reproducible: boolean;
  "chunk-size"?: string;
  force: boolean;
  p?: boolean;
  output: OutputMode;
}

async function readText(path: string): Promise<string> {
  return readFile(path, "utf8").catch((error: unknown) => Promise.reject(asOvfkitError(error, path)));
}

/** `--sign KEY --cert CERT` → SignOptions (shared by pack, sign and manifest). */
export async function signOptionsFrom(
  key: string | undefined,
  cert: string | undefined,
  passphrase: string | undefined,
  algorithm?: ManifestAlgorithm,
): Promise<SignOptions | undefined> {
  if (!key) return undefined;
  // A PEM holding both key and certificate (ovftool --privateKey style) needs no --cert.
  const keyText = await readText(key);
  const certText = cert ? await readText(cert) : keyText;
  if (!certText.includes("BEGIN CERTIFICATE")) {
    throw new OvfkitError(
      "BAD_ARGUMENT",
      "signing needs a certificate: --cert CERT.pem (or a key file that holds one)",
    );
  }
  return { privateKey: keyText, certificate: certText, passphrase, algorithm };
}

/** `ovfkit pack`: an OVF folder into an OVA (descriptor, .mf, .cert, then References order). */
export const packCommand: CommandModule<object, PackArgs> = {
  command: "pack <descriptor>",
  describe: "pack an OVF descriptor and its files into an OVA (streaming, manifest, optional signature)",
  builder: (yargs: Argv) =>
    yargs
      .positional("descriptor", { type: "string", demandOption: true, describe: "APP.ovf" })
      .options({
        o: { alias: "out", type: "string", demandOption: true, describe: "the OVA to write" },
        manifest: {
          type: "string",
          default: "sha256",
          describe: "manifest algorithm: sha1, sha256, sha512 or none",
        },
        sign: { type: "string", describe: "PEM private key (RSA) to sign the manifest with" },
        cert: { type: "string", describe: "PEM certificate of the signing key" },
        passphrase: { type: "string", describe: "passphrase of an encrypted private key" },
        reproducible: {
          type: "boolean",
          default: false,
          describe: "fixed owner/mode, mtime=SOURCE_DATE_EPOCH or 0",
        },
        "chunk-size": {
          type: "string",
          describe: "split files bigger than this (e.g. 2G) and set ovf:chunkSize",
        },
        force: { type: "boolean", default: false, describe: "overwrite an existing OVA" },
        p: { alias: "progress", type: "boolean", describe: "progress bar on stderr" },
        ...outputOption,
      })
      .example("$0 pack app.ovf -o app.ova", "SHA256 manifest, descriptor first")
      .example(
        "$0 pack app.ovf -o app.ova --manifest sha1 --sign key.pem --cert cert.pem",
        "for old vSphere, signed",
      )
      .example(
        "SOURCE_DATE_EPOCH=1700000000 $0 pack app.ovf -o app.ova --reproducible",
        "byte-identical rebuilds",
      ) as Argv<PackArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const algorithm = args.manifest.toLowerCase() === "none" ? false : parseAlgorithm(args.manifest);
        const sign = await signOptionsFrom(args.sign, args.cert, args.passphrase);
        const progress = createProgress("pack", { forced: args.p });
        try {
          const result = await packOva(args.descriptor, args.o, {
            manifest: algorithm,
            sign,
            reproducible: args.reproducible,
            chunkSize: args["chunk-size"] !== undefined ? parseSize(args["chunk-size"]) : undefined,
            overwrite: args.force,
            onProgress: (done, total) => progress.update(done, total),
          });
          progress.stop();
          if (args.output === "json") printJson(result);
          else
            process.stdout.write(
              `wrote ${result.output} (${result.members.length + 1 + (result.manifest ? 1 : 0) + (result.certificate ? 1 : 0)} members)\n`,
            );
        } finally {
          progress.stop();
        }
        return 0;
      },
      { mode: args.output },
    ),
};
