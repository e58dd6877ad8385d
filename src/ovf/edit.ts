import { copyFile, open, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { openDisk } from "../formats/index.js";
import { withOutputs } from "../formats/output.js";
import type { SignOptions } from "./cert.js";
import type { ManifestAlgorithm } from "./manifest.js";
import { parseManifest } from "./manifest.js";
import {
  appendIndented,
  indentationOf,
  type OvfEnvelope,
  type OvfItem,
  type OvfVirtualSystem,
  RESOURCE_TYPE,
} from "./model.js";
import { packageKind } from "./ova.js";
import { setOvfAttribute } from "./ovf-attr.js";
import { descriptorOfOva, membersOfOva, type PackMember, writeManifest, writeOva } from "./pack.js";
import { parseOvf, readDescriptorFile } from "./parse.js";
import { serializeOvfBytes } from "./serialize.js";
import { listTar } from "./tar.js";
import { capacityBytes } from "./units.js";
import { XmlElement } from "./xml.js";

/**
 * Lossless edits of a package with the OVF model: only the touched
 * elements change, everything else (vendor sections, comments, order)
 * round-trips. The manifest is rewritten; a signature is re-made with the
 * key or the edit is refused (editing silently breaking a signature is
 * what COT does, with a warning nobody reads).
 */

export interface AddProperty {
  key: string;
  type: string;
  value?: string;
  label?: string;
  description?: string;
}

export interface EditSpec {
  name?: string;
  product?: string;
  vendor?: string;
  version?: string;
  annotation?: string;
  cpus?: number;
  memoryMiB?: number;
  /** Set ovf:value of existing properties (plain or class.key.instance keys). */
  properties?: Record<string, string>;
  addProperties?: AddProperty[];
  eula?: string;
  resizeDisks?: { diskId: string; bytes: number }[];
  removeDisks?: string[];
  /** Disk image files to add to the package (References + DiskSection + an Item on the first disk controller). */
  addDisks?: string[];
  addNetworks?: { name: string; description?: string }[];
  addNics?: { network: string; subtype?: string }[];
}

export interface EditOutcome {
  /** Files to add to the package: href → local path. */
  added: { href: string; path: string }[];
  /** hrefs no longer referenced. */
  removed: string[];
  changes: string[];
}

/** An element in the envelope's namespace with the root's prefix (`ovf:Info` or `Info`). */
function ovfElement(envelope: OvfEnvelope, local: string, text?: string): XmlElement {
  const prefix = envelope.element.prefix;
  const element = new XmlElement(prefix ? `${prefix}:${local}` : local);
  element.position = envelope.element.position;
  if (text !== undefined) element.setText(text);
  return element;
}

/** The whitespace before `element` on its line (from the text node preceding it). */
function indentOf(element: XmlElement): string {
  const parent = element.parent;
  if (!parent) return "";
  const before = parent.children[parent.children.indexOf(element) - 1];
  if (before?.type !== "text") return "";
  const lastLine = before.value.slice(before.value.lastIndexOf("\n") + 1);
  return /^[ \t]*$/.test(lastLine) ? lastLine : "";
}

/**
 * Lays out a NEW element's children one per line, indented one step deeper
 * than the element itself (called once it is in the tree). Only elements
 * this module created are touched: the rest of the document keeps its bytes.
 */
function reindent(element: XmlElement): void {
  const children = element.elements();
  if (children.length === 0) {
    element.children = [];
    element.selfClosing = true;
    return;
  }
  const indent = indentOf(element);
  const step = indent.includes("\t") ? "\t" : "  ";
  element.children = [];
  for (const child of children) {
    element.append({ type: "text", value: `\n${indent}${step}` });
    element.append(child);
    if (child.elements().length > 0) reindent(child);
  }
  element.append({ type: "text", value: `\n${indent}` });
}

/** Adds `child` as the last element of `parent` keeping the existing layout (re-laying out a parent made here). */
function reindentIfNew(parent: XmlElement, child: XmlElement): void {
  parent.remove(child);
  if (parent.elements().length === 0) {
    parent.append(child);
    reindent(parent);
  } else {
    appendIndented(parent, child);
  }
  child.selfClosing = true;
}

/** Inserts `child` before `reference` with the parent's indentation. */
function insertBefore(parent: XmlElement, child: XmlElement, reference: XmlElement | undefined): void {
  if (!reference) {
    appendIndented(parent, child);
    return;
  }
  const index = parent.children.indexOf(reference);
  parent.insertAt(index, child);
  parent.insertAt(index + 1, { type: "text", value: indentationOf(parent).child });
}

/** A new section with its `<Info>` (every OVF section starts with one). */
function newSection(envelope: OvfEnvelope, kind: string, info: string): XmlElement {
  const section = ovfElement(envelope, kind);
  section.append(ovfElement(envelope, "Info", info));
  return section;
}

function firstSystem(envelope: OvfEnvelope): OvfVirtualSystem {
  const system = envelope.virtualSystems[0];
  if (!system)
    throw new OvfkitError("OVF_NO_VIRTUAL_SYSTEM", "the descriptor has no VirtualSystem", {
      file: envelope.file,
    });
  return system;
}

/** Sets the text of a child, creating it in `order` (the schema's sequence) when missing. */
function setChildText(
  envelope: OvfEnvelope,
  parent: XmlElement,
  local: string,
  value: string,
  order: readonly string[],
): void {
  const existing = parent.elements().find((e) => e.localName === local && envelope.isOvfElement(e));
  if (existing) {
    existing.setText(value);
    return;
  }
  const rank = order.indexOf(local);
  const next = parent.elements().find((e) => order.indexOf(e.localName) > rank || e.localName === "Property");
  insertBefore(parent, ovfElement(envelope, local, value), next);
}

const PRODUCT_ORDER = [
  "Info",
  "Product",
  "Vendor",
  "Version",
  "FullVersion",
  "ProductUrl",
  "VendorUrl",
  "AppUrl",
  "Icon",
  "Category",
  "Property",
] as const;
const SYSTEM_HEAD = ["Info", "Name"] as const;

function productSection(envelope: OvfEnvelope, system: OvfVirtualSystem): XmlElement {
  const existing = system.products[0];
  if (existing) return existing;
  const section = newSection(envelope, "ProductSection", "Information about the installed software");
  appendIndented(system.element, section);
  reindent(section);
  return section;
}

function hardwareItems(system: OvfVirtualSystem): OvfItem[] {
  return system.hardware.flatMap((h) => h.items);
}

function nextInstanceId(system: OvfVirtualSystem): string {
  const ids = hardwareItems(system)
    .map((i) => Number(i.instanceId))
    .filter(Number.isFinite);
  return String(Math.max(0, ...ids) + 1);
}

/** Bytes as the most readable exact capacity + units pair. */
export function capacityAttributes(bytes: number): { capacity: string; units: string } {
  for (const [exponent, units] of [
    [30, "byte * 2^30"],
    [20, "byte * 2^20"],
  ] as const) {
    if (bytes % 2 ** exponent === 0) return { capacity: String(bytes / 2 ** exponent), units };
  }
  return { capacity: String(bytes), units: "byte" };
}

/** ovf:format URIs importers expect for each disk format. */
export const DISK_FORMAT_URI: Record<string, string> = {
  vmdk: "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
  vpc: "http://technet.microsoft.com/en-us/virtualserver/bb676673.aspx",
  vhdx: "http://technet.microsoft.com/en-us/library/hh831446.aspx",
  qcow2: "http://www.gnome.org/~markmc/qcow-image-format.html",
  raw: "http://en.wikipedia.org/wiki/Byte",
};

function hostsDisk(item: OvfItem, diskId: string): boolean {
  return item.hostResources.some((h) => /^(ovf:)?\/disk\/(.+)$/.exec(h.value)?.[2] === diskId);
}

/** Applies an edit to the model (added disk files are opened to learn their format and virtual size). */
export async function applyEdits(envelope: OvfEnvelope, spec: EditSpec): Promise<EditOutcome> {
  const outcome: EditOutcome = { added: [], removed: [], changes: [] };
  const system = firstSystem(envelope);
  if (spec.name !== undefined) {
    setChildText(envelope, system.element, "Name", spec.name, SYSTEM_HEAD);
    outcome.changes.push(`name = ${spec.name}`);
  }
  for (const [field, value] of [
    ["Product", spec.product],
    ["Vendor", spec.vendor],
    ["Version", spec.version],
  ] as const) {
    if (value === undefined) continue;
    setChildText(envelope, productSection(envelope, system), field, value, PRODUCT_ORDER);
    outcome.changes.push(`${field.toLowerCase()} = ${value}`);
  }
  if (spec.annotation !== undefined) {
    let section = system.annotation;
    if (!section) {
      section = newSection(envelope, "AnnotationSection", "A human-readable annotation");
      appendIndented(system.element, section);
      reindent(section);
    }
    setChildText(envelope, section, "Annotation", spec.annotation, ["Info", "Annotation"]);
    outcome.changes.push("annotation");
  }
  if (spec.eula !== undefined) {
    let section = system.eulas[0];
    if (!section) {
      section = newSection(envelope, "EulaSection", "License agreement");
      appendIndented(system.element, section);
      reindent(section);
    }
    setChildText(envelope, section, "License", spec.eula, ["Info", "License"]);
    outcome.changes.push("eula");
  }
  if (spec.cpus !== undefined)
    setQuantity(system, RESOURCE_TYPE.processor, String(spec.cpus), undefined, "CPUs", outcome);
  if (spec.memoryMiB !== undefined) {
    setQuantity(system, RESOURCE_TYPE.memory, String(spec.memoryMiB), "byte * 2^20", "memory MiB", outcome);
  }
  editProperties(envelope, system, spec, outcome);
  editNetworks(envelope, system, spec, outcome);
  for (const { diskId, bytes } of spec.resizeDisks ?? []) resizeDisk(envelope, diskId, bytes, outcome);
  for (const diskId of spec.removeDisks ?? []) removeDisk(envelope, system, diskId, outcome);
  for (const path of spec.addDisks ?? []) await addDisk(envelope, system, path, outcome);
  return outcome;
}

function setQuantity(
  system: OvfVirtualSystem,
  resourceType: number,
  value: string,
  units: string | undefined,
  what: string,
  outcome: EditOutcome,
): void {
  const items = hardwareItems(system).filter((i) => i.resourceType === resourceType);
  if (items.length === 0) {
    throw new OvfkitError(
      "OVF_NO_SUCH_ITEM",
      `no hardware Item with ResourceType ${resourceType} to set ${what} on`,
    );
  }
  for (const item of items) {
    item.setField("VirtualQuantity", value);
    if (units) item.setField("AllocationUnits", units);
  }
  outcome.changes.push(`${what} = ${value}`);
}

function editProperties(
  envelope: OvfEnvelope,
  system: OvfVirtualSystem,
  spec: EditSpec,
  outcome: EditOutcome,
): void {
  for (const [key, value] of Object.entries(spec.properties ?? {})) {
    const property = system.properties.find((p) => {
      const product = p.element.parent!;
      const full = [envelope.ovfAttr(product, "class"), p.key, envelope.ovfAttr(product, "instance")]
        .filter(Boolean)
        .join(".");
      return p.key === key || full === key;
    });
    if (!property)
      throw new OvfkitError(
        "OVF_NO_SUCH_PROPERTY",
        `no ProductSection property "${key}" (add it with --add-property)`,
      );
    setOvfAttribute(envelope, property.element, "value", value);
    outcome.changes.push(`property ${key} = ${value}`);
  }
  for (const add of spec.addProperties ?? []) {
    if (system.properties.some((p) => p.key === add.key)) {
      throw new OvfkitError(
        "OVF_PROPERTY_EXISTS",
        `property "${add.key}" already exists (set it with --property)`,
      );
    }
    const section = productSection(envelope, system);
    const property = ovfElement(envelope, "Property");
    setOvfAttribute(envelope, property, "key", add.key);
    setOvfAttribute(envelope, property, "type", add.type);
    setOvfAttribute(envelope, property, "userConfigurable", "true");
    if (add.value !== undefined) setOvfAttribute(envelope, property, "value", add.value);
    if (add.label !== undefined) property.append(ovfElement(envelope, "Label", add.label));
    if (add.description !== undefined) property.append(ovfElement(envelope, "Description", add.description));
    appendIndented(section, property);
    reindent(property);
    outcome.changes.push(`added property ${add.key} (${add.type})`);
  }
}

function editNetworks(
  envelope: OvfEnvelope,
  system: OvfVirtualSystem,
  spec: EditSpec,
  outcome: EditOutcome,
): void {
  for (const network of spec.addNetworks ?? []) {
    if (envelope.networks.some((n) => n.name === network.name)) {
      throw new OvfkitError("OVF_NETWORK_EXISTS", `network "${network.name}" already exists`);
    }
    let section = envelope.topSections("NetworkSection")[0];
    if (!section) {
      section = newSection(envelope, "NetworkSection", "The list of logical networks");
      insertBefore(envelope.element, section, envelope.content?.element);
      reindent(section);
    }
    const element = ovfElement(envelope, "Network");
    setOvfAttribute(envelope, element, "name", network.name);
    element.append(ovfElement(envelope, "Description", network.description ?? `The ${network.name} network`));
    appendIndented(section, element);
    reindent(element);
    outcome.changes.push(`added network ${network.name}`);
  }
  for (const nic of spec.addNics ?? []) {
    if (!envelope.networks.some((n) => n.name === nic.network)) {
      throw new OvfkitError(
        "OVF_NO_SUCH_NETWORK",
        `network "${nic.network}" is not in NetworkSection (add it with --add-network)`,
      );
    }
    const hardware = system.hardware[0];
    if (!hardware)
      throw new OvfkitError("OVF_NO_HARDWARE", "the VirtualSystem has no VirtualHardwareSection");
    const count = hardwareItems(system).filter((i) => i.resourceType === RESOURCE_TYPE.ethernet).length;
    const added = hardware.addItem({
      AutomaticAllocation: "true",
      Connection: nic.network,
      ElementName: `Network adapter ${count + 1}`,
      InstanceID: nextInstanceId(system),
      ResourceSubType: nic.subtype ?? "VmxNet3",
      ResourceType: String(RESOURCE_TYPE.ethernet),
    });
    reindent(added.element);
    outcome.changes.push(`added NIC on ${nic.network}`);
  }
}

function resizeDisk(envelope: OvfEnvelope, diskId: string, bytes: number, outcome: EditOutcome): void {
  const disk = envelope.disks.find((d) => d.diskId === diskId);
  if (!disk) throw new OvfkitError("OVF_NO_SUCH_DISK", `no Disk with ovf:diskId="${diskId}"`);
  const current = capacityBytes(disk.capacity, disk.capacityAllocationUnits);
  if (current !== undefined && bytes < current) {
    throw new OvfkitError(
      "OVF_DISK_SHRINK",
      `disk ${diskId} is ${current} bytes; shrinking to ${bytes} would cut the guest's file systems`,
    );
  }
  const { capacity, units } = capacityAttributes(bytes);
  setOvfAttribute(envelope, disk.element, "capacity", capacity);
  setOvfAttribute(envelope, disk.element, "capacityAllocationUnits", units);
  outcome.changes.push(`disk ${diskId} capacity = ${bytes} bytes`);
}

function removeDisk(
  envelope: OvfEnvelope,
  system: OvfVirtualSystem,
  diskId: string,
  outcome: EditOutcome,
): void {
  const disk = envelope.disks.find((d) => d.diskId === diskId);
  if (!disk) throw new OvfkitError("OVF_NO_SUCH_DISK", `no Disk with ovf:diskId="${diskId}"`);
  for (const hardware of system.hardware) {
    for (const item of hardware.items) if (hostsDisk(item, diskId)) hardware.removeItem(item);
  }
  disk.element.parent?.remove(disk.element);
  const stillUsed = envelope.disks.some((d) => d.fileRef === disk.fileRef);
  const file = envelope.files.find((f) => f.id === disk.fileRef);
  if (file && !stillUsed) {
    file.element.parent?.remove(file.element);
    if (file.href) outcome.removed.push(file.href);
  }
  outcome.changes.push(`removed disk ${diskId}`);
}

async function addDisk(
  envelope: OvfEnvelope,
  system: OvfVirtualSystem,
  path: string,
  outcome: EditOutcome,
): Promise<void> {
  const href = basename(path);
  if (envelope.files.some((f) => f.href === href)) {
    throw new OvfkitError("OVF_FILE_EXISTS", `the package already has a file named ${href}`);
  }
  const reader = await openDisk(path);
  const { virtualSize, format } = reader;
  await reader.close();
  const size = (await stat(path)).size;
  const fileIds = new Set(envelope.files.map((f) => f.id));
  const diskIds = new Set(envelope.disks.map((d) => d.diskId));
  let n = 1;
  while (fileIds.has(`file${n}`) || diskIds.has(`vmdisk${n}`)) n++;
  const fileId = `file${n}`;
  const diskId = `vmdisk${n}`;
  let references = envelope.references;
  if (!references) {
    references = ovfElement(envelope, "References");
    insertBefore(envelope.element, references, envelope.element.elements()[0]);
  }
  const file = ovfElement(envelope, "File");
  setOvfAttribute(envelope, file, "href", href);
  setOvfAttribute(envelope, file, "id", fileId);
  setOvfAttribute(envelope, file, "size", String(size));
  references.append(file);
  reindentIfNew(references, file);
  let diskSection = envelope.diskSection;
  if (!diskSection) {
    diskSection = newSection(envelope, "DiskSection", "Virtual disk information");
    insertBefore(envelope.element, diskSection, envelope.content?.element);
    reindent(diskSection);
  }
  const disk = ovfElement(envelope, "Disk");
  const { capacity, units } = capacityAttributes(virtualSize);
  setOvfAttribute(envelope, disk, "capacity", capacity);
  setOvfAttribute(envelope, disk, "capacityAllocationUnits", units);
  setOvfAttribute(envelope, disk, "diskId", diskId);
  setOvfAttribute(envelope, disk, "fileRef", fileId);
  setOvfAttribute(envelope, disk, "format", DISK_FORMAT_URI[format] ?? DISK_FORMAT_URI.raw!);
  appendIndented(diskSection, disk);
  disk.selfClosing = true;
  const hardware = system.hardware[0];
  if (!hardware) throw new OvfkitError("OVF_NO_HARDWARE", "the VirtualSystem has no VirtualHardwareSection");
  const items = hardware.items;
  const controller = [RESOURCE_TYPE.scsiController, RESOURCE_TYPE.sataController, RESOURCE_TYPE.ideController]
    .map((type) => items.find((i) => i.resourceType === type))
    .find(Boolean);
  if (!controller?.instanceId) {
    throw new OvfkitError("OVF_NO_CONTROLLER", "no SCSI, SATA or IDE controller to attach the disk to");
  }
  const used = new Set(items.filter((i) => i.parent === controller.instanceId).map((i) => i.addressOnParent));
  let address = 0;
  while (used.has(String(address))) address++;
  const diskCount = items.filter((i) => i.resourceType === RESOURCE_TYPE.disk).length;
  const item = hardware.addItem({
    AddressOnParent: String(address),
    ElementName: `Hard Disk ${diskCount + 1}`,
    HostResource: `ovf:/disk/${diskId}`,
    InstanceID: nextInstanceId(system),
    Parent: controller.instanceId,
    ResourceType: String(RESOURCE_TYPE.disk),
  });
  reindent(item.element);
  outcome.added.push({ href, path });
  outcome.changes.push(`added disk ${diskId} (${href}, ${virtualSize} bytes, ${format})`);
}

export interface EditPackageOptions {
  /** Re-sign the manifest (required when the package is signed, unless `dropSignature`). */
  sign?: SignOptions;
  /** Remove the package's signature instead of re-signing. */
  dropSignature?: boolean;
  /** OVA only: write the edited package here instead of replacing it. */
  output?: string;
  overwrite?: boolean;
}

export interface EditResult extends EditOutcome {
  package: string;
}

/** Edits an `.ovf` folder or an `.ova` in place (atomically) or into `output`. */
export async function editPackage(
  path: string,
  spec: EditSpec,
  options: EditPackageOptions = {},
): Promise<EditResult> {
  return (await packageKind(path)) === "ova" ? editOva(path, spec, options) : editFolder(path, spec, options);
}

function refuseUnsigned(signed: boolean, options: EditPackageOptions, file: string): void {
  if (signed && !options.sign && !options.dropSignature) {
    throw new OvfkitError(
      "OVF_EDIT_SIGNED",
      "the package is signed: an edit invalidates its signature. Pass --sign KEY --cert CERT to re-sign, or --drop-signature",
      { file },
    );
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function editFolder(path: string, spec: EditSpec, options: EditPackageOptions): Promise<EditResult> {
  const folder = dirname(path);
  const stem = basename(path).replace(/\.[^.]*$/, "");
  const certPath = join(folder, `${stem}.cert`);
  const manifestPath = join(folder, `${stem}.mf`);
  refuseUnsigned(await exists(certPath), options, certPath);
  const envelope = parseOvf(await readDescriptorFile(path), { file: path });
  const outcome = await applyEdits(envelope, spec);
  const bytes = serializeOvfBytes(envelope);
  await withOutputs(
    async (tx) => {
      await writeFile(tx.file(path), bytes);
      for (const { href, path: source } of outcome.added) await copyFile(source, tx.file(join(folder, href)));
    },
    { overwrite: true },
  );
  if (options.dropSignature && (await exists(certPath))) await unlink(certPath);
  if (await exists(manifestPath)) {
    await writeManifest(path, "update", { sign: options.sign });
  } else if (options.sign) {
    await writeManifest(path, "create", { sign: options.sign });
  }
  return { package: path, ...outcome };
}

async function editOva(path: string, spec: EditSpec, options: EditPackageOptions): Promise<EditResult> {
  const summary = await listTar(path, { ova: true });
  const names = summary.members.map((m) => m.name.toLowerCase());
  refuseUnsigned(
    names.some((n) => n.endsWith(".cert")),
    options,
    path,
  );
  const descriptor = await descriptorOfOva(path);
  const envelope = parseOvf(descriptor.bytes, { file: descriptor.name });
  const oldManifest = summary.members.find((m) => m.name.toLowerCase().endsWith(".mf"));
  let algorithm: ManifestAlgorithm | false = "SHA256";
  if (oldManifest) {
    const text = await readRange(path, oldManifest.dataOffset, Math.min(oldManifest.size, 1024 * 1024));
    algorithm = parseManifest(text.toString("utf8")).entries[0]?.algorithm ?? "SHA256";
  }
  const outcome = await applyEdits(envelope, spec);
  const addedByHref = new Map(outcome.added.map((a) => [a.href, a.path]));
  const kept = await membersOfOva(path, withoutFiles(envelope, addedByHref));
  const members: PackMember[] = [];
  for (const file of envelope.files) {
    const source = file.href ? addedByHref.get(file.href) : undefined;
    if (source) {
      const info = await stat(source).catch((error: unknown) => Promise.reject(asOvfkitError(error, source)));
      members.push({
        name: file.href!,
        source,
        start: 0,
        size: info.size,
        mtime: Math.floor(info.mtimeMs / 1000),
      });
    } else {
      members.push(...kept.filter((m) => m.name === file.href || m.name.startsWith(`${file.href}.`)));
    }
  }
  const output = options.output ?? path;
  await writeOva(
    { name: descriptor.name, bytes: serializeOvfBytes(envelope), mtime: descriptor.mtime },
    members,
    output,
    {
      manifest: algorithm,
      sign: options.sign,
      overwrite: options.output === undefined ? true : options.overwrite,
    },
  );
  return { package: output, ...outcome };
}

/** Reads `length` bytes at `offset` (a small member of an OVA, never the whole file). */
async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** A view of the envelope without the added files (they are not in the old OVA yet). */
function withoutFiles(envelope: OvfEnvelope, added: Map<string, string>): OvfEnvelope {
  if (added.size === 0) return envelope;
  const copy = parseOvf(serializeOvfBytes(envelope), { file: envelope.file });
  for (const file of copy.files)
    if (file.href && added.has(file.href)) file.element.parent?.remove(file.element);
  return copy;
}
