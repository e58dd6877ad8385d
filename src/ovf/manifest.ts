import { createHash, type Hash } from "node:crypto";
import { OvfkitError } from "../errors.js";

/**
 * OVF manifests (`.mf`, DSP0243 §5.1): one line per file,
 * `ALG(name)= hexdigest`, algorithms may differ from line to line.
 *
 * The exact spelling matters to importers (targets.md check 2): vCenter
 * rejects coreutils' `sha256sum --tag` spacing `SHA256 (f) = h` and
 * OpenSSL 3's `SHA2-256(f)= h`; virt-v2v accepts only SHA1/SHA256.
 */

export type ManifestAlgorithm = "SHA1" | "SHA256" | "SHA512";
export const MANIFEST_ALGORITHMS: readonly ManifestAlgorithm[] = ["SHA1", "SHA256", "SHA512"];

/** Hex digits of each algorithm's digest. */
export const DIGEST_HEX_LENGTH: Record<ManifestAlgorithm, number> = { SHA1: 40, SHA256: 64, SHA512: 128 };

/** node:crypto's name for each manifest algorithm. */
export const NODE_HASH: Record<ManifestAlgorithm, string> = {
  SHA1: "sha1",
  SHA256: "sha256",
  SHA512: "sha512",
};

export type Severity = "error" | "warning" | "info";

/** One problem found in a package (manifest, certificate, tar layout, References). */
export interface PackageFinding {
  code: string;
  severity: Severity;
  message: string;
  file?: string;
  line?: number;
  column?: number;
  offset?: number;
}

export interface ManifestEntry {
  algorithm: ManifestAlgorithm;
  name: string;
  /** Lower-case hex. */
  digest: string;
  /** 1-based line in the manifest. */
  line: number;
}

export interface ParsedManifest {
  entries: ManifestEntry[];
  findings: PackageFinding[];
}

export interface ManifestParseOptions {
  /** Name of the manifest itself (for locations and the "lists itself" check). */
  file?: string;
  /** Strict: spacing variants and CRLF line ends are errors instead of warnings. */
  strict?: boolean;
}

const EXACT_LINE = /^([A-Za-z0-9-]+)\(([^\r\n]*)\)= ([0-9A-Fa-f]+)$/;
/** `SHA256 (f) = h` (coreutils --tag) and other spacing around the parts. */
const LOOSE_LINE = /^([A-Za-z0-9-]+)\s*\(([^\r\n]*)\)\s*=\s*([0-9A-Fa-f]+)\s*$/;

function isAlgorithm(name: string): name is ManifestAlgorithm {
  return (MANIFEST_ALGORITHMS as readonly string[]).includes(name);
}

/**
 * Parses a manifest, collecting every problem with its line number rather
 * than stopping at the first: a verifier reports them all.
 */
export function parseManifest(text: string, options: ManifestParseOptions = {}): ParsedManifest {
  const file = options.file;
  const entries: ManifestEntry[] = [];
  const findings: PackageFinding[] = [];
  const byName = new Map<string, ManifestEntry>();
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const add = (code: string, severity: Severity, line: number, message: string): void => {
    findings.push({ code, severity, message, file, line, column: 1 });
  };
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    let line = raw;
    if (line.endsWith("\r")) {
      add(
        "MANIFEST_CRLF",
        options.strict ? "error" : "warning",
        lineNo,
        "line ends with CR LF; ovftool writes LF only",
      );
      line = line.slice(0, -1);
    }
    if (line.trim() === "") {
      add("MANIFEST_BLANK_LINE", "warning", lineNo, "blank line in manifest");
      return;
    }
    let match = EXACT_LINE.exec(line);
    if (!match) {
      match = LOOSE_LINE.exec(line);
      if (!match) {
        add("MANIFEST_SYNTAX", "error", lineNo, `not a manifest line (expected "ALG(file)= hex"): ${line}`);
        return;
      }
      add(
        "MANIFEST_SPACING",
        options.strict ? "error" : "warning",
        lineNo,
        `spacing differs from "ALG(file)= hex" (coreutils --tag style); vCenter rejects it: ${line}`,
      );
    }
    const [, algorithm, name, hex] = match as unknown as [string, string, string, string];
    if (!isAlgorithm(algorithm)) {
      add(
        "MANIFEST_ALGORITHM",
        "error",
        lineNo,
        `unknown digest algorithm "${algorithm}" (SHA1, SHA256 or SHA512; OpenSSL 3's SHA2-256 spelling is rejected by vCenter)`,
      );
      return;
    }
    if (hex.length !== DIGEST_HEX_LENGTH[algorithm]) {
      add(
        "MANIFEST_DIGEST_LENGTH",
        "error",
        lineNo,
        `${algorithm} digest of ${name} has ${hex.length} hex digits, expected ${DIGEST_HEX_LENGTH[algorithm]}`,
      );
      return;
    }
    if (file && name === baseName(file)) {
      add("MANIFEST_SELF", "error", lineNo, `the manifest lists itself (${name})`);
      return;
    }
    const previous = byName.get(name);
    if (previous) {
      add("MANIFEST_DUPLICATE", "error", lineNo, `${name} is listed twice (first on line ${previous.line})`);
      return;
    }
    const entry: ManifestEntry = { algorithm, name, digest: hex.toLowerCase(), line: lineNo };
    byName.set(name, entry);
    entries.push(entry);
  });
  return { entries, findings };
}

function baseName(path: string): string {
  return path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1);
}

/** Parses a manifest and throws the first error (for commands that need a usable manifest). */
export function parseManifestStrict(text: string, options: ManifestParseOptions = {}): ManifestEntry[] {
  const { entries, findings } = parseManifest(text, options);
  const error = findings.find((f) => f.severity === "error");
  if (error)
    throw new OvfkitError(error.code, error.message, { file: error.file, line: error.line, column: 1 });
  return entries;
}

/** The manifest text ovftool writes: `ALG(name)= hex` lines, LF ends. */
export function formatManifest(
  entries: ReadonlyArray<Pick<ManifestEntry, "algorithm" | "name" | "digest">>,
): string {
  return entries.map((e) => `${e.algorithm}(${e.name})= ${e.digest}\n`).join("");
}

/** Byte length of a manifest line, known before the digest is (pack reserves the space). */
export function manifestLineLength(algorithm: ManifestAlgorithm, name: string): number {
  return Buffer.byteLength(`${algorithm}(${name})= \n`, "utf8") + DIGEST_HEX_LENGTH[algorithm];
}

/** Parses `--algorithm` / `--manifest` values: sha1, SHA256, sha-512... */
export function parseAlgorithm(value: string): ManifestAlgorithm {
  const upper = value.toUpperCase().replace("-", "");
  if (isAlgorithm(upper)) return upper;
  throw new OvfkitError("MANIFEST_ALGORITHM", `unknown digest algorithm "${value}" (sha1, sha256 or sha512)`);
}

/** Several digests of one byte stream at once (when the algorithm is not known in advance). */
export class MultiHash {
  private readonly hashes: Map<ManifestAlgorithm, Hash>;
  constructor(algorithms: Iterable<ManifestAlgorithm>) {
    this.hashes = new Map([...new Set(algorithms)].map((a) => [a, createHash(NODE_HASH[a])]));
  }
  update(chunk: Uint8Array): void {
    for (const hash of this.hashes.values()) hash.update(chunk);
  }
  digests(): Map<ManifestAlgorithm, string> {
    return new Map([...this.hashes].map(([a, h]) => [a, h.digest("hex")]));
  }
}
