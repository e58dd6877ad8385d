import { dirname, join } from "node:path";
import { type ManifestAlgorithm, parseManifest } from "../manifest.js";
import { EPASD_NS, OVF_NS, SASD_NS } from "../model.js";
import { RuleContext } from "../rules/types.js";
import { capacityBytes } from "../units.js";
import type { XmlElement } from "../xml.js";
import { type InspectedDisk, inspectDisk } from "./disk-inspect.js";
import { TARGET_RULES as T } from "./rules.js";

/** The context profile checks run in: the rule context plus cached views of the package's files. */
export class ProfileContext extends RuleContext {
  private diskCache: Promise<Map<string, InspectedDisk>> | undefined;

  /** Every referenced file that a Disk uses, inspected once per validation. */
  disks(): Promise<Map<string, InspectedDisk>> {
    this.diskCache ??= (async () => {
      const out = new Map<string, InspectedDisk>();
      const pkg = this.pkg;
      if (!pkg || pkg.compressed) return out;
      const diskFiles = new Set(this.envelope.disks.map((d) => d.fileRef));
      for (const file of this.envelope.files) {
        if (!file.href || !diskFiles.has(file.id) || file.compression || file.chunkSize) continue;
        if (!/^[^/\\:]+(\/[^/\\:]+)*$/.test(file.href) || file.href.split("/").includes("..")) continue;
        out.set(file.href, await inspectDisk(pkg, file.href));
      }
      return out;
    })();
    return this.diskCache;
  }

  /** The manifest beside the descriptor (same base name, `.mf`), if the package has one. */
  async manifest(): Promise<{ name: string; path: string; text: string } | undefined> {
    const pkg = this.pkg;
    if (!pkg || pkg.compressed) return undefined;
    const name = pkg.descriptorName.replace(/\.ovf$/i, ".mf");
    const size = await pkg.sizeOf(name);
    if (size === undefined || size > 4 * 1024 * 1024) return undefined;
    // findings name the manifest as the user can find it: beside the .ovf, or inside the .ova
    const path = pkg.kind === "ova" ? `${pkg.path}/${name}` : join(dirname(pkg.path), name);
    return { name, path, text: (await pkg.read(name, 0, size)).toString("utf8") };
  }

  fileElement(href: string): XmlElement {
    return this.envelope.files.find((f) => f.href === href)?.element ?? this.envelope.element;
  }
}

/** A location for findings about a package file rather than a descriptor element. */
function fileLocation(xpath = ""): { line: number; column: number; xpath: string } {
  return { line: 0, column: 0, xpath };
}

/** ★1: tar layout (first member .ovf, no PAX / long names, plain names, .mf/.cert next). */
export function checkTarLayout(ctx: ProfileContext): void {
  const pkg = ctx.pkg;
  if (pkg?.kind !== "ova" || !pkg.members || pkg.compressed) return;
  const members = pkg.members;
  const at = { file: pkg.path };
  if (members.length === 0) return;
  const first = members[0]!;
  if (first.extendedHeader) {
    ctx.report(
      T.tarLayout,
      fileLocation(),
      `the first tar member "${first.name}" is preceded by a PAX/GNU long-name header (vSphere reads "././@PaxHeader" as the first file)`,
      at,
    );
  }
  if (!first.name.toLowerCase().endsWith(".ovf")) {
    ctx.report(
      T.tarLayout,
      fileLocation(),
      `the first tar member is "${first.name}", not the .ovf descriptor`,
      at,
    );
  }
  for (const member of members) {
    // an extended header before a ustar-magic member is PAX (GNU long names sit before "ustar  " members)
    if (member.extendedHeader && member !== first && member.dialect !== "gnu") {
      ctx.report(
        T.tarLayout,
        fileLocation(),
        `tar member "${member.name}" has a PAX extended header; vSphere does not support PAX (GNU long names and base-256 sizes are fine)`,
        at,
      );
    }
    if (member.name.replace(/^\.\//, "").includes("/") || member.type !== "file") {
      ctx.report(
        T.tarLayout,
        fileLocation(),
        `tar member "${member.name}" is not a plain file at the top level`,
        {
          ...at,
          severity: "warning",
        },
      );
    }
  }
  const names = members.map((m) => m.name.replace(/^\.\//, ""));
  const mfIndex = names.findIndex((n) => n.endsWith(".mf"));
  if (mfIndex > 1) {
    ctx.report(
      T.tarLayout,
      fileLocation(),
      `the manifest "${names[mfIndex]}" is member ${mfIndex + 1}; it should follow the descriptor`,
      {
        ...at,
        severity: "warning",
      },
    );
  }
  const order = ctx.envelope.files.map((f) => f.href).filter((h): h is string => !!h && names.includes(h));
  const inTar = names.filter((n) => order.includes(n));
  if (order.join("\n") !== inTar.join("\n")) {
    ctx.report(
      T.tarLayout,
      fileLocation(),
      "disk files are not in the order References lists them (importers stream the tar once)",
      {
        ...at,
        severity: "warning",
      },
    );
  }
}

/** ★2 and ★3: manifest grammar, coverage and algorithm vs target version. */
export async function checkManifest(
  ctx: ProfileContext,
  options: { accepted?: readonly ManifestAlgorithm[]; lenientSpacing?: boolean; targetLabel: string },
): Promise<void> {
  const manifest = await ctx.manifest();
  if (!manifest) return;
  const { entries, findings } = parseManifest(manifest.text, { file: manifest.name });
  const where = (line: number) => ({ line, column: 1, xpath: "" });
  for (const finding of findings) {
    if (finding.code === "MANIFEST_SPACING" && options.lenientSpacing) continue;
    if (finding.code === "MANIFEST_CRLF" || finding.code === "MANIFEST_BLANK_LINE") continue;
    ctx.report(T.manifestGrammar, where(finding.line ?? 0), `${manifest.name}: ${finding.message}`, {
      file: manifest.path,
      severity: finding.code === "MANIFEST_SPACING" || finding.severity === "error" ? "error" : "warning",
    });
  }
  const descriptor = ctx.pkg!.descriptorName;
  if (entries.length > 0 && !entries.some((e) => e.name === descriptor)) {
    ctx.report(
      T.manifestGrammar,
      where(1),
      `${manifest.name} has no entry for the descriptor ${descriptor} ('Invalid OVF manifest entry')`,
      {
        file: manifest.path,
      },
    );
  }
  const known = new Set([descriptor, ...ctx.envelope.files.map((f) => f.href ?? "")]);
  for (const entry of entries) {
    if (
      !known.has(entry.name) &&
      !ctx.envelope.files.some((f) => f.chunkSize && entry.name.startsWith(`${f.href}.`))
    ) {
      ctx.report(
        T.manifestGrammar,
        where(entry.line),
        `${manifest.name} lists ${entry.name}, which References does not declare`,
        {
          file: manifest.path,
          severity: "warning",
        },
      );
    }
  }
  if (options.accepted) {
    for (const entry of entries) {
      if (!options.accepted.includes(entry.algorithm)) {
        ctx.report(
          T.manifestAlgorithm,
          where(entry.line),
          `${entry.algorithm} digests are not accepted by ${options.targetLabel} (accepted: ${options.accepted.join(", ")})`,
          { file: manifest.path, fix: `regenerate the manifest with ${options.accepted[0]}` },
        );
        break;
      }
    }
  }
}

/**
 * ★4: Disk capacity vs the disk's real virtual size. (File ovf:size vs the
 * real file is layer 3's OVF-REF-009, which runs for every profile, so it
 * is not repeated per target.)
 */
export async function checkSizes(ctx: ProfileContext): Promise<void> {
  const disks = await ctx.disks();
  for (const disk of ctx.envelope.disks) {
    const file = ctx.envelope.files.find((f) => f.id === disk.fileRef);
    if (!file?.href) continue;
    const inspected = disks.get(file.href);
    if (!inspected || inspected.format === "missing") continue;
    const capacity = capacityBytes(disk.capacity, disk.capacityAllocationUnits);
    const virtual = inspected.reader?.virtualSize ?? inspected.virtualSize;
    if (capacity !== undefined && virtual !== undefined && inspected.format !== "raw" && capacity < virtual) {
      ctx.report(
        T.fileSize,
        disk.element,
        `Disk capacity ${capacity} bytes is smaller than ${file.href}'s virtual size ${virtual} bytes`,
        {
          attribute: "ovf:capacity",
          fix: `set ovf:capacity="${virtual}" (and drop capacityAllocationUnits)`,
        },
      );
    }
  }
}

/** ★5: vmx-NN vs the ESXi version; non-VMware families. */
export function checkHardwareVersion(ctx: ProfileContext, maxVmx: number, targetLabel: string): void {
  for (const system of ctx.envelope.virtualSystems) {
    for (const hardware of system.hardware) {
      const types = hardware.systemTypes;
      if (types.length === 0) continue;
      const vmx = types
        .map((t) => /^vmx-(\d+)$/.exec(t.value))
        .filter((m): m is RegExpExecArray => !!m)
        .map((m) => Number(m[1]));
      if (vmx.length === 0) {
        ctx.report(
          T.hardwareVersion,
          types[0]!.element,
          `unsupported hardware family '${types.map((t) => t.value).join(" ")}' for ${targetLabel}`,
          {
            fix: `set VirtualSystemType to vmx-${Math.min(maxVmx, 14)} or lower`,
          },
        );
      } else if (Math.min(...vmx) > maxVmx) {
        ctx.report(
          T.hardwareVersion,
          types[0]!.element,
          `no supported hardware versions among [${types.map((t) => t.value).join(", ")}]; ${targetLabel} supports up to vmx-${maxVmx}`,
          { fix: `set VirtualSystemType to vmx-${maxVmx} (or add it to the list)` },
        );
      }
    }
  }
}

/** ★6: VMDK subformat / header version / flags. */
export async function checkVmdkSubformat(ctx: ProfileContext, targetLabel: string): Promise<void> {
  for (const disk of ctx.envelope.disks) {
    if (disk.format && /vmdk\.html#(sparse|monolithicSparse|compressed)$/i.test(disk.format)) {
      ctx.report(
        T.vmdkSubformat,
        disk.element,
        `Disk ovf:format "${disk.format}" is not streamOptimized (${targetLabel} expects #streamOptimized)`,
        {
          attribute: "ovf:format",
          severity: "warning",
          fix: 'convert the disk to streamOptimized and set ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"',
        },
      );
    }
  }
  for (const [href, inspected] of await ctx.disks()) {
    const at = ctx.fileElement(href);
    if (inspected.format === "vmdk-sparse") {
      const v = inspected.vmdk!;
      if (v.createType && v.createType !== "streamOptimized") {
        ctx.report(
          T.vmdkSubformat,
          at,
          `${href} is a ${v.createType} VMDK; ${targetLabel} needs streamOptimized`,
        );
      } else if (v.version !== undefined && v.version < 3) {
        ctx.report(
          T.vmdkSubformat,
          at,
          `${href} has sparse header version ${v.version} ('sparse VMDK version too old'); version 3 is required`,
        );
      } else if (v.createType === "streamOptimized" && !(v.compressed && v.markers)) {
        ctx.report(
          T.vmdkSubformat,
          at,
          `${href} says streamOptimized but lacks the compressed/markers header flags`,
        );
      }
    } else if (inspected.format === "vmdk-cowd") {
      ctx.report(
        T.vmdkSubformat,
        at,
        `${href} is an ESX COWD sparse disk; ${targetLabel} needs streamOptimized`,
      );
    } else if (
      inspected.format !== "missing" &&
      inspected.format !== "iso" &&
      inspected.format !== "vmdk-descriptor"
    ) {
      ctx.report(T.vmdkSubformat, at, `${href} is ${inspected.format}, not a streamOptimized VMDK`);
    }
  }
}

const MiB = 2 ** 20;

/** ★7: Azure fixed, aligned VHD. */
export async function checkAzureVhd(ctx: ProfileContext): Promise<void> {
  for (const [href, inspected] of await ctx.disks()) {
    const at = ctx.fileElement(href);
    if (inspected.format === "missing") continue;
    if (inspected.format !== "vhd") {
      ctx.report(
        T.azureVhd,
        at,
        `${href} is ${inspected.format}; Azure takes fixed VHD only (no VHDX, no VMDK)`,
      );
      continue;
    }
    const vhd = inspected.vhd!;
    if (!vhd.checksumOk)
      ctx.report(T.azureVhd, at, `${href}: VHD footer checksum is wrong (Azure: InvalidVhd)`);
    if (vhd.diskType !== 2) {
      ctx.report(
        T.azureVhd,
        at,
        `${href} is a ${vhd.diskType === 3 ? "dynamic" : vhd.diskType === 4 ? "differencing" : `type ${vhd.diskType}`} VHD; Azure needs a fixed VHD`,
      );
      continue;
    }
    if (vhd.currentSize % MiB !== 0) {
      ctx.report(
        T.azureVhd,
        at,
        `${href}: virtual size ${vhd.currentSize} is not a whole number of MiB ('The size must be a whole number (in MBs)')${vhd.creatorApp === "qemu" ? "; creator 'qemu' sized it from CHS geometry" : ""}`,
      );
    }
    if (inspected.fileSize !== vhd.currentSize + 512) {
      ctx.report(
        T.azureVhd,
        at,
        `${href}: file is ${inspected.fileSize} bytes but a fixed VHD of ${vhd.currentSize} bytes must be ${vhd.currentSize + 512}`,
      );
    }
    if (vhd.currentSize < 20 * MiB || vhd.currentSize > 32 * 2 ** 40) {
      ctx.report(
        T.azureVhd,
        at,
        `${href}: virtual size ${vhd.currentSize} is outside Azure's 20 MiB..32 TiB`,
      );
    }
  }
  for (const disk of ctx.envelope.disks) {
    if (disk.format && /vmdk/i.test(disk.format)) {
      ctx.report(
        T.azureVhd,
        disk.element,
        `Disk ovf:format is VMDK (${disk.format}); Azure takes fixed VHD`,
        { attribute: "ovf:format" },
      );
    }
  }
}

/** ★8: OVF 2.x on VMware. */
export function checkOvf2(ctx: ProfileContext): void {
  const envelope = ctx.envelope;
  if (envelope.ns === OVF_NS.dmtf2) {
    ctx.report(
      T.ovf2OnVmware,
      envelope.element,
      "the descriptor is OVF 2.x (envelope/2 namespace); VMware importers expect OVF 1.x",
    );
  }
  for (const { item } of envelope.items) {
    if (item.kind !== "Item") {
      ctx.report(
        T.ovf2OnVmware,
        item.element,
        `Unsupported element '${item.kind}' (OVF 2.x ${item.kind === "StorageItem" ? "SASD" : "EPASD"})`,
      );
    }
  }
  for (const element of envelope.element.descendants()) {
    const ns = element.namespaceURI;
    if (
      (ns === EPASD_NS || ns === SASD_NS) &&
      element.parent &&
      !["StorageItem", "EthernetPortItem"].includes(element.parent.localName)
    ) {
      ctx.report(
        T.ovf2OnVmware,
        element,
        `<${element.name}> uses the OVF 2.x ${ns === EPASD_NS ? "EPASD" : "SASD"} schema`,
      );
      return;
    }
  }
}

export interface DeviceRules {
  /** ResourceType numbers the target refuses, with why. */
  refusedTypes?: Record<number, string>;
  /** ResourceSubType values refused, by ResourceType. */
  refusedSubtypes?: { type: number; pattern: RegExp; why: string }[];
  /** Vendor namespaces that only the named hypervisor understands (warnings). */
  foreignSections?: { pattern: RegExp; why: string }[];
}

/** ★9: unsupported devices and subtypes. */
export function checkDevices(ctx: ProfileContext, rules: DeviceRules): void {
  for (const { item } of ctx.envelope.items) {
    const type = item.resourceType;
    if (type === undefined) continue;
    const refused = rules.refusedTypes?.[type];
    if (refused && item.required) {
      ctx.report(
        T.unsupportedDevice,
        item.fieldElement("ResourceType")!,
        `${refused} (ResourceType ${type}, "${item.elementName ?? item.instanceId}")`,
        {
          fix: 'remove the Item or mark it ovf:required="false"',
        },
      );
    }
    const subtype = item.resourceSubType;
    if (subtype === undefined) continue;
    for (const rule of rules.refusedSubtypes ?? []) {
      if (rule.type === type && rule.pattern.test(subtype)) {
        ctx.report(
          T.unsupportedDevice,
          item.fieldElement("ResourceSubType")!,
          `Value '${subtype}' of ResourceSubType: ${rule.why}`,
        );
      }
    }
  }
  for (const rule of rules.foreignSections ?? []) {
    for (const element of ctx.envelope.element.descendants()) {
      if (rule.pattern.test(element.namespaceURI) && element.parent === ctx.envelope.content?.element) {
        ctx.report(T.unsupportedDevice, element, `<${element.name}>: ${rule.why}`, { severity: "warning" });
      }
    }
    for (const { item } of ctx.envelope.items) {
      const subtype = item.resourceSubType ?? "";
      if (rule.pattern.test(subtype)) {
        ctx.report(T.unsupportedDevice, item.fieldElement("ResourceSubType")!, `'${subtype}': ${rule.why}`, {
          severity: "warning",
        });
      }
    }
  }
}

/** ★10: compressed disks / compressed OVA. */
export function checkCompression(ctx: ProfileContext, targetLabel: string): void {
  if (ctx.pkg?.compressed) {
    ctx.report(
      T.compressed,
      fileLocation(),
      `${ctx.pkg.path} is gzip-compressed; ${targetLabel} needs a plain tar .ova`,
      { file: ctx.pkg.path },
    );
  }
  for (const file of ctx.envelope.files) {
    if (file.compression && file.compression !== "identity") {
      ctx.report(
        T.compressed,
        file.element,
        `${file.href ?? file.id} is ovf:compression="${file.compression}" ('OVF package with compressed disks is currently not supported')`,
        {
          attribute: "ovf:compression",
        },
      );
    }
  }
}

/** ★11: AWS VM Import limits. */
export async function checkAwsLimits(ctx: ProfileContext): Promise<void> {
  const TiB = 2 ** 40;
  const envelope = ctx.envelope;
  for (const system of envelope.virtualSystems) {
    const diskItems = system.hardware.flatMap((h) => h.items).filter((i) => i.resourceType === 17);
    if (diskItems.length > 21) {
      ctx.report(
        T.awsLimits,
        diskItems[21]!.element,
        `${diskItems.length} disks; AWS VM Import takes at most 21`,
      );
    }
    const os = system.operatingSystem;
    const osType = os ? (os.attrNS("http://www.vmware.com/schema/ovf", "osType") ?? "") : "";
    if (/arm|aarch/i.test(osType) || (osType && !/64/.test(osType) && /Guest$/.test(osType))) {
      ctx.report(
        T.awsLimits,
        os!,
        `guest OS type "${osType}" is not x86 64-bit; AWS VM Import needs a 64-bit x86 guest`,
        {
          severity: "warning",
        },
      );
    }
  }
  for (const disk of envelope.disks) {
    const capacity = capacityBytes(disk.capacity, disk.capacityAllocationUnits);
    if (capacity !== undefined && capacity >= 16 * TiB) {
      ctx.report(
        T.awsLimits,
        disk.element,
        `Disk ${disk.diskId} is ${capacity} bytes; AWS imports disks under 16 TiB (ImportImage: under 8 TiB)`,
        {
          attribute: "ovf:capacity",
        },
      );
    } else if (capacity !== undefined && capacity >= 8 * TiB) {
      ctx.report(
        T.awsLimits,
        disk.element,
        `Disk ${disk.diskId} is ${capacity} bytes; ImportImage takes disks under 8 TiB`,
        {
          attribute: "ovf:capacity",
          severity: "warning",
        },
      );
    }
    if (disk.format && /sesparse/i.test(disk.format)) {
      ctx.report(
        T.awsLimits,
        disk.element,
        `Disk ${disk.diskId} is SEsparse; AWS does not import SEsparse disks`,
        { attribute: "ovf:format" },
      );
    }
  }
}

/** ★12: VMDK descriptors whose extents or parents are not in the package. */
export async function checkVmdkComplete(ctx: ProfileContext): Promise<void> {
  const pkg = ctx.pkg;
  if (!pkg) return;
  for (const [href, inspected] of await ctx.disks()) {
    const vmdk = inspected.vmdk;
    if (!vmdk) continue;
    const folder = href.includes("/") ? href.slice(0, href.lastIndexOf("/") + 1) : "";
    const at = ctx.fileElement(href);
    if (inspected.format === "vmdk-descriptor") {
      if (vmdk.extents.length === 0) {
        ctx.report(T.vmdkComplete, at, `${href} is a VMDK descriptor with no extents`);
      }
      for (const extent of vmdk.extents) {
        if (!extent.file) continue;
        if ((await pkg.sizeOf(folder + extent.file)) === undefined) {
          ctx.report(
            T.vmdkComplete,
            at,
            `${href} is a descriptor-only VMDK whose extent "${extent.file}" is not in the package`,
          );
        }
      }
    }
    if (vmdk.parentFileNameHint && (await pkg.sizeOf(folder + vmdk.parentFileNameHint)) === undefined) {
      ctx.report(
        T.vmdkComplete,
        at,
        `${href} is a delta disk whose parent "${vmdk.parentFileNameHint}" is not in the package`,
      );
    }
  }
}

/** #15: required user-configurable properties with no default. */
export function checkRequiredProperties(ctx: ProfileContext): void {
  for (const system of ctx.envelope.virtualSystems) {
    for (const property of system.properties) {
      if (
        property.userConfigurable &&
        property.required &&
        property.value === undefined &&
        property.type !== "password"
      ) {
        ctx.report(
          T.requiredProperty,
          property.element,
          `property "${property.key}" is user-configurable and required but has no ovf:value`,
        );
      }
    }
  }
}

/** #18: properties without an ovf-env transport. */
export function checkTransport(ctx: ProfileContext): void {
  for (const system of ctx.envelope.virtualSystems) {
    if (system.properties.length === 0) continue;
    for (const hardware of system.hardware) {
      if (ctx.envelope.ovfAttr(hardware.element, "transport") === undefined) {
        ctx.report(
          T.transport,
          hardware.element,
          `${system.properties.length} ProductSection properties but no ovf:transport: the guest never sees them`,
        );
      }
    }
  }
}

/** #21: multi-VM packages. */
export function checkCollection(ctx: ProfileContext, targetLabel: string): void {
  const content = ctx.envelope.content;
  if (content?.isCollection) {
    ctx.report(
      T.collection,
      content.element,
      `VirtualSystemCollection with ${ctx.envelope.virtualSystems.length} systems: ${targetLabel} imports one VM per package`,
    );
  }
}

/** #22: qcow2 disks outside oVirt. */
export async function checkQcow2(ctx: ProfileContext, targetLabel: string): Promise<void> {
  for (const [href, inspected] of await ctx.disks()) {
    if (inspected.format === "qcow2") {
      ctx.report(
        T.qcow2,
        ctx.fileElement(href),
        `${href} is qcow2; ${targetLabel} does not read qcow2 disks in OVF packages`,
      );
    }
  }
}
