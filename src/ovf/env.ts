import { writeFile } from "node:fs/promises";
import { extname } from "node:path";
import { OvfkitError } from "../errors.js";
import { withOutputs } from "../formats/output.js";
import { buildIso9660 } from "./iso9660.js";
import type { OvfEnvelope, OvfVirtualSystem } from "./model.js";
import { packageKind } from "./ova.js";
import { descriptorOfOva, reproducibleMtime } from "./pack.js";
import { parseOvf, readDescriptorFile } from "./parse.js";
import { escapeAttribute, escapeText, type XmlElement } from "./xml.js";

/**
 * The OVF environment (DSP8027): `ovf-env.xml`, the document a deployment
 * platform hands to the guest with the values of the descriptor's
 * ProductSection properties — on a CD (transport `iso`, DSP0243 §11.1) or
 * through VMware tools (`com.vmware.guestInfo`). Same shape as govmomi's
 * ovf/env.go and cloud-init's example (corpus/ovf/cloud-init).
 */

export const ENV_NS = "http://schemas.dmtf.org/ovf/environment/1";

export interface EnvProperty {
  /** Full key: `class.key.instance` when the ProductSection has a class/instance (DSP0243 §9.5). */
  key: string;
  type: string | undefined;
  defaultValue: string | undefined;
  qualifiers: string | undefined;
  userConfigurable: boolean;
  element: XmlElement;
}

/** The properties a guest can be given, with their qualified keys. */
export function environmentProperties(envelope: OvfEnvelope, system?: OvfVirtualSystem): EnvProperty[] {
  const target = system ?? envelope.virtualSystems[0];
  if (!target) return [];
  const out: EnvProperty[] = [];
  for (const product of target.products) {
    const cls = envelope.ovfAttr(product, "class");
    const instance = envelope.ovfAttr(product, "instance");
    for (const e of product.elements()) {
      if (e.localName !== "Property") continue; // Category elements only group properties in UIs
      const key = envelope.ovfAttr(e, "key");
      if (!key) continue;
      out.push({
        key: [cls, key, instance].filter(Boolean).join("."),
        type: envelope.ovfAttr(e, "type"),
        defaultValue: envelope.ovfAttr(e, "value"),
        qualifiers: envelope.ovfAttr(e, "qualifiers"),
        userConfigurable: envelope.ovfAttr(e, "userConfigurable") === "true",
        element: e,
      });
    }
  }
  return out;
}

const INTEGER_RANGES: Record<string, [bigint, bigint]> = {
  uint8: [0n, 255n],
  sint8: [-128n, 127n],
  uint16: [0n, 65535n],
  sint16: [-32768n, 32767n],
  uint32: [0n, 4294967295n],
  sint32: [-2147483648n, 2147483647n],
  uint64: [0n, 18446744073709551615n],
  sint64: [-9223372036854775808n, 9223372036854775807n],
};

/** Checks a value against the property's CIM type and qualifiers (DSP0243 §9.5.1). Throws ENV_BAD_VALUE. */
export function checkPropertyValue(property: EnvProperty, value: string): void {
  const fail = (why: string): never => {
    throw new OvfkitError("ENV_BAD_VALUE", `property ${property.key}=${JSON.stringify(value)}: ${why}`);
  };
  const type = property.type ?? "string";
  const range = INTEGER_RANGES[type];
  if (range) {
    if (!/^-?\d+$/.test(value)) fail(`not an integer (${type})`);
    const n = BigInt(value);
    if (n < range[0] || n > range[1]) fail(`outside the ${type} range ${range[0]}..${range[1]}`);
  } else if (type === "boolean") {
    if (!/^(true|false)$/i.test(value)) fail("not true or false");
  } else if (type === "real32" || type === "real64") {
    if (!Number.isFinite(Number(value))) fail(`not a number (${type})`);
  }
  const qualifiers = property.qualifiers ?? "";
  const maxLen = /MaxLen\((\d+)\)/.exec(qualifiers);
  if (maxLen && value.length > Number(maxLen[1])) fail(`longer than MaxLen(${maxLen[1]})`);
  const minLen = /MinLen\((\d+)\)/.exec(qualifiers);
  if (minLen && value.length < Number(minLen[1])) fail(`shorter than MinLen(${minLen[1]})`);
  const valueMap = /ValueMap\{([^}]*)\}/.exec(qualifiers);
  if (valueMap) {
    const allowed = [...valueMap[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    if (allowed.length > 0 && !allowed.includes(value)) fail(`not one of ${allowed.join(", ")}`);
  }
}

export interface EnvironmentOptions {
  /** `oe:id` of the Environment (the VirtualSystem id by default). */
  id?: string;
  /** PlatformSection values. */
  platform?: { kind?: string; version?: string; vendor?: string; locale?: string };
  /** Allow keys the descriptor does not declare. */
  allowUnknown?: boolean;
}

export interface Environment {
  xml: string;
  properties: { key: string; value: string }[];
}

/** Builds `ovf-env.xml`: every declared property with the given value or its default. */
export function buildEnvironment(
  envelope: OvfEnvelope,
  values: Record<string, string>,
  options: EnvironmentOptions = {},
): Environment {
  const declared = environmentProperties(envelope);
  const byKey = new Map(declared.map((p) => [p.key, p]));
  for (const key of Object.keys(values)) {
    if (!byKey.has(key) && !options.allowUnknown) {
      throw new OvfkitError(
        "ENV_UNKNOWN_PROPERTY",
        `the descriptor declares no property "${key}" (declared: ${declared.map((p) => p.key).join(", ") || "none"})`,
      );
    }
  }
  const properties: { key: string; value: string }[] = [];
  for (const property of declared) {
    const given = values[property.key];
    const value = given ?? property.defaultValue ?? "";
    if (given !== undefined) checkPropertyValue(property, given);
    properties.push({ key: property.key, value });
  }
  for (const [key, value] of Object.entries(values)) {
    if (!byKey.has(key)) properties.push({ key, value });
  }
  const id = options.id ?? envelope.virtualSystems[0]?.id ?? "";
  const platform = { kind: "ovfkit", version: "1", vendor: "ovfkit", locale: "en", ...options.platform };
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<Environment xmlns="${ENV_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:oe="${ENV_NS}" oe:id="${escapeAttribute(id)}">`,
    "  <PlatformSection>",
    `    <Kind>${escapeText(platform.kind)}</Kind>`,
    `    <Version>${escapeText(platform.version)}</Version>`,
    `    <Vendor>${escapeText(platform.vendor)}</Vendor>`,
    `    <Locale>${escapeText(platform.locale)}</Locale>`,
    "  </PlatformSection>",
    "  <PropertySection>",
    ...properties.map(
      (p) => `    <Property oe:key="${escapeAttribute(p.key)}" oe:value="${escapeAttribute(p.value)}"/>`,
    ),
    "  </PropertySection>",
    "</Environment>",
    "",
  ];
  return { xml: lines.join("\n"), properties };
}

/** Parses `key=value` command-line pairs (the value may contain `=`). */
export function parsePropertyPairs(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new OvfkitError("BAD_ARGUMENT", `--property ${pair}: expected key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Reads the descriptor of an `.ovf` or `.ova` and parses it. */
export async function readPackageDescriptor(path: string): Promise<OvfEnvelope> {
  if ((await packageKind(path)) === "ova") {
    const { name, bytes } = await descriptorOfOva(path);
    return parseOvf(bytes, { file: name });
  }
  return parseOvf(await readDescriptorFile(path), { file: path });
}

export interface WriteEnvironmentOptions extends EnvironmentOptions {
  overwrite?: boolean;
  /** Write the bare XML instead of an ISO (decided by a `.xml` output name otherwise). */
  xml?: boolean;
}

/**
 * Writes the environment for a package: an ISO 9660 image holding
 * `ovf-env.xml` (transport `iso`), or the XML itself for a `.xml` output.
 */
export async function writeEnvironment(
  packagePath: string,
  values: Record<string, string>,
  outPath: string,
  options: WriteEnvironmentOptions = {},
): Promise<Environment> {
  const envelope = await readPackageDescriptor(packagePath);
  const environment = buildEnvironment(envelope, values, options);
  const asXml = options.xml ?? extname(outPath).toLowerCase() === ".xml";
  const bytes = asXml
    ? Buffer.from(environment.xml)
    : buildIso9660([{ name: "ovf-env.xml", data: Buffer.from(environment.xml) }], {
        volumeId: "OVF ENV",
        mtime: reproducibleMtime(),
      });
  await withOutputs(
    async (tx) => {
      await writeFile(tx.file(outPath), bytes);
    },
    { overwrite: options.overwrite },
  );
  return environment;
}
