import { readFile } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { type AddProperty, type EditSpec, editPackage } from "../ovf/edit.js";
import { parsePropertyPairs } from "../ovf/env.js";
import { parseSize } from "../util/size.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";
import { signOptionsFrom } from "./pack.js";

interface EditArgs {
  package: string;
  name?: string;
  product?: string;
  vendor?: string;
  "product-version"?: string;
  annotation?: string;
  cpus?: number;
  memory?: string;
  property?: string[];
  "add-property"?: string[];
  eula?: string;
  "resize-disk"?: string[];
  "remove-disk"?: string[];
  "add-disk"?: string[];
  "add-network"?: string[];
  "add-nic"?: string[];
  sign?: string;
  cert?: string;
  passphrase?: string;
  "drop-signature": boolean;
  o?: string;
  force: boolean;
  output: OutputMode;
}

/** `--memory 2G` → 2048 (MiB); a bare number is MiB, as in ovftool and VBoxManage. */
function memoryMiB(text: string): number {
  const bytes = /^\d+$/.test(text.trim()) ? Number(text) * 2 ** 20 : parseSize(text);
  if (bytes % 2 ** 20 !== 0 || bytes <= 0)
    throw new OvfkitError("BAD_ARGUMENT", `--memory ${text}: not a whole number of MiB`);
  return bytes / 2 ** 20;
}

/** `port:uint16=80` → { key: "port", type: "uint16", value: "80" }. */
function parseAddProperty(text: string): AddProperty {
  const match = /^([^:=]+):([A-Za-z0-9]+)(?:=(.*))?$/.exec(text);
  if (!match) throw new OvfkitError("BAD_ARGUMENT", `--add-property ${text}: expected key:type[=default]`);
  return { key: match[1]!, type: match[2]!, value: match[3] };
}

async function specFrom(args: EditArgs): Promise<EditSpec> {
  const eula = args.eula
    ? await readFile(args.eula, "utf8").catch((e: unknown) => Promise.reject(asOvfkitError(e, args.eula)))
    : undefined;
  return {
    name: args.name,
    product: args.product,
    vendor: args.vendor,
    version: args["product-version"],
    annotation: args.annotation,
    cpus: args.cpus,
    memoryMiB: args.memory !== undefined ? memoryMiB(args.memory) : undefined,
    properties: args.property ? parsePropertyPairs(args.property) : undefined,
    addProperties: args["add-property"]?.map(parseAddProperty),
    eula,
    resizeDisks: args["resize-disk"]?.map((pair) => {
      const [diskId, size] = pair.split("=");
      if (!diskId || !size)
        throw new OvfkitError("BAD_ARGUMENT", `--resize-disk ${pair}: expected DISKID=SIZE`);
      return { diskId, bytes: parseSize(size) };
    }),
    removeDisks: args["remove-disk"],
    addDisks: args["add-disk"],
    addNetworks: args["add-network"]?.map((name) => ({ name })),
    addNics: args["add-nic"]?.map((text) => {
      const [network, subtype] = text.split(":");
      return { network: network!, subtype };
    }),
  };
}

/** `ovfkit edit`: lossless descriptor edits; manifest rewritten, signature re-made or the edit refused. */
export const editCommand: CommandModule<object, EditArgs> = {
  command: "edit <package>",
  describe: "edit an OVF/OVA losslessly: name, product, CPUs, memory, disks, NICs, properties, EULA",
  builder: (yargs: Argv) =>
    yargs
      .positional("package", { type: "string", demandOption: true, describe: "APP.ovf or APP.ova" })
      .options({
        name: { type: "string", describe: "VirtualSystem Name" },
        product: { type: "string", describe: "ProductSection Product" },
        vendor: { type: "string", describe: "ProductSection Vendor" },
        "product-version": { type: "string", describe: "ProductSection Version" },
        annotation: { type: "string", describe: "AnnotationSection text" },
        cpus: { type: "number", describe: "virtual CPUs" },
        memory: { type: "string", describe: "memory (MiB, or 2G, 512M)" },
        property: { type: "string", array: true, describe: "key=value: set a property's value" },
        "add-property": { type: "string", array: true, describe: "key:type[=default]: add a property" },
        eula: { type: "string", describe: "file with the license text (EulaSection)" },
        "resize-disk": { type: "string", array: true, describe: "DISKID=SIZE: grow a disk's capacity" },
        "remove-disk": { type: "string", array: true, describe: "DISKID: remove a disk (File, Disk, Item)" },
        "add-disk": {
          type: "string",
          array: true,
          describe: "PATH: add a disk image on the first controller",
        },
        "add-network": { type: "string", array: true, describe: "NAME: add a network" },
        "add-nic": {
          type: "string",
          array: true,
          describe: "NETWORK[:SUBTYPE]: add a NIC (default VmxNet3)",
        },
        sign: { type: "string", describe: "re-sign with this PEM private key (needed for signed packages)" },
        cert: { type: "string", describe: "PEM certificate of the signing key" },
        passphrase: { type: "string", describe: "passphrase of an encrypted private key" },
        "drop-signature": {
          type: "boolean",
          default: false,
          describe: "remove the signature instead of re-signing",
        },
        o: {
          alias: "out",
          type: "string",
          describe: "OVA: write the edited package here (default: in place)",
        },
        force: { type: "boolean", default: false, describe: "overwrite the -o output" },
        ...outputOption,
      })
      .example("$0 edit app.ova --cpus 4 --memory 8G", "more CPUs and memory")
      .example("$0 edit app.ovf --property hostname=web1 --add-property port:uint16=8080", "properties")
      .example("$0 edit app.ova --add-disk data.vmdk --resize-disk vmdisk1=40G", "disks") as Argv<EditArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const spec = await specFrom(args);
        const sign = await signOptionsFrom(args.sign, args.cert, args.passphrase);
        const result = await editPackage(args.package, spec, {
          sign,
          dropSignature: args["drop-signature"],
          output: args.o,
          overwrite: args.force,
        });
        if (args.output === "json") printJson(result);
        else process.stdout.write(`${result.package}: ${result.changes.join("; ") || "no change"}\n`);
        return 0;
      },
      { mode: args.output },
    ),
};
