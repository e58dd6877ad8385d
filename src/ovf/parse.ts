import { readFile, stat } from "node:fs/promises";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { OvfEnvelope } from "./model.js";
import { DEFAULT_XML_LIMITS, parseXml, type XmlLimits } from "./xml.js";

/**
 * Descriptor bytes → text → model. The encoding is decided from the bytes
 * (BOM, else UTF-8) rather than trusted from the declaration: one real
 * XenCenter export declares UTF-16 but is UTF-8, and the importers read it.
 */

export interface DecodedDescriptor {
  text: string;
  /** Encoding actually used to decode. */
  encoding: "utf-8" | "utf-16le" | "utf-16be";
  /** The `encoding=` of the XML declaration, if any. */
  declaredEncoding: string | undefined;
}

const DECLARED_ENCODING = /^<\?xml[^>]*\bencoding\s*=\s*["']([^"']+)["']/;

export function decodeDescriptor(bytes: Uint8Array, file?: string): DecodedDescriptor {
  let encoding: DecodedDescriptor["encoding"] = "utf-8";
  let start = 0;
  if (bytes[0] === 0xff && bytes[1] === 0xfe) {
    encoding = "utf-16le";
    start = 2;
  } else if (bytes[0] === 0xfe && bytes[1] === 0xff) {
    encoding = "utf-16be";
    start = 2;
  } else if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    start = 3;
  } else if (bytes[0] === 0x3c && bytes[1] === 0x00) {
    encoding = "utf-16le"; // "<\0" without BOM
  } else if (bytes[0] === 0x00 && bytes[1] === 0x3c) {
    encoding = "utf-16be";
  }
  let text: string;
  try {
    text = new TextDecoder(encoding, { fatal: true }).decode(bytes.subarray(start));
  } catch (error) {
    throw new OvfkitError("OVF_XML_ENCODING", `descriptor is not valid ${encoding.toUpperCase()}`, {
      file,
      offset: 0,
      cause: error,
    });
  }
  return { text, encoding, declaredEncoding: DECLARED_ENCODING.exec(text)?.[1] };
}

export interface ParseOvfOptions {
  /** Shown in errors and findings. */
  file?: string;
  limits?: Partial<XmlLimits>;
}

/** Parses descriptor text or bytes into the model. Throws OvfkitError (OVF_XML_*) on bad XML. */
export function parseOvf(input: string | Uint8Array, options: ParseOvfOptions = {}): OvfEnvelope {
  const text = typeof input === "string" ? input : decodeDescriptor(input, options.file).text;
  const document = parseXml(text, { file: options.file, limits: options.limits });
  return new OvfEnvelope(document, options.file);
}

/** Reads and parses a .ovf file (size-limited before reading). */
export async function readOvf(
  path: string,
  options: Omit<ParseOvfOptions, "file"> = {},
): Promise<OvfEnvelope> {
  const bytes = await readDescriptorFile(path, options.limits);
  return parseOvf(bytes, { ...options, file: path });
}

/** Reads a descriptor's bytes, refusing files over the size limit (a descriptor is never gigabytes). */
export async function readDescriptorFile(path: string, limits: Partial<XmlLimits> = {}): Promise<Uint8Array> {
  const maxBytes = (limits.maxChars ?? DEFAULT_XML_LIMITS.maxChars) * 4;
  try {
    const info = await stat(path);
    if (info.size > maxBytes) {
      throw new OvfkitError(
        "OVF_XML_TOO_LARGE",
        `descriptor is ${info.size} bytes, over the ${maxBytes} limit`,
        {
          file: path,
        },
      );
    }
    return await readFile(path);
  } catch (error) {
    throw asOvfkitError(error, path);
  }
}
