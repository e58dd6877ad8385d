import { createReadStream } from "node:fs";
import { mkdir, open, readFile, stat, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { type OutputTransaction, withOutputs } from "../formats/output.js";
import {
  parseCertificateFile,
  type SignOptions,
  signedCertificateLength,
  signManifest,
  verifyCertificate,
} from "./cert.js";
import {
  formatManifest,
  MANIFEST_ALGORITHMS,
  type ManifestAlgorithm,
  type ManifestEntry,
  MultiHash,
  manifestLineLength,
  parseManifest,
  parseManifestStrict,
} from "./manifest.js";
import type { OvfEnvelope } from "./model.js";
import {
  analysePackage,
  type CollectedPackage,
  checkHref,
  checkInsideFolder,
  chunkName,
  hashSmall,
  type PackageMember,
  type VerifyOptions,
  type VerifyReport,
} from "./ova.js";
import { setOvfAttribute } from "./ovf-attr.js";
import { parseOvf, readDescriptorFile } from "./parse.js";
import { serializeOvfBytes } from "./serialize.js";
import { DEFAULT_MODE, DEFAULT_OWNER, type TarHeaderFields, TarReader, TarWriter } from "./tar.js";

/**
 * Building and taking apart packages: `pack` (OVF folder → OVA),
 * `unpack` (OVA → folder, verified while extracting), manifest creation
 * and signing. Every output goes through `withOutputs`: written to a
 * temporary file beside the target and renamed at the end, so an error or
 * Ctrl-C leaves nothing behind.
 */

export interface PackOptions {
  /** Manifest digest algorithm; `false` for no manifest. Default SHA256 (ovftool ≥ 4.2's default). */
  manifest?: ManifestAlgorithm | false;
  /** Sign the manifest (writes `NAME.cert`). */
  sign?: SignOptions;
  /** Fixed owner/mode and mtime = SOURCE_DATE_EPOCH (or 0) so two packs are byte-identical. */
  reproducible?: boolean;
  /** Split files bigger than this into `href.000000000`, ... and set `ovf:chunkSize` (DSP0243 §5.3). */
  chunkSize?: number;
  overwrite?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** One tar member of a pack: a whole file or a byte range of one (a chunk, or a member of another OVA). */
export interface PackMember {
  name: string;
  source: string;
  start: number;
  size: number;
  mtime: number;
}

export interface PackResult {
  output: string;
  members: { name: string; size: number; digest?: string }[];
  manifest?: string;
  certificate?: string;
}

/** mtime for reproducible output: SOURCE_DATE_EPOCH (reproducible-builds.org) or 0. */
export function reproducibleMtime(): number {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && /^\d+$/.test(epoch)) return Number(epoch);
  return 0;
}

/** The descriptor's referenced files in References order, checked to exist with the declared sizes. */
async function plannedMembers(
  envelope: OvfEnvelope,
  folder: string,
  descriptorFile: string,
  reproducible: boolean,
): Promise<PackMember[]> {
  const members: PackMember[] = [];
  const mtime = (m: Date): number => (reproducible ? reproducibleMtime() : Math.floor(m.getTime() / 1000));
  for (const file of envelope.files) {
    const where = {
      file: descriptorFile,
      line: file.element.position.line,
      column: file.element.position.column,
    };
    if (!file.href)
      throw new OvfkitError("OVF_FILE_NO_HREF", `File ${file.id ?? "?"} has no ovf:href`, where);
    checkHref(file.href, descriptorFile);
    if (file.chunkSize !== undefined) {
      // Already split on disk: pack the pieces as they are.
      let total = 0;
      for (let i = 0; ; i++) {
        const name = chunkName(file.href, i);
        const info = await stat(join(folder, name)).catch(() => undefined);
        if (!info) break;
        await checkInsideFolder(folder, name, descriptorFile);
        members.push({
          name,
          source: join(folder, name),
          start: 0,
          size: info.size,
          mtime: mtime(info.mtime),
        });
        total += info.size;
      }
      if (total === 0) {
        throw new OvfkitError(
          "OVF_FILE_MISSING",
          `no chunks ${chunkName(file.href, 0)}... for File ${file.id}`,
          where,
        );
      }
      checkDeclaredSize(file.size, total, file.href, where);
      continue;
    }
    const path = join(folder, file.href);
    const info = await stat(path).catch((error: unknown) => {
      throw new OvfkitError(
        "OVF_FILE_MISSING",
        `File ${file.id ?? "?"} (${file.href}) not found beside the descriptor`,
        {
          ...where,
          cause: error,
        },
      );
    });
    if (!info.isFile())
      throw new OvfkitError("OVF_FILE_MISSING", `${file.href} is not a regular file`, where);
    await checkInsideFolder(folder, file.href, descriptorFile);
    checkDeclaredSize(file.size, info.size, file.href, where);
    members.push({ name: file.href, source: path, start: 0, size: info.size, mtime: mtime(info.mtime) });
  }
  return members;
}

function checkDeclaredSize(
  declared: string | undefined,
  actual: number,
  href: string,
  where: { file: string; line: number; column: number },
): void {
  if (declared !== undefined && Number(declared) !== actual) {
    throw new OvfkitError(
      "OVF_FILE_SIZE_MISMATCH",
      `File ${href}: ovf:size is ${declared} but the file is ${actual} bytes (fix the descriptor, e.g. with ovfkit edit)`,
      where,
    );
  }
}

/** Splits members bigger than `chunkSize` and records ovf:chunkSize on their File elements. */
function splitIntoChunks(envelope: OvfEnvelope, members: PackMember[], chunkSize: number): PackMember[] {
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new OvfkitError("BAD_ARGUMENT", `chunk size ${chunkSize} is not a positive byte count`);
  }
  const out: PackMember[] = [];
  for (const member of members) {
    const file = envelope.files.find((f) => f.href === member.name);
    if (!file || member.size <= chunkSize) {
      out.push(member);
      continue;
    }
    setOvfAttribute(envelope, file.element, "chunkSize", String(chunkSize));
    for (let i = 0, start = 0; start < member.size; i++, start += chunkSize) {
      out.push({
        ...member,
        name: chunkName(member.name, i),
        start,
        size: Math.min(chunkSize, member.size - start),
      });
    }
  }
  return out;
}

async function* fileRange(path: string, start: number, size: number): AsyncGenerator<Buffer> {
  if (size === 0) return;
  yield* createReadStream(path, { start, end: start + size - 1, highWaterMark: 4 * 1024 * 1024 });
}

/**
 * Packs an OVF folder into an OVA: descriptor, manifest, certificate, then
 * the files in References order, digests computed while the files are
 * copied (the manifest's and certificate's space is reserved and filled
 * in at the end: their sizes are known in advance).
 */
export async function packOva(
  descriptorPath: string,
  outPath: string,
  options: PackOptions = {},
): Promise<PackResult> {
  const folder = dirname(descriptorPath);
  const descriptorName = basename(descriptorPath);
  if (extname(descriptorName).toLowerCase() !== ".ovf") {
    throw new OvfkitError("BAD_ARGUMENT", `${descriptorName}: the descriptor must be named *.ovf`, {
      file: descriptorPath,
    });
  }
  const reproducible = options.reproducible ?? false;
  const envelope = parseOvf(await readDescriptorFile(descriptorPath), { file: descriptorPath });
  const members = await plannedMembers(envelope, folder, descriptorPath, reproducible);
  const descriptor: Buffer = await readFile(descriptorPath);
  const descriptorMtime = reproducible
    ? reproducibleMtime()
    : Math.floor((await stat(descriptorPath)).mtimeMs / 1000);
  return writeOva(
    { name: descriptorName, bytes: descriptor, mtime: descriptorMtime, envelope },
    members,
    outPath,
    options,
  );
}

/** The descriptor of an OVA being written: its bytes, or a model to serialise (after chunking). */
export interface OvaDescriptor {
  name: string;
  bytes: Buffer;
  mtime: number;
  /** The parsed descriptor; needed only when `chunkSize` must be recorded in it. */
  envelope?: OvfEnvelope;
}

/**
 * Writes an OVA from a descriptor and byte ranges of other files (files of
 * an OVF folder, or members of another OVA for edit/convert): one
 * sequential pass, digests computed as the bytes are copied.
 */
export async function writeOva(
  descriptorIn: OvaDescriptor,
  membersIn: PackMember[],
  outPath: string,
  options: PackOptions = {},
): Promise<PackResult> {
  const descriptorName = descriptorIn.name;
  const stem = descriptorName.replace(/\.[^.]*$/, "");
  const reproducible = options.reproducible ?? false;
  let members = membersIn;
  let descriptor = descriptorIn.bytes;
  if (options.chunkSize !== undefined) {
    if (!descriptorIn.envelope) throw new OvfkitError("INTERNAL", "chunking needs the parsed descriptor");
    members = splitIntoChunks(descriptorIn.envelope, members, options.chunkSize);
    descriptor = serializeOvfBytes(descriptorIn.envelope);
  }
  const algorithm = options.manifest === undefined ? "SHA256" : options.manifest;
  if (options.sign && !algorithm)
    throw new OvfkitError("BAD_ARGUMENT", "signing needs a manifest (--manifest)");
  const now = reproducible ? reproducibleMtime() : Math.floor(Date.now() / 1000);
  const header = (name: string, size: number, mtime: number): TarHeaderFields => ({
    name,
    size,
    mtime: reproducible ? reproducibleMtime() : mtime,
    mode: DEFAULT_MODE,
    ...DEFAULT_OWNER,
  });
  const mfName = `${stem}.mf`;
  const certName = `${stem}.cert`;
  const total = members.reduce((sum, m) => sum + m.size, 0);

  return withOutputs(
    async (tx) => {
      const writer = await TarWriter.create(tx.file(outPath));
      try {
        const result: PackResult = { output: outPath, members: [] };
        const digests: { name: string; digest: string }[] = [];
        const descriptorHash = new MultiHash(algorithm ? [algorithm] : []);
        await writer.add(header(descriptorName, descriptor.length, descriptorIn.mtime), [descriptor], (c) =>
          descriptorHash.update(c),
        );
        if (algorithm)
          digests.push({ name: descriptorName, digest: descriptorHash.digests().get(algorithm)! });
        let manifestAt = -1;
        let manifestSize = 0;
        if (algorithm) {
          manifestSize = [descriptorName, ...members.map((m) => m.name)].reduce(
            (sum, name) => sum + manifestLineLength(algorithm, name),
            0,
          );
          manifestAt = await writer.reserve(header(mfName, manifestSize, now));
        }
        let certAt = -1;
        let certSize = 0;
        if (options.sign) {
          certSize = signedCertificateLength(mfName, options.sign);
          certAt = await writer.reserve(header(certName, certSize, now));
        }
        let done = 0;
        for (const member of members) {
          const hash = new MultiHash(algorithm ? [algorithm] : []);
          await writer.add(
            header(member.name, member.size, member.mtime),
            fileRange(member.source, member.start, member.size),
            (chunk) => {
              hash.update(chunk);
              done += chunk.length;
              options.onProgress?.(done, total);
            },
          );
          const digest = algorithm ? hash.digests().get(algorithm)! : undefined;
          if (digest) digests.push({ name: member.name, digest });
          result.members.push({ name: member.name, size: member.size, digest });
        }
        if (algorithm) {
          const manifest = Buffer.from(formatManifest(digests.map((d) => ({ ...d, algorithm }))));
          await writer.fill(manifestAt, manifest, manifestSize);
          result.manifest = mfName;
          if (options.sign) {
            const cert = Buffer.from(signManifest(manifest, mfName, options.sign));
            await writer.fill(certAt, cert, certSize);
            result.certificate = certName;
          }
        }
        await writer.finish();
        return result;
      } catch (error) {
        await writer.abort();
        throw asOvfkitError(error);
      }
    },
    { overwrite: options.overwrite },
  );
}

/**
 * The members an OVA holds for a descriptor's References (chunks
 * included), as byte ranges of the OVA itself: what edit and convert copy
 * into a new OVA without extracting anything.
 */
export async function membersOfOva(ovaPath: string, envelope: OvfEnvelope): Promise<PackMember[]> {
  const reader = await TarReader.open(ovaPath, { ova: true });
  const byName = new Map<string, PackMember>();
  try {
    for await (const m of reader.members()) {
      byName.set(m.name, {
        name: m.name,
        source: ovaPath,
        start: m.dataOffset,
        size: m.size,
        mtime: m.mtime,
      });
    }
  } finally {
    await reader.close();
  }
  const out: PackMember[] = [];
  for (const file of envelope.files) {
    if (!file.href) continue;
    checkHref(file.href, ovaPath);
    const whole = byName.get(file.href);
    if (whole) {
      out.push(whole);
      continue;
    }
    let found = false;
    for (let i = 0; byName.has(chunkName(file.href, i)); i++) {
      out.push(byName.get(chunkName(file.href, i))!);
      found = true;
    }
    if (!found) {
      throw new OvfkitError(
        "OVF_FILE_MISSING",
        `${file.href} is referenced but not in ${basename(ovaPath)}`,
        {
          file: ovaPath,
        },
      );
    }
  }
  return out;
}

/** Reads the descriptor (first .ovf member) of an OVA. */
export async function descriptorOfOva(
  ovaPath: string,
): Promise<{ name: string; bytes: Buffer; mtime: number }> {
  const reader = await TarReader.open(ovaPath, { ova: true });
  try {
    for await (const m of reader.members()) {
      if (m.name.toLowerCase().endsWith(".ovf"))
        return { name: m.name, bytes: await reader.readSmall(), mtime: m.mtime };
    }
  } finally {
    await reader.close();
  }
  throw new OvfkitError("OVA_NO_DESCRIPTOR", "the OVA holds no .ovf descriptor", { file: ovaPath });
}

export interface UnpackOptions {
  /** Check manifest, certificate and References while extracting (default true). */
  verify?: boolean;
  overwrite?: boolean;
  verifyOptions?: VerifyOptions;
  onProgress?: (done: number, total: number) => void;
}

export interface UnpackResult {
  directory: string;
  files: string[];
  report?: VerifyReport;
}

/**
 * Extracts an OVA into `directory`, refusing hostile members (tar.ts OVA
 * rules) and existing files; with `verify`, the manifest is checked on the
 * bytes as they are written, and a failed check leaves nothing behind.
 */
export async function unpackOva(
  ovaPath: string,
  directory: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const verify = options.verify ?? true;
  await mkdir(directory, { recursive: true }).catch((error: unknown) => {
    throw asOvfkitError(error, directory);
  });
  return withOutputs(
    async (tx) => {
      const reader = await TarReader.open(ovaPath, { ova: true });
      const collected: CollectedPackage = { members: [], findings: [], bytesHashed: 0 };
      const files: string[] = [];
      try {
        let manifestEntries: Map<string, ManifestEntry> | undefined;
        for await (const member of reader.members()) {
          const lower = member.name.toLowerCase();
          const record: PackageMember = {
            name: member.name,
            size: member.size,
            digests: {},
            offset: member.headerOffset,
          };
          collected.members.push(record);
          const target = join(directory, member.name);
          const temp = tx.file(target);
          files.push(target);
          const small = lower.endsWith(".ovf") || lower.endsWith(".mf") || lower.endsWith(".cert");
          if (small) {
            const data = await reader.readSmall();
            await writeFile(temp, data, { flag: "wx" });
            hashSmall(record, data, MANIFEST_ALGORITHMS);
            if (lower.endsWith(".ovf") && !collected.descriptor) {
              collected.descriptor = data;
              collected.descriptorName = member.name;
            } else if (lower.endsWith(".mf") && !collected.manifest) {
              collected.manifest = data;
              collected.manifestName = member.name;
              manifestEntries = new Map(parseManifest(data.toString("utf8")).entries.map((e) => [e.name, e]));
            } else if (lower.endsWith(".cert") && !collected.certificate) {
              collected.certificate = data;
              collected.certificateName = member.name;
            }
            continue;
          }
          const entry = manifestEntries?.get(member.name);
          const algorithms = !verify
            ? []
            : manifestEntries
              ? entry
                ? [entry.algorithm]
                : []
              : MANIFEST_ALGORITHMS;
          const hash = new MultiHash(algorithms);
          const out = await open(temp, "wx");
          try {
            let position = 0;
            for await (const chunk of reader.body()) {
              hash.update(chunk);
              await out.write(chunk, 0, chunk.length, position);
              position += chunk.length;
              collected.bytesHashed += chunk.length;
              options.onProgress?.(collected.bytesHashed, reader.fileSize);
            }
          } finally {
            await out.close();
          }
          record.digests = Object.fromEntries(hash.digests());
        }
      } finally {
        await reader.close();
      }
      if (!verify) return { directory, files };
      const report = analysePackage(collected, ovaPath, "ova", options.verifyOptions);
      const errors = report.findings.filter((f) => f.severity === "error");
      if (errors.length > 0) {
        throw new OvfkitError(
          errors[0]!.code,
          `${errors.map((e) => e.message).join("; ")} — nothing was extracted (--no-verify extracts anyway)`,
          { file: errors[0]!.file ?? ovaPath, line: errors[0]!.line, offset: errors[0]!.offset },
        );
      }
      return { directory, files, report };
    },
    { overwrite: options.overwrite },
  );
}

export interface ManifestOptions {
  /** Algorithm for every line; by default `update` keeps each line's, `create` uses SHA256. */
  algorithm?: ManifestAlgorithm;
  /** Re-sign after updating (the old signature no longer matches). */
  sign?: SignOptions;
}

export interface ManifestResult {
  manifest: string;
  entries: { algorithm: ManifestAlgorithm; name: string; digest: string }[];
  /** A `.cert` beside the descriptor now signs a manifest that changed. */
  certificateInvalidated: boolean;
  certificate?: string;
}

async function digestFile(path: string, algorithm: ManifestAlgorithm): Promise<string> {
  const hash = new MultiHash([algorithm]);
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digests().get(algorithm)!;
}

/**
 * Writes `NAME.mf` for an OVF folder: the descriptor and every referenced
 * file (chunks included). `update` rewrites an existing manifest keeping
 * each line's algorithm unless one is given; `create` refuses to replace one.
 */
export async function writeManifest(
  descriptorPath: string,
  mode: "create" | "update",
  options: ManifestOptions = {},
): Promise<ManifestResult> {
  const folder = dirname(descriptorPath);
  const descriptorName = basename(descriptorPath);
  const stem = descriptorName.replace(/\.[^.]*$/, "");
  const manifestPath = join(folder, `${stem}.mf`);
  const certPath = join(folder, `${stem}.cert`);
  const envelope = parseOvf(await readDescriptorFile(descriptorPath), { file: descriptorPath });
  const members = await plannedMembers(envelope, folder, descriptorPath, false);
  let previous = new Map<string, ManifestAlgorithm>();
  if (mode === "update") {
    const text = await readFile(manifestPath, "utf8").catch((error: unknown) => {
      throw asOvfkitError(error, manifestPath);
    });
    previous = new Map(parseManifest(text, { file: manifestPath }).entries.map((e) => [e.name, e.algorithm]));
  }
  const fallback = options.algorithm ?? [...previous.values()][0] ?? "SHA256";
  const pick = (name: string): ManifestAlgorithm => options.algorithm ?? previous.get(name) ?? fallback;
  const entries = [
    {
      algorithm: pick(descriptorName),
      name: descriptorName,
      digest: await digestFile(descriptorPath, pick(descriptorName)),
    },
  ];
  for (const member of members) {
    const algorithm = pick(member.name);
    entries.push({ algorithm, name: member.name, digest: await digestFile(member.source, algorithm) });
  }
  const manifest = Buffer.from(formatManifest(entries));
  const hadCert = await stat(certPath).then(
    () => true,
    () => false,
  );
  return withOutputs(
    async (tx: OutputTransaction) => {
      await writeFile(tx.file(manifestPath), manifest);
      const result: ManifestResult = { manifest: manifestPath, entries, certificateInvalidated: false };
      if (options.sign) {
        await writeFile(tx.file(certPath), signManifest(manifest, basename(manifestPath), options.sign));
        result.certificate = certPath;
      } else if (hadCert) {
        const old = await readFile(certPath, "utf8");
        const stillValid = signatureStillMatches(old, manifest);
        result.certificateInvalidated = !stillValid;
      }
      return result;
    },
    { overwrite: mode === "update" },
  );
}

function signatureStillMatches(certText: string, manifest: Buffer): boolean {
  try {
    const parsed = parseCertificateFile(certText);
    return verifyCertificate(parsed, manifest, parsed.manifestName).signatureValid === true;
  } catch {
    return false;
  }
}

export interface SignPackageOptions extends SignOptions {
  /** Write here instead of replacing the package (OVA) / the `.cert` (OVF). */
  output?: string;
  overwrite?: boolean;
}

/**
 * Signs an existing package's manifest: writes `NAME.cert` beside an OVF,
 * or rewrites an OVA with the certificate right after the manifest
 * (replacing an old one). The package must have a manifest.
 */
export async function signPackage(path: string, options: SignPackageOptions): Promise<string> {
  if (extname(path).toLowerCase() === ".ovf") {
    const stem = basename(path).replace(/\.[^.]*$/, "");
    const mfName = `${stem}.mf`;
    const manifest = await readFile(join(dirname(path), mfName)).catch((error: unknown) => {
      throw new OvfkitError(
        "MANIFEST_MISSING",
        `${mfName} not found: create it first (ovfkit manifest create)`,
        {
          file: path,
          cause: error,
        },
      );
    });
    parseManifestStrict(manifest.toString("utf8"), { file: mfName });
    const certPath = options.output ?? join(dirname(path), `${stem}.cert`);
    await withOutputs(
      async (tx) => {
        await writeFile(tx.file(certPath), signManifest(manifest, mfName, options));
      },
      { overwrite: options.overwrite ?? true },
    );
    return certPath;
  }
  return resignOva(path, options);
}

/** Copies an OVA member by member, putting a fresh `.cert` right after the `.mf`. */
async function resignOva(path: string, options: SignPackageOptions): Promise<string> {
  const output = options.output ?? path;
  const overwrite = options.output === undefined ? true : (options.overwrite ?? false);
  return withOutputs(
    async (tx) => {
      const writer = await TarWriter.create(tx.file(output));
      const reader = await TarReader.open(path, { ova: true });
      try {
        let signed = false;
        for await (const member of reader.members()) {
          const lower = member.name.toLowerCase();
          if (lower.endsWith(".cert")) continue; // replaced by the new one
          const fields: TarHeaderFields = {
            name: member.name,
            size: member.size,
            mtime: member.mtime,
            mode: member.mode,
            uid: member.uid,
            gid: member.gid,
            uname: member.uname,
            gname: member.gname,
          };
          if (lower.endsWith(".mf") && !signed) {
            const manifest = await reader.readSmall();
            parseManifestStrict(manifest.toString("utf8"), { file: member.name });
            await writer.add(fields, [manifest]);
            const cert = Buffer.from(signManifest(manifest, member.name, options));
            await writer.add({ ...fields, name: member.name.replace(/\.mf$/i, ".cert"), size: cert.length }, [
              cert,
            ]);
            signed = true;
            continue;
          }
          await writer.add(fields, reader.body());
        }
        if (!signed)
          throw new OvfkitError(
            "MANIFEST_MISSING",
            "the OVA has no manifest to sign (pack it with --manifest)",
            { file: path },
          );
        await writer.finish();
        return output;
      } catch (error) {
        await writer.abort();
        throw asOvfkitError(error, path);
      } finally {
        await reader.close();
      }
    },
    { overwrite },
  );
}
