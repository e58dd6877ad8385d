import { createReadStream } from "node:fs";
import { open, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, extname, join, sep } from "node:path";
import { asOvfkitError, isOvfkitError, OvfkitError } from "../errors.js";
import { type CertificateReport, parseCertificateFile, verifyCertificate } from "./cert.js";
import {
  MANIFEST_ALGORITHMS,
  type ManifestAlgorithm,
  type ManifestEntry,
  MultiHash,
  type PackageFinding,
  parseManifest,
} from "./manifest.js";
import type { OvfEnvelope, OvfFile } from "./model.js";
import { parseOvf } from "./parse.js";
import { checkMemberName, compressionOf, TarReader } from "./tar.js";

/**
 * Opening and verifying OVF packages: an OVA (one tar) or an OVF folder
 * (descriptor + files beside it). Verification is ONE streaming pass over
 * an OVA: each member is hashed as its bytes go by and nothing is written
 * to disk; the checks that need everything (manifest ↔ members ↔
 * References ↔ certificate) run on the collected digests and sizes.
 */

export type PackageKind = "ova" | "ovf";

/** What the pass learnt about one file of the package. */
export interface PackageMember {
  name: string;
  size: number;
  /** Digests computed while streaming (lower-case hex), by algorithm. */
  digests: Partial<Record<ManifestAlgorithm, string>>;
  /** Byte offset of the tar header (OVA only). */
  offset?: number;
}

export interface VerifyOptions {
  /** PEM CA bundle the signer must chain to. */
  ca?: string;
  /** Warnings count as failures, and spacing variants / descriptor order become errors. */
  strict?: boolean;
  /** "Now" for certificate validity (tests). */
  now?: Date;
  /** Called with the bytes hashed so far (progress bars). */
  onProgress?: (bytes: number) => void;
}

export interface VerifyReport {
  package: string;
  kind: PackageKind;
  descriptor?: string;
  manifest?: string;
  certificate?: string;
  members: PackageMember[];
  findings: PackageFinding[];
  certificateInfo?: Omit<CertificateReport, "findings">;
  /** Bytes read and hashed. */
  bytesHashed: number;
  /** No error (and, with `strict`, no warning). */
  ok: boolean;
}

/** Which kind of package a path is: by content for tars, else by the `.ovf` name. */
export async function packageKind(path: string): Promise<PackageKind> {
  const ext = extname(path).toLowerCase();
  if (ext === ".ovf") return "ovf";
  if (ext === ".ova") return "ova";
  const head = Buffer.alloc(512);
  const handle = await open(path, "r").catch((error: unknown) => {
    throw asOvfkitError(error, path);
  });
  try {
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    return bytesRead === 512 && head.toString("latin1", 257, 262) === "ustar" ? "ova" : "ovf";
  } finally {
    await handle.close();
  }
}

/** Refuses an `ovf:href` that would leave the package (notes/ovf.md "References to check"). */
export function checkHref(href: string, file?: string): void {
  if (/^[a-z][a-z0-9+.-]*:/i.test(href) && !/^[A-Za-z]:[/\\]/.test(href)) {
    throw new OvfkitError(
      "OVF_HREF_REMOTE",
      `ovf:href "${href}" is a URL; only files inside the package are used`,
      {
        file,
      },
    );
  }
  try {
    checkMemberName(href, file ?? href, 0);
  } catch (error) {
    if (isOvfkitError(error)) {
      throw new OvfkitError(
        error.code === "OVA_MEMBER_PATH" ? "OVF_HREF_PATH" : "OVF_HREF_UNSAFE",
        `ovf:href "${href}": ${error.message.replace(/^tar member "[^"]*" /, "")}`,
        { file },
      );
    }
    throw error;
  }
}

/**
 * Refuses a referenced file of an OVF folder that resolves outside the
 * folder through a symbolic link (`disk.vmdk -> ~/.ssh/id_rsa`): packing
 * or hashing it would carry a file that is not part of the package.
 */
export async function checkInsideFolder(folder: string, name: string, file?: string): Promise<void> {
  const [root, target] = await Promise.all([realpath(folder), realpath(join(folder, name))]).catch(() => [
    undefined,
    undefined,
  ]);
  if (root === undefined || target === undefined) return; // missing files are reported by the callers
  if (target !== root && !target.startsWith(`${root}${sep}`)) {
    throw new OvfkitError(
      "OVF_HREF_UNSAFE",
      `ovf:href "${name}" is a symbolic link to ${target}, outside the package folder`,
      { file },
    );
  }
}

/** Names of the pieces of a file split with ovf:chunkSize: `name.000000000`, ... (DSP0243 §5.3). */
export function chunkName(href: string, index: number): string {
  return `${href}.${String(index).padStart(9, "0")}`;
}

async function compressionOfFile(path: string): Promise<string | undefined> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(8);
    await handle.read(head, 0, 8, 0);
    return compressionOf(head);
  } finally {
    await handle.close();
  }
}

function finding(
  code: string,
  severity: PackageFinding["severity"],
  message: string,
  where: Omit<PackageFinding, "code" | "severity" | "message"> = {},
): PackageFinding {
  return { code, severity, message, ...where };
}

function errorFinding(error: OvfkitError): PackageFinding {
  return finding(error.code, "error", error.message, {
    file: error.file,
    offset: error.offset,
    line: error.line,
    column: error.column,
  });
}

/** Errors that mean "could not run" (exit 2) rather than "the package is bad". */
const COULD_NOT_RUN = new Set(["FILE_NOT_FOUND", "PERMISSION_DENIED", "IS_A_DIRECTORY", "IO_ERROR"]);

/** The small pieces of a package that the cross-checks need (what one pass collects). */
export interface CollectedPackage {
  descriptorName?: string;
  descriptor?: Buffer;
  manifestName?: string;
  manifest?: Buffer;
  certificateName?: string;
  certificate?: Buffer;
  members: PackageMember[];
  findings: PackageFinding[];
  bytesHashed: number;
}

/**
 * Verifies a package: manifest (syntax with line numbers, every file
 * listed, every digest), certificate (signature, dates, chain), References
 * (hrefs, presence, sizes, chunks) and, for an OVA, the tar layout.
 * Throws only when it could not run (file missing, unreadable).
 */
export async function verifyPackage(path: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const kind = await packageKind(path);
  const collected = kind === "ova" ? await collectOva(path, options) : await collectOvfFolder(path, options);
  return analysePackage(collected, path, kind, options);
}

/** Runs the whole-package checks on what a pass collected (verify, and unpack while extracting). */
export function analysePackage(
  collected: CollectedPackage,
  path: string,
  kind: PackageKind,
  options: VerifyOptions = {},
): VerifyReport {
  const report: VerifyReport = {
    package: path,
    kind,
    descriptor: collected.descriptorName,
    manifest: collected.manifestName,
    certificate: collected.certificateName,
    members: collected.members,
    findings: collected.findings,
    bytesHashed: collected.bytesHashed,
    ok: false,
  };
  crossCheck(collected, report, options);
  report.ok = !report.findings.some(
    (f) => f.severity === "error" || (options.strict && f.severity === "warning"),
  );
  return report;
}

/** One pass over the tar: layout checks, small members kept, the rest hashed as they stream by. */
async function collectOva(path: string, options: VerifyOptions): Promise<CollectedPackage> {
  const collected: CollectedPackage = { members: [], findings: [], bytesHashed: 0 };
  const compression = await compressionOfFile(path).catch((error: unknown) => {
    throw asOvfkitError(error, path);
  });
  if (compression) {
    collected.findings.push(
      finding(
        "OVA_COMPRESSED",
        "error",
        `the OVA is ${compression}-compressed; an OVA must be a plain tar (vSphere and AWS refuse compressed OVAs)`,
        { file: path, offset: 0 },
      ),
    );
    return collected;
  }
  const reader = await TarReader.open(path, { ova: true });
  let manifestEntries: Map<string, ManifestEntry> | undefined;
  try {
    let index = 0;
    for await (const member of reader.members()) {
      const lower = member.name.toLowerCase();
      const record: PackageMember = {
        name: member.name,
        size: member.size,
        digests: {},
        offset: member.headerOffset,
      };
      collected.members.push(record);
      if (member.extendedHeader) {
        collected.findings.push(
          finding(
            "OVA_EXTENDED_HEADER",
            "warning",
            `tar member ${member.name} has a PAX or GNU long-name header; vSphere refuses those`,
            { file: path, offset: member.headerOffset },
          ),
        );
      }
      if (lower.endsWith(".ovf")) {
        if (collected.descriptor) {
          collected.findings.push(
            finding(
              "OVA_MULTIPLE_DESCRIPTORS",
              "error",
              `second descriptor ${member.name} (first: ${collected.descriptorName})`,
              {
                file: path,
                offset: member.headerOffset,
              },
            ),
          );
          continue;
        }
        if (index !== 0) {
          collected.findings.push(
            finding(
              "OVA_DESCRIPTOR_NOT_FIRST",
              options.strict ? "error" : "warning",
              `descriptor ${member.name} is member ${index + 1}; DSP0243 and vSphere want it first`,
              { file: path, offset: member.headerOffset },
            ),
          );
        }
        collected.descriptorName = member.name;
        collected.descriptor = await reader.readSmall();
        hashSmall(record, collected.descriptor, MANIFEST_ALGORITHMS);
      } else if (lower.endsWith(".mf") && !collected.manifest) {
        collected.manifestName = member.name;
        collected.manifest = await reader.readSmall();
        const parsed = parseManifest(collected.manifest.toString("utf8"), { file: member.name });
        manifestEntries = new Map(parsed.entries.map((e) => [e.name, e]));
      } else if (lower.endsWith(".cert") && !collected.certificate) {
        collected.certificateName = member.name;
        collected.certificate = await reader.readSmall();
        hashSmall(record, collected.certificate, MANIFEST_ALGORITHMS);
      } else {
        // The algorithm is the manifest's when it came first (the usual layout); otherwise all three.
        const entry = manifestEntries?.get(member.name);
        const algorithms = manifestEntries ? (entry ? [entry.algorithm] : []) : MANIFEST_ALGORITHMS;
        if (algorithms.length === 0) continue; // not listed: reported later, no digest needed
        const hash = new MultiHash(algorithms);
        for await (const chunk of reader.body()) {
          hash.update(chunk);
          collected.bytesHashed += chunk.length;
          options.onProgress?.(collected.bytesHashed);
        }
        record.digests = Object.fromEntries(hash.digests());
      }
      index++;
    }
    if (!reader.endMarker) {
      collected.findings.push(
        finding(
          "OVA_NO_END_MARKER",
          "warning",
          "tar archive ends without the two zero blocks of an end-of-archive marker",
          {
            file: path,
            offset: reader.fileSize,
          },
        ),
      );
    }
  } catch (error) {
    const typed = asOvfkitError(error, path);
    if (COULD_NOT_RUN.has(typed.code)) throw typed;
    collected.findings.push(errorFinding(typed));
  } finally {
    await reader.close();
  }
  if (!collected.descriptor && !collected.findings.some((f) => f.severity === "error")) {
    collected.findings.push(
      finding("OVA_NO_DESCRIPTOR", "error", "the OVA holds no .ovf descriptor", { file: path }),
    );
  }
  return collected;
}

export function hashSmall(
  record: PackageMember,
  data: Buffer,
  algorithms: readonly ManifestAlgorithm[],
): void {
  const hash = new MultiHash(algorithms);
  hash.update(data);
  record.digests = Object.fromEntries(hash.digests());
}

/** An OVF folder: the descriptor, `NAME.mf`/`NAME.cert` beside it, and every referenced file. */
async function collectOvfFolder(path: string, options: VerifyOptions): Promise<CollectedPackage> {
  const collected: CollectedPackage = { members: [], findings: [], bytesHashed: 0 };
  const folder = dirname(path);
  const stem = basename(path).replace(/\.[^.]*$/, "");
  collected.descriptorName = basename(path);
  try {
    collected.descriptor = await readFile(path);
  } catch (error) {
    throw asOvfkitError(error, path);
  }
  const descriptorRecord: PackageMember = {
    name: basename(path),
    size: collected.descriptor.length,
    digests: {},
  };
  hashSmall(descriptorRecord, collected.descriptor, MANIFEST_ALGORITHMS);
  collected.members.push(descriptorRecord);
  for (const [ext, key] of [
    [".mf", "manifest"],
    [".cert", "certificate"],
  ] as const) {
    const name = `${stem}${ext}`;
    const data = await readFile(join(folder, name)).catch(() => undefined);
    if (data) {
      collected[key] = data;
      collected[key === "manifest" ? "manifestName" : "certificateName"] = name;
    }
  }
  const manifest = collected.manifest
    ? parseManifest(collected.manifest.toString("utf8"), { file: collected.manifestName })
    : undefined;
  const algorithmOf = new Map(manifest?.entries.map((e) => [e.name, e.algorithm]));
  // Files the descriptor references (and their chunks) plus anything the manifest lists.
  const names = new Set<string>();
  for (const file of referencedFiles(collected.descriptor, path)) {
    if (!file.href) continue;
    try {
      checkHref(file.href, path);
    } catch {
      continue; // reported by the cross-check
    }
    if (file.chunkSize) {
      for (let i = 0; ; i++) {
        const piece = chunkName(file.href, i);
        if (!(await exists(join(folder, piece)))) break;
        names.add(piece);
      }
    } else {
      names.add(file.href);
    }
  }
  for (const entry of manifest?.entries ?? []) {
    try {
      checkMemberName(entry.name, collected.manifestName ?? path, 0);
      names.add(entry.name);
    } catch {
      // an unsafe manifest name is never opened; the cross-check reports it as missing
    }
  }
  names.delete(collected.descriptorName);
  for (const name of names) {
    const full = join(folder, name);
    const info = await stat(full).catch(() => undefined);
    if (!info?.isFile()) continue;
    try {
      await checkInsideFolder(folder, name, path);
    } catch (error) {
      collected.findings.push(errorFinding(asOvfkitError(error, path)));
      continue;
    }
    const record: PackageMember = { name, size: info.size, digests: {} };
    const algorithm = algorithmOf.get(name);
    if (algorithm) {
      const hash = new MultiHash([algorithm]);
      for await (const chunk of createReadStream(full, { highWaterMark: 4 * 1024 * 1024 })) {
        hash.update(chunk as Buffer);
        collected.bytesHashed += (chunk as Buffer).length;
        options.onProgress?.(collected.bytesHashed);
      }
      record.digests = Object.fromEntries(hash.digests());
    }
    collected.members.push(record);
  }
  return collected;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** References/File entries of a descriptor that parses; none when it does not (reported elsewhere). */
function referencedFiles(descriptor: Buffer, file: string): OvfFile[] {
  try {
    return parseOvf(descriptor, { file }).files;
  } catch {
    return [];
  }
}

/** The checks that need the whole package: descriptor ↔ members ↔ manifest ↔ certificate. */
function crossCheck(collected: CollectedPackage, report: VerifyReport, options: VerifyOptions): void {
  const findings = report.findings;
  const members = new Map(collected.members.map((m) => [m.name, m]));
  const descriptorFile = collected.descriptorName;
  let envelope: OvfEnvelope | undefined;
  if (collected.descriptor) {
    try {
      envelope = parseOvf(collected.descriptor, { file: descriptorFile });
    } catch (error) {
      findings.push(errorFinding(asOvfkitError(error, descriptorFile)));
    }
  }
  const referenced = new Set<string>();
  if (envelope) checkReferences(envelope, members, referenced, findings, descriptorFile);
  if (envelope) {
    for (const member of collected.members) {
      const special = [collected.descriptorName, collected.manifestName, collected.certificateName];
      if (!special.includes(member.name) && !referenced.has(member.name)) {
        findings.push(
          finding(
            "OVF_FILE_UNREFERENCED",
            "warning",
            `${member.name} is in the package but not in References`,
            {
              file: descriptorFile,
            },
          ),
        );
      }
    }
  }
  checkManifest(collected, members, findings, options);
  if (collected.certificate && collected.certificateName) {
    checkCertificate(collected, report, options);
  }
  if (report.kind === "ova" && envelope) checkOrder(collected, envelope, findings, report.package);
}

function checkReferences(
  envelope: OvfEnvelope,
  members: Map<string, PackageMember>,
  referenced: Set<string>,
  findings: PackageFinding[],
  descriptorFile: string | undefined,
): void {
  for (const file of envelope.files) {
    const where = {
      file: descriptorFile,
      line: file.element.position.line,
      column: file.element.position.column,
    };
    const href = file.href;
    if (!href) {
      findings.push(finding("OVF_FILE_NO_HREF", "error", `File ${file.id ?? "?"} has no ovf:href`, where));
      continue;
    }
    try {
      checkHref(href, descriptorFile);
    } catch (error) {
      const typed = asOvfkitError(error);
      findings.push(
        finding(typed.code, typed.code === "OVF_HREF_REMOTE" ? "warning" : "error", typed.message, where),
      );
      continue;
    }
    let actual: number | undefined;
    if (file.chunkSize !== undefined) {
      const chunk = Number(file.chunkSize);
      let total = 0;
      let count = 0;
      for (let i = 0; members.has(chunkName(href, i)); i++) {
        const piece = members.get(chunkName(href, i))!;
        referenced.add(piece.name);
        if (members.has(chunkName(href, i + 1)) && piece.size !== chunk) {
          findings.push(
            finding(
              "OVF_CHUNK_SIZE",
              "error",
              `${piece.name} is ${piece.size} bytes, ovf:chunkSize says ${chunk}`,
              where,
            ),
          );
        }
        total += piece.size;
        count++;
      }
      if (count > 0) actual = total;
    } else if (members.has(href)) {
      referenced.add(href);
      actual = members.get(href)!.size;
    }
    if (actual === undefined) {
      findings.push(
        finding(
          "OVF_FILE_MISSING",
          "error",
          `File ${file.id ?? "?"} (${href}) is referenced but not in the package`,
          where,
        ),
      );
      continue;
    }
    if (file.size !== undefined) {
      const declared = Number(file.size);
      if (!/^\d+$/.test(file.size.trim())) {
        findings.push(
          finding(
            "OVF_FILE_SIZE_INVALID",
            "error",
            `File ${href}: ovf:size "${file.size}" is not a byte count`,
            where,
          ),
        );
      } else if (declared !== actual) {
        findings.push(
          finding(
            "OVF_FILE_SIZE_MISMATCH",
            "error",
            `File ${href}: ovf:size is ${declared} but the file is ${actual} bytes`,
            where,
          ),
        );
      }
    }
  }
}

function checkManifest(
  collected: CollectedPackage,
  members: Map<string, PackageMember>,
  findings: PackageFinding[],
  options: VerifyOptions,
): void {
  const mfName = collected.manifestName;
  if (!collected.manifest || !mfName) {
    findings.push(
      finding("MANIFEST_MISSING", "info", "the package has no manifest (.mf): nothing proves its integrity"),
    );
    return;
  }
  const stem = collected.descriptorName?.replace(/\.[^.]*$/, "");
  if (stem && mfName !== `${stem}.mf`) {
    findings.push(
      finding(
        "MANIFEST_NAME",
        "warning",
        `manifest ${mfName} is not named after the descriptor (${stem}.mf)`,
        {
          file: mfName,
        },
      ),
    );
  }
  const parsed = parseManifest(collected.manifest.toString("utf8"), { file: mfName, strict: options.strict });
  findings.push(...parsed.findings);
  const listed = new Set<string>();
  for (const entry of parsed.entries) {
    listed.add(entry.name);
    const member = members.get(entry.name);
    const where = { file: mfName, line: entry.line, column: 1 };
    if (!member) {
      findings.push(
        finding(
          "MANIFEST_FILE_MISSING",
          "error",
          `${entry.name} is in the manifest but not in the package`,
          where,
        ),
      );
      continue;
    }
    const actual = member.digests[entry.algorithm];
    if (actual === undefined) continue; // not hashed: only when an earlier error stopped the pass
    if (actual !== entry.digest) {
      findings.push(
        finding(
          "MANIFEST_DIGEST_MISMATCH",
          "error",
          `${entry.algorithm} of ${entry.name} is ${actual}, the manifest says ${entry.digest} (file changed after the manifest was made)`,
          where,
        ),
      );
    }
  }
  for (const member of collected.members) {
    if (member.name === mfName || member.name === collected.certificateName) continue;
    if (!listed.has(member.name)) {
      findings.push(
        finding(
          member.name === collected.descriptorName
            ? "MANIFEST_DESCRIPTOR_NOT_LISTED"
            : "MANIFEST_FILE_NOT_LISTED",
          "error",
          `${member.name} is in the package but not in the manifest`,
          { file: mfName },
        ),
      );
    }
  }
}

function checkCertificate(collected: CollectedPackage, report: VerifyReport, options: VerifyOptions): void {
  const certName = collected.certificateName!;
  if (!collected.manifest || !collected.manifestName) {
    report.findings.push(
      finding("CERT_WITHOUT_MANIFEST", "error", `${certName} signs a manifest the package does not have`, {
        file: certName,
      }),
    );
    return;
  }
  try {
    const parsed = parseCertificateFile(collected.certificate!.toString("utf8"), certName);
    const result = verifyCertificate(parsed, collected.manifest, collected.manifestName, {
      ca: options.ca,
      now: options.now,
      file: certName,
    });
    const { findings, ...info } = result;
    report.findings.push(...findings);
    report.certificateInfo = info;
  } catch (error) {
    report.findings.push(errorFinding(asOvfkitError(error, certName)));
  }
}

/** DSP0243 §5.3 layout: descriptor, manifest, certificate, then files in References order. */
function checkOrder(
  collected: CollectedPackage,
  envelope: OvfEnvelope,
  findings: PackageFinding[],
  path: string,
): void {
  const order = collected.members.map((m) => m.name);
  const mf = collected.manifestName ? order.indexOf(collected.manifestName) : -1;
  const cert = collected.certificateName ? order.indexOf(collected.certificateName) : -1;
  const firstData = order.findIndex(
    (name) =>
      name !== collected.descriptorName &&
      name !== collected.manifestName &&
      name !== collected.certificateName,
  );
  if ((mf > firstData && firstData !== -1) || (cert > firstData && firstData !== -1)) {
    findings.push(
      finding(
        "OVA_MANIFEST_ORDER",
        "info",
        "manifest/certificate come after the files (allowed; ovftool puts them right after the descriptor)",
        {
          file: path,
        },
      ),
    );
  }
  const hrefs = envelope.files.map((f) => f.href).filter((h): h is string => Boolean(h));
  const positions = hrefs
    .map((h) => order.findIndex((name) => name === h || name.startsWith(`${h}.`)))
    .filter((i) => i >= 0);
  if (positions.some((p, i) => i > 0 && p < positions[i - 1]!)) {
    findings.push(
      finding(
        "OVA_REFERENCES_ORDER",
        "warning",
        "files are not in References order (streaming importers read them in that order)",
        { file: path },
      ),
    );
  }
}
