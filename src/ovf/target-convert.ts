import { rmSync } from "node:fs";
import { copyFile, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { convert, grownTo, openDisk, type WriterOptions } from "../formats/index.js";
import { withOutputs } from "../formats/output.js";
import { capacityAttributes, DISK_FORMAT_URI } from "./edit.js";
import type { ManifestAlgorithm } from "./manifest.js";
import { type OvfEnvelope, type OvfItem, RESOURCE_TYPE } from "./model.js";
import { checkHref, packageKind } from "./ova.js";
import { setOvfAttribute } from "./ovf-attr.js";
import { type PackMember, unpackOva, writeManifest, writeOva } from "./pack.js";
import { parseOvf, readDescriptorFile } from "./parse.js";
import { serializeOvfBytes } from "./serialize.js";

/**
 * Whole-appliance conversion for an importer (`convert APP.ova OUT.ova
 * --target X`): every disk rewritten in the target's format, the
 * descriptor adjusted to what the target's profile checks
 * (notes/targets.md), a new manifest. The result is written atomically;
 * intermediate files live in a hidden work folder beside the output and
 * are removed on success, error or SIGINT/SIGTERM.
 */

export const CONVERT_TARGETS = ["vsphere", "virtualbox", "aws", "azure", "ovirt"] as const;
export type ConvertTarget = (typeof CONVERT_TARGETS)[number];

interface TargetPlan {
  /** Output disk format (a formats/ driver name), its writer options and file extension. */
  format: "vmdk" | "vpc" | "qcow2";
  options: (adapter: string, hwVersion: number) => WriterOptions;
  extension: string;
  /** The target imports VMware-style descriptors (vmx-NN, VMware controller subtypes). */
  vmware: boolean;
  manifest: ManifestAlgorithm;
  /** Smallest virtual size the target accepts; smaller disks are grown with zeros. */
  minimumSize?: number;
}

/** Why each target gets its disk format: targets.md checks 6, 7 and 22. */
const PLANS: Record<ConvertTarget, TargetPlan> = {
  // vSphere/ovftool and AWS VM Import need VMware's canonical streamOptimized VMDK.
  vsphere: {
    format: "vmdk",
    options: (adapter, hw) => ({
      subformat: "streamOptimized",
      adapter_type: adapter,
      hwversion: String(hw),
    }),
    extension: ".vmdk",
    vmware: true,
    manifest: "SHA256",
  },
  aws: {
    format: "vmdk",
    options: (adapter, hw) => ({
      subformat: "streamOptimized",
      adapter_type: adapter,
      hwversion: String(hw),
    }),
    extension: ".vmdk",
    vmware: true,
    manifest: "SHA256",
  },
  // VirtualBox exports (and imports best) streamOptimized VMDK too.
  virtualbox: {
    format: "vmdk",
    options: (adapter) => ({ subformat: "streamOptimized", adapter_type: adapter }),
    extension: ".vmdk",
    vmware: false,
    manifest: "SHA256",
  },
  // Azure: fixed VHD, virtual size a whole number of MiB.
  azure: {
    format: "vpc",
    options: () => ({ subformat: "fixed", align_mib: "on" }),
    // Azure refuses disks under 20 MiB (notes/targets.md check 7): smaller ones are grown, the tail unallocated.
    minimumSize: 20 * 1024 * 1024,
    extension: ".vhd",
    vmware: false,
    manifest: "SHA256",
  },
  // oVirt's own OVAs carry qcow2; virt-v2v accepts SHA1/SHA256 manifests only.
  ovirt: {
    format: "qcow2",
    options: () => ({}),
    extension: ".qcow2",
    vmware: false,
    manifest: "SHA256",
  },
};

/** Newest vmx-NN vSphere 8.0U2 accepts (targets.md check 5); older packages keep their own. */
const MAX_VMX = 21;
/** What a non-VMware descriptor (virtualbox-2.2, xen-3.0...) becomes: ESXi 6.5+ hardware. */
const DEFAULT_VMX = 13;

export interface ConvertApplianceOptions {
  target: ConvertTarget;
  overwrite?: boolean;
  manifest?: ManifestAlgorithm;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertApplianceResult {
  output: string;
  target: ConvertTarget;
  disks: { from: string; to: string; format: string; virtualSize: number }[];
  changes: string[];
}

export function isConvertTarget(value: string): value is ConvertTarget {
  return (CONVERT_TARGETS as readonly string[]).includes(value);
}

function hardwareVersionOf(envelope: OvfEnvelope): number | undefined {
  const types = envelope.virtualSystems.flatMap((s) =>
    s.hardware.flatMap((h) => h.systemTypes.map((t) => t.value)),
  );
  const vmx = types
    .map((t) => /^vmx-(\d+)$/.exec(t)?.[1])
    .filter(Boolean)
    .map(Number);
  return vmx.length > 0 ? Math.max(...vmx) : undefined;
}

/** The VMDK adapter type matching the controller a disk hangs on (ddb.adapterType, targets.md #19). */
function adapterFor(envelope: OvfEnvelope, diskId: string): string {
  const items = envelope.items.map((i) => i.item);
  const diskItem = items.find((i) => i.hostResources.some((h) => h.value.endsWith(`/disk/${diskId}`)));
  const controller = items.find((i) => i.instanceId !== undefined && i.instanceId === diskItem?.parent);
  if (controller?.resourceType === RESOURCE_TYPE.scsiController) {
    const subtype = (controller.resourceSubType ?? "").toLowerCase();
    if (subtype.includes("buslogic")) return "buslogic";
    if (subtype.includes("paravirtual") || subtype.includes("pvscsi")) return "pvscsi";
    return "lsilogic";
  }
  return "ide";
}

/** Descriptor changes a target's profile asks for (targets.md checks 5, 9, 10). */
function adjustDescriptor(envelope: OvfEnvelope, target: ConvertTarget, changes: string[]): void {
  const plan = PLANS[target];
  for (const system of envelope.virtualSystems) {
    for (const hardware of system.hardware) {
      if (plan.vmware) {
        for (const { value, element } of hardware.systemTypes) {
          const vmx = /^vmx-(\d+)$/.exec(value);
          if (!vmx || Number(vmx[1]) > MAX_VMX) {
            const replacement = vmx ? `vmx-${MAX_VMX}` : `vmx-${DEFAULT_VMX}`;
            element.setText(replacement);
            changes.push(`VirtualSystemType ${value} → ${replacement}`);
            break;
          }
        }
      }
      fixDuplicateAddresses(hardware.items, changes);
      for (const item of [...hardware.items]) {
        const drop = shouldDrop(item, target);
        if (drop) {
          hardware.removeItem(item);
          changes.push(`removed ${item.elementName ?? `Item ${item.instanceId}`}: ${drop}`);
          continue;
        }
        if (!plan.vmware) continue;
        const subtype = item.resourceSubType;
        if (item.resourceType === RESOURCE_TYPE.ideController && subtype && /^PIIX[34]$/i.test(subtype)) {
          item.removeField("ResourceSubType");
          changes.push(`IDE controller subtype ${subtype} removed (vSphere does not know it)`);
        }
        if (item.resourceType === RESOURCE_TYPE.sataController && subtype === "AHCI") {
          item.setField("ResourceSubType", "vmware.sata.ahci");
          changes.push("SATA controller subtype AHCI → vmware.sata.ahci");
        }
      }
    }
  }
}

/** Duplicate AddressOnParent on one controller (targets.md #18, vCenter refuses): the later ones move to free slots. */
function fixDuplicateAddresses(items: OvfItem[], changes: string[]): void {
  const byController = new Map<string, OvfItem[]>();
  for (const item of items) {
    if (item.parent === undefined || item.addressOnParent === undefined) continue;
    const group = byController.get(item.parent) ?? [];
    group.push(item);
    byController.set(item.parent, group);
  }
  for (const [controller, group] of byController) {
    const used = new Set<string>();
    for (const item of group) {
      const address = item.addressOnParent!;
      if (!used.has(address)) {
        used.add(address);
        continue;
      }
      let free = 0;
      while (used.has(String(free)) || group.some((other) => other.addressOnParent === String(free))) free++;
      item.setField("AddressOnParent", String(free));
      used.add(String(free));
      changes.push(
        `${item.elementName ?? `Item ${item.instanceId}`}: AddressOnParent ${address} → ${free} on controller ${controller} (was used twice)`,
      );
    }
  }
}

function shouldDrop(item: OvfItem, target: ConvertTarget): string | undefined {
  if (PLANS[target].vmware && item.resourceType === RESOURCE_TYPE.sound)
    return "sound cards are refused by vSphere";
  if (!PLANS[target].vmware && item.resourceSubType === "vmware.vmci")
    return "VMware VMCI exists only on VMware";
  return undefined;
}

/**
 * Removes `folder` if SIGINT/SIGTERM arrives, then lets the signal end the
 * process (re-raised when no other handler, e.g. withOutputs', is left to).
 * Returns the function that uninstalls the handlers.
 */
function removeOnSignal(folder: string): () => void {
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handler = (signal: NodeJS.Signals): void => {
    rmSync(folder, { recursive: true, force: true });
    for (const other of signals) process.removeListener(other, handler);
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  for (const signal of signals) process.once(signal, handler);
  return () => {
    for (const signal of signals) process.removeListener(signal, handler);
  };
}

/**
 * Converts an appliance (`.ova` or `.ovf`) for `target`, writing an `.ova`
 * (or an OVF folder when `outPath` ends in `.ovf`).
 */
export async function convertAppliance(
  source: string,
  outPath: string,
  options: ConvertApplianceOptions,
): Promise<ConvertApplianceResult> {
  if (!isConvertTarget(options.target)) {
    throw new OvfkitError(
      "BAD_ARGUMENT",
      `unknown target "${options.target}" (${CONVERT_TARGETS.join(", ")})`,
    );
  }
  const work = await mkdtemp(join(dirname(resolve(outPath)), `.${basename(outPath)}.ovfkit-work-`)).catch(
    (error: unknown) => Promise.reject(asOvfkitError(error, outPath)),
  );
  // Signals: the work folder goes too (withOutputs removes the output's temporary file itself).
  const release = removeOnSignal(work);
  try {
    return await convertIn(work, source, outPath, options);
  } finally {
    release();
    await rm(work, { recursive: true, force: true });
  }
}

async function convertIn(
  work: string,
  source: string,
  outPath: string,
  options: ConvertApplianceOptions,
): Promise<ConvertApplianceResult> {
  const plan = PLANS[options.target];
  let descriptorPath = source;
  if ((await packageKind(source)) === "ova") {
    const extracted = join(work, "source");
    const { files } = await unpackOva(source, extracted);
    descriptorPath = files.find((f) => f.toLowerCase().endsWith(".ovf"))!;
  }
  const folder = dirname(descriptorPath);
  const envelope = parseOvf(await readDescriptorFile(descriptorPath), { file: descriptorPath });
  if (envelope.dialect === "dmtf-2" && plan.vmware) {
    throw new OvfkitError(
      "CONVERT_UNSUPPORTED",
      "OVF 2.x descriptors are not converted to the 1.x namespace VMware importers need",
      { file: descriptorPath },
    );
  }
  const changes: string[] = [];
  const result: ConvertApplianceResult = { output: outPath, target: options.target, disks: [], changes };
  const hwVersion = Math.min(hardwareVersionOf(envelope) ?? DEFAULT_VMX, MAX_VMX);
  adjustDescriptor(envelope, options.target, changes);
  const converted = new Map<string, string>(); // file id → converted path
  const usedNames = new Set(envelope.files.map((f) => f.href));
  for (const disk of envelope.disks) {
    const file = envelope.files.find((f) => f.id === disk.fileRef);
    if (!file?.href || converted.has(file.id ?? "")) continue;
    checkHref(file.href, descriptorPath);
    if (file.compression || file.chunkSize) {
      throw new OvfkitError(
        "CONVERT_UNSUPPORTED",
        `${file.href} is ${file.compression ? `${file.compression}-compressed` : "split in chunks"}; unpack and repack it first`,
        { file: descriptorPath },
      );
    }
    const input = join(folder, file.href);
    const stem = file.href.replace(/\.[^.]*$/, "");
    let name = `${stem}${plan.extension}`;
    if (name !== file.href && usedNames.has(name)) name = `${stem}-${options.target}${plan.extension}`;
    usedNames.add(name);
    const output = join(work, name);
    const reader = await openDisk(input);
    try {
      await convert(grownTo(reader, plan.minimumSize ?? 0), output, {
        format: plan.format,
        options: plan.options(adapterFor(envelope, disk.diskId ?? ""), hwVersion),
        threads: options.threads,
        progress: options.onProgress,
      });
    } finally {
      await reader.close();
    }
    const written = await openDisk(output);
    const virtualSize = written.virtualSize;
    await written.close();
    converted.set(file.id ?? file.href, output);
    setOvfAttribute(envelope, file.element, "href", name);
    setOvfAttribute(envelope, file.element, "size", String((await stat(output)).size));
    for (const attribute of ["compression", "chunkSize"]) {
      const node = file.element.attributeNodeNS(envelope.ns, attribute);
      if (node) file.element.removeAttr(node.name);
    }
    for (const same of envelope.disks.filter((d) => d.fileRef === disk.fileRef)) {
      setOvfAttribute(envelope, same.element, "format", DISK_FORMAT_URI[plan.format]!);
      const { capacity, units } = capacityAttributes(virtualSize);
      setOvfAttribute(envelope, same.element, "capacity", capacity);
      setOvfAttribute(envelope, same.element, "capacityAllocationUnits", units);
    }
    result.disks.push({ from: file.href, to: name, format: plan.format, virtualSize });
    changes.push(
      `${file.href} → ${name} (${plan.format}${plan.format === "vmdk" ? " streamOptimized" : ""})`,
    );
  }
  // Every other referenced file is copied as it is.
  const members: PackMember[] = [];
  for (const file of envelope.files) {
    if (!file.href) continue;
    const path = converted.get(file.id ?? file.href) ?? join(folder, file.href);
    if (!converted.has(file.id ?? file.href)) checkHref(file.href, descriptorPath);
    const info = await stat(path).catch((error: unknown) => Promise.reject(asOvfkitError(error, path)));
    members.push({
      name: file.href,
      source: path,
      start: 0,
      size: info.size,
      mtime: Math.floor(info.mtimeMs / 1000),
    });
  }
  const descriptorName = basename(descriptorPath);
  const descriptor = serializeOvfBytes(envelope);
  const manifest = options.manifest ?? plan.manifest;
  if (extname(outPath).toLowerCase() === ".ovf") {
    await writeFolder(outPath, descriptor, members, options.overwrite ?? false);
    await writeManifest(outPath, "create", { algorithm: manifest }).catch(async (error: unknown) => {
      const typed = asOvfkitError(error);
      if (typed.code !== "OUTPUT_EXISTS" || !options.overwrite) throw typed;
      await writeManifest(outPath, "update", { algorithm: manifest });
    });
  } else {
    await writeOva(
      { name: descriptorName, bytes: descriptor, mtime: Math.floor(Date.now() / 1000) },
      members,
      outPath,
      {
        manifest,
        overwrite: options.overwrite,
        onProgress: options.onProgress,
      },
    );
  }
  return result;
}

/** An OVF folder output: the descriptor and its files, committed together. */
async function writeFolder(
  outPath: string,
  descriptor: Buffer,
  members: PackMember[],
  overwrite: boolean,
): Promise<void> {
  const folder = dirname(outPath);
  await withOutputs(
    async (tx) => {
      await writeFile(tx.file(outPath), descriptor);
      // Members here are whole files (converted disks, copied files): copied, never read into memory.
      for (const member of members) await copyFile(member.source, tx.file(join(folder, member.name)));
    },
    { overwrite },
  );
}

export interface CreateOvfOptions {
  /** VirtualSystem id and Name (default: the first disk's name). */
  name?: string;
  cpus?: number;
  memoryMiB?: number;
  /** Network the one NIC connects to (default "VM Network", vSphere's default port group). */
  network?: string;
  /** vmw:osType (default otherLinux64Guest). */
  osType?: string;
  /** Target whose disk format the appliance gets (default vsphere: streamOptimized VMDK). */
  target?: ConvertTarget;
  overwrite?: boolean;
  onProgress?: (done: number, total: number) => void;
}

const RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";

function xmlEscape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** RASD fields in schema (code-point) order, one Item. */
function rasdItem(fields: Record<string, string>): string {
  const lines = Object.keys(fields)
    .sort()
    .map((key) => `        <rasd:${key}>${xmlEscape(fields[key]!)}</rasd:${key}>`);
  return `      <Item>\n${lines.join("\n")}\n      </Item>`;
}

/**
 * A DMTF OVF 1.x descriptor for `disks` (VMware-style, the dialect every
 * importer reads): one VM, CPUs, memory, an LSI Logic SCSI controller with
 * the disks, one VMXNET3 NIC.
 */
export function descriptorFor(
  disks: { href: string; size: number; capacity: number; format: string }[],
  options: CreateOvfOptions,
): string {
  const name = options.name ?? disks[0]!.href.replace(/\.[^.]*$/, "");
  const network = options.network ?? "VM Network";
  const cpus = options.cpus ?? 1;
  const memory = options.memoryMiB ?? 1024;
  const files = disks.map(
    (d, i) => `    <File ovf:href="${xmlEscape(d.href)}" ovf:id="file${i + 1}" ovf:size="${d.size}"/>`,
  );
  const diskLines = disks.map((d, i) => {
    const { capacity, units } = capacityAttributes(d.capacity);
    return `    <Disk ovf:capacity="${capacity}" ovf:capacityAllocationUnits="${units}" ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:format="${DISK_FORMAT_URI[d.format] ?? DISK_FORMAT_URI.raw}"/>`;
  });
  let id = 0;
  const items = [
    rasdItem({
      AllocationUnits: "hertz * 10^6",
      Description: "Number of Virtual CPUs",
      ElementName: `${cpus} virtual CPU(s)`,
      InstanceID: String(++id),
      ResourceType: "3",
      VirtualQuantity: String(cpus),
    }),
    rasdItem({
      AllocationUnits: "byte * 2^20",
      Description: "Memory Size",
      ElementName: `${memory}MB of memory`,
      InstanceID: String(++id),
      ResourceType: "4",
      VirtualQuantity: String(memory),
    }),
    rasdItem({
      Address: "0",
      Description: "SCSI Controller",
      ElementName: "SCSI Controller 0",
      InstanceID: String(++id),
      ResourceSubType: "lsilogic",
      ResourceType: "6",
    }),
  ];
  const controller = String(id);
  disks.forEach((_, i) => {
    items.push(
      rasdItem({
        AddressOnParent: String(i),
        ElementName: `Hard Disk ${i + 1}`,
        HostResource: `ovf:/disk/vmdisk${i + 1}`,
        InstanceID: String(++id),
        Parent: controller,
        ResourceType: "17",
      }),
    );
  });
  items.push(
    rasdItem({
      AddressOnParent: "7",
      AutomaticAllocation: "true",
      Connection: network,
      Description: "VmxNet3 ethernet adapter",
      ElementName: "Network adapter 1",
      InstanceID: String(++id),
      ResourceSubType: "VmxNet3",
      ResourceType: "10",
    }),
  );
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="${RASD}" xmlns:vssd="${VSSD}" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
${files.join("\n")}
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
${diskLines.join("\n")}
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="${xmlEscape(network)}">
      <Description>The ${xmlEscape(network)} network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="${xmlEscape(name)}">
    <Info>A virtual machine</Info>
    <Name>${xmlEscape(name)}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="${xmlEscape(options.osType ?? "otherLinux64Guest")}">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${xmlEscape(name)}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-${DEFAULT_VMX}</vssd:VirtualSystemType>
      </System>
${items.join("\n")}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}

/**
 * Makes an appliance from disk images (raw, qcow2, VHD, VMDK...): a
 * descriptor for them, the disks converted for the target, a manifest —
 * so one command turns an image into an importable OVA.
 */
export async function createOvf(
  disks: string[],
  outPath: string,
  options: CreateOvfOptions = {},
): Promise<ConvertApplianceResult> {
  if (disks.length === 0) throw new OvfkitError("BAD_ARGUMENT", "create-ovf needs at least one disk image");
  const staging = await mkdtemp(
    join(dirname(resolve(outPath)), `.${basename(outPath)}.ovfkit-create-`),
  ).catch((error: unknown) => Promise.reject(asOvfkitError(error, outPath)));
  const release = removeOnSignal(staging);
  try {
    const described: { href: string; size: number; capacity: number; format: string }[] = [];
    for (const disk of disks) {
      const href = basename(disk);
      if (described.some((d) => d.href === href)) {
        throw new OvfkitError("BAD_ARGUMENT", `two disks are named ${href}`);
      }
      const reader = await openDisk(disk);
      described.push({
        href,
        size: (await stat(disk)).size,
        capacity: reader.virtualSize,
        format: reader.format,
      });
      await reader.close();
      // The staged descriptor refers to the disks where they are (a link, nothing copied).
      await symlink(resolve(disk), join(staging, href));
    }
    const stem = basename(outPath).replace(/\.[^.]*$/, "");
    const descriptor = join(staging, `${stem}.ovf`);
    await writeFile(descriptor, descriptorFor(described, options));
    return await convertAppliance(descriptor, outPath, {
      target: options.target ?? "vsphere",
      overwrite: options.overwrite,
      onProgress: options.onProgress,
    });
  } finally {
    release();
    await rm(staging, { recursive: true, force: true });
  }
}
