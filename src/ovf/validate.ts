import { stat } from "node:fs/promises";
import { asOvfkitError, OvfkitError } from "../errors.js";
import type { OvfDialect, OvfEnvelope } from "./model.js";
import { folderPackage, ovaPackage, type PackageView, packagesIn } from "./package-view.js";
import { readDescriptorFile } from "./parse.js";
import { ProfileContext, resolveProfile, TARGET_RULES, type TargetProfile } from "./profiles/index.js";
import { checkReferences, REFERENCE_RULES } from "./rules/references.js";
import { checkSemantics, SEMANTIC_RULES } from "./rules/semantics.js";
import { checkStructure, STRUCTURE_RULES } from "./rules/structure.js";
import { defineRules, type Finding, RuleContext, type RuleDefinition, type Severity } from "./rules/types.js";
import { checkWellFormed, WELLFORMED_RULES } from "./rules/wellformed.js";
import { findSchemaDir, hasXmllint, schemaFor, validateXsd, XSD_RULES, type XsdInput } from "./rules/xsd.js";
import type { XmlElement, XmlLimits } from "./xml.js";

/** Problems with the package container itself (found before any descriptor is read). */
export const PACKAGE_RULES = defineRules({
  unreadable: {
    id: "OVF-PKG-001",
    layer: 1,
    severity: "error",
    title: "the .ova is not a readable tar archive (bad header, truncated, not a tar)",
    fix: "repack the appliance as a plain tar with the .ovf first (ovfkit pack)",
  },
  noDescriptor: {
    id: "OVF-PKG-002",
    layer: 1,
    severity: "error",
    title: "the .ova contains no .ovf descriptor",
    fix: "put the .ovf descriptor in the package as its first member",
  },
});

/** Every rule, in layer order: what `ovfkit validate --list-rules` prints. */
export const ALL_RULES: readonly RuleDefinition[] = [
  ...Object.values(PACKAGE_RULES),
  ...Object.values(WELLFORMED_RULES),
  ...Object.values(STRUCTURE_RULES),
  ...Object.values(REFERENCE_RULES),
  ...Object.values(SEMANTIC_RULES),
  ...Object.values(XSD_RULES),
  ...Object.values(TARGET_RULES),
];

export interface ValidateOptions {
  /** Layer 5: run xmllint against the DMTF schemas. */
  strictXsd?: boolean;
  /** Folder of the DMTF schemas (default: $OVFKIT_SCHEMAS or ../shared/corpus/schemas). */
  schemaDir?: string;
  /** Target profiles (`vsphere`, `vsphere-6.7`, `aws`, ...). */
  profiles?: readonly string[];
  limits?: Partial<XmlLimits>;
}

/** The verdict on one .ovf / .ova. */
export interface FileResult {
  file: string;
  kind: "ovf" | "ova";
  dialect: OvfDialect | undefined;
  findings: Finding[];
  /** Layers that ran (1-5) and profiles applied. */
  layers: number[];
  profiles: string[];
}

export interface ValidationReport {
  files: FileResult[];
  counts: Record<Severity, number>;
}

/** True when a result has errors (or, with `warningsAsErrors`, warnings). */
export function hasFailures(result: { findings: Finding[] }, warningsAsErrors = false): boolean {
  return result.findings.some(
    (f) => f.severity === "error" || (warningsAsErrors && f.severity === "warning"),
  );
}

/** Descriptors read ahead of the one being checked. */
const READ_AHEAD = 8;

interface Loaded {
  file: string;
  kind: "ovf" | "ova";
  bytes: Uint8Array | undefined;
  /** The package around the descriptor; undefined for a bare descriptor given as text. */
  pkg: PackageView | undefined;
  /** Path xmllint can read directly (.ovf only). */
  descriptorPath?: string;
}

async function load(path: string, limits: Partial<XmlLimits> | undefined): Promise<Loaded> {
  if (/\.ova$/i.test(path)) {
    const { view, descriptor } = await ovaPackage(path);
    return { file: path, kind: "ova", bytes: descriptor, pkg: view };
  }
  return {
    file: path,
    kind: "ovf",
    bytes: await readDescriptorFile(path, limits),
    pkg: folderPackage(path),
    descriptorPath: path,
  };
}

/** Expands folders into the .ovf/.ova files they contain; checks the paths exist. */
export async function expandInputs(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(path);
    } catch (error) {
      throw asOvfkitError(error, path);
    }
    if (info.isDirectory()) {
      const found = await packagesIn(path);
      if (found.length === 0)
        throw new OvfkitError("OVF_NOTHING_TO_VALIDATE", `no .ovf or .ova files in ${path}`, { file: path });
      out.push(...found);
    } else {
      out.push(path);
    }
  }
  return out;
}

/**
 * Validates .ovf files, .ova packages and folders of them. Problems in the
 * inputs are findings; an OvfkitError is thrown only when validation
 * cannot run at all (unknown profile, unreadable path).
 */
export async function validateOvf(
  paths: string | readonly string[],
  options: ValidateOptions = {},
): Promise<ValidationReport> {
  const profiles = (options.profiles ?? []).map(resolveProfile);
  const inputs = await expandInputs(typeof paths === "string" ? [paths] : paths);
  const results: FileResult[] = [];
  const envelopes: (OvfEnvelope | undefined)[] = [];
  const loadedAll: Loaded[] = [];
  // read ahead: the next files load while this one is checked (sequential awaits left the CPU idle ~30%)
  const ahead = new Map<number, Promise<Loaded>>();
  const prefetch = (index: number): void => {
    if (index >= inputs.length || ahead.has(index)) return;
    const promise = load(inputs[index]!, options.limits);
    promise.catch(() => undefined); // handled when awaited below
    ahead.set(index, promise);
  };
  for (const [index, path] of inputs.entries()) {
    for (let k = 0; k < READ_AHEAD; k++) prefetch(index + k);
    let loaded: Loaded;
    try {
      loaded = await ahead.get(index)!;
      ahead.delete(index);
    } catch (error) {
      ahead.delete(index);
      const failure = asOvfkitError(error, path);
      // a broken .ova is a finding about that file; an unreadable path means we cannot run
      if (!/\.ova$/i.test(path) || !/^(OVA_|TAR_)/.test(failure.code)) throw failure;
      results.push(unreadablePackage(path, failure));
      envelopes.push(undefined);
      loadedAll.push({ file: path, kind: "ova", bytes: undefined, pkg: undefined });
      continue;
    }
    const { result, envelope } = await validateLoaded(loaded, profiles, options);
    results.push(result);
    // only layer 5 needs the trees afterwards (to place xmllint's errors); otherwise let them go:
    // keeping hundreds of documents alive makes every garbage collection slower
    envelopes.push(options.strictXsd ? envelope : undefined);
    loadedAll.push(options.strictXsd ? loaded : { ...loaded, bytes: undefined });
  }
  if (options.strictXsd) await runStrictXsd(results, envelopes, loadedAll, options.schemaDir);
  for (const result of results) result.findings.sort(byPosition);
  return { files: results, counts: countFindings(results) };
}

/** Layers 1-4 and profiles on one descriptor given as text or bytes (no package around it). */
export async function validateDescriptor(
  input: string | Uint8Array,
  options: ValidateOptions & { file?: string; pkg?: PackageView } = {},
): Promise<FileResult> {
  const bytes = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  const profiles = (options.profiles ?? []).map(resolveProfile);
  const loaded: Loaded = {
    file: options.file ?? "<descriptor>",
    kind: "ovf",
    bytes,
    pkg: options.pkg,
  };
  const { result } = await validateLoaded(loaded, profiles, options);
  result.findings.sort(byPosition);
  return result;
}

async function validateLoaded(
  loaded: Loaded,
  profiles: TargetProfile[],
  options: ValidateOptions,
): Promise<{ result: FileResult; envelope: OvfEnvelope | undefined }> {
  const pkg = loaded.pkg;
  const result: FileResult = {
    file: loaded.file,
    kind: loaded.kind,
    dialect: undefined,
    findings: [],
    layers: [],
    profiles: profiles.map((p) => p.label),
  };
  if (!loaded.bytes) {
    // an .ova without a descriptor, or a compressed one: only the package-level profile checks apply
    if (!pkg?.compressed) {
      result.findings.push({
        ruleId: PACKAGE_RULES.noDescriptor.id,
        severity: "error",
        message: "the package has no .ovf descriptor",
        fix: PACKAGE_RULES.noDescriptor.fix,
        file: loaded.file,
        line: 0,
        column: 0,
        xpath: "",
        layer: 1,
      });
    } else {
      result.findings.push({
        ruleId: TARGET_RULES.compressed.id,
        severity: profiles.length > 0 ? "error" : "warning",
        message: "the .ova is gzip-compressed: nothing inside can be read in place",
        fix: TARGET_RULES.compressed.fix,
        file: loaded.file,
        line: 0,
        column: 0,
        xpath: "",
        layer: "profile",
        ...(TARGET_RULES.compressed.source ? { source: TARGET_RULES.compressed.source } : {}),
      });
    }
    return { result, envelope: undefined };
  }
  const descriptorName = loaded.kind === "ova" && pkg ? `${loaded.file}/${pkg.descriptorName}` : loaded.file;
  const wellFormed = checkWellFormed(loaded.bytes, descriptorName, options.limits);
  result.findings.push(...wellFormed.findings);
  result.layers.push(1);
  const envelope = wellFormed.envelope;
  if (!envelope) return { result, envelope };
  result.dialect = envelope.dialect;
  const ctx = new RuleContext(envelope, descriptorName, pkg);
  checkStructure(ctx);
  result.layers.push(2);
  if (envelope.dialect !== "unknown" && envelope.element.localName === "Envelope") {
    await checkReferences(ctx);
    checkSemantics(ctx);
    result.layers.push(3, 4);
  }
  result.findings.push(...ctx.findings);
  for (const profile of profiles) {
    if (envelope.dialect === "unknown") break;
    const profileCtx = new ProfileContext(envelope, descriptorName, pkg, profile.label);
    await profile.run(profileCtx);
    result.findings.push(...profileCtx.findings);
  }
  return { result, envelope };
}

async function runStrictXsd(
  results: FileResult[],
  envelopes: (OvfEnvelope | undefined)[],
  loaded: Loaded[],
  schemaDirOption: string | undefined,
): Promise<void> {
  const schemaDir = findSchemaDir(schemaDirOption);
  const skipReason = !hasXmllint()
    ? "xmllint is not installed (apt-get install libxml2-utils); layer 5 skipped"
    : !schemaDir
      ? "DMTF schemas not found (pass --schemas DIR or set OVFKIT_SCHEMAS); layer 5 skipped"
      : undefined;
  const inputs: XsdInput[] = [];
  const owners: number[] = [];
  results.forEach((result, index) => {
    const envelope = envelopes[index];
    if (!envelope) return;
    if (skipReason) {
      result.findings.push({
        ruleId: XSD_RULES.skipped.id,
        severity: "warning",
        message: skipReason,
        fix: XSD_RULES.skipped.fix,
        file: result.file,
        line: 0,
        column: 0,
        xpath: "",
        layer: 5,
      });
      return;
    }
    const path = loaded[index]!.descriptorPath;
    let byLine: Map<number, XmlElement[]> | undefined;
    inputs.push({
      ...(path ? { path } : { text: envelope.document.source }),
      schema: schemaFor(envelope.dialect, envelope.element.namespaceURI),
      file: envelope.file ?? result.file,
      locate: (line, elementName) => {
        const local = elementName?.replace(/^.*[:}]/, "");
        byLine ??= groupByLine(envelope);
        const element = byLine.get(line)?.find((e) => !local || e.localName === local);
        return element ? { column: element.position.column, xpath: element.xpath } : { column: 1, xpath: "" };
      },
    });
    owners.push(index);
  });
  if (skipReason || inputs.length === 0) return;
  const verdicts = await validateXsd(inputs, schemaDir!);
  verdicts.forEach((verdict, i) => {
    const result = results[owners[i]!]!;
    result.layers.push(5);
    if (!verdict.valid && verdict.findings.length === 0) {
      verdict.findings.push({
        ruleId: XSD_RULES.invalid.id,
        severity: "error",
        message: "xmllint reports the document invalid",
        fix: XSD_RULES.invalid.fix,
        file: result.file,
        line: 1,
        column: 1,
        xpath: "",
        layer: 5,
      });
    }
    result.findings.push(...verdict.findings);
  });
}

function unreadablePackage(path: string, error: OvfkitError): FileResult {
  return {
    file: path,
    kind: "ova",
    dialect: undefined,
    layers: [1],
    profiles: [],
    findings: [
      {
        ruleId: PACKAGE_RULES.unreadable.id,
        severity: "error",
        message: `${error.code}: ${error.message}${error.offset !== undefined ? ` (at byte ${error.offset})` : ""}`,
        fix: PACKAGE_RULES.unreadable.fix,
        file: path,
        line: 0,
        column: 0,
        xpath: "",
        layer: 1,
      },
    ],
  };
}

/** Elements by source line, built once per descriptor for mapping xmllint's line-only errors. */
function groupByLine(envelope: OvfEnvelope): Map<number, XmlElement[]> {
  const map = new Map<number, XmlElement[]>();
  for (const element of envelope.element.descendants()) {
    const list = map.get(element.position.line);
    if (list) list.push(element);
    else map.set(element.position.line, [element]);
  }
  return map;
}

function byPosition(a: Finding, b: Finding): number {
  return (
    a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.ruleId.localeCompare(b.ruleId)
  );
}

function countFindings(results: FileResult[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { error: 0, warning: 0, info: 0 };
  for (const result of results) for (const f of result.findings) counts[f.severity] += 1;
  return counts;
}
