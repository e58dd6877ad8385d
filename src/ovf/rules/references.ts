import type { OvfItem } from "../model.js";
import { capacityBytes, isUnsignedLong, parseInteger, parseUnits } from "../units.js";
import { defineRules, type RuleContext } from "./types.js";

/** Layer 3: every id, reference, size and unit resolves. */
export const REFERENCE_RULES = defineRules({
  diskFileRef: {
    id: "OVF-REF-001",
    layer: 3,
    severity: "error",
    title: "a Disk's ovf:fileRef names no File in References",
    fix: "point ovf:fileRef at the ovf:id of a File in References (or add the File)",
  },
  hostResource: {
    id: "OVF-REF-002",
    layer: 3,
    severity: "error",
    title: "an Item's HostResource (ovf:/disk/ID, /disk/ID, ovf:/file/ID) names no Disk or File",
    fix: "make HostResource ovf:/disk/<diskId> with a diskId declared in DiskSection",
  },
  hostResourceForm: {
    id: "OVF-REF-003",
    layer: 3,
    severity: "warning",
    title: "a disk Item's HostResource is in none of the forms importers resolve",
    fix: "write HostResource as ovf:/disk/<diskId> (or ovf:/file/<fileId> for ISO/floppy images)",
  },
  parent: {
    id: "OVF-REF-004",
    layer: 3,
    severity: "error",
    title: "an Item's Parent names no InstanceID in the same VirtualHardwareSection",
    fix: "set rasd:Parent to the InstanceID of the controller the device is attached to",
  },
  duplicateId: {
    id: "OVF-REF-005",
    layer: 3,
    severity: "error",
    title:
      "an identifier (File ovf:id, Disk ovf:diskId, Network name, Item InstanceID, VirtualSystem ovf:id) is not unique",
    fix: "give each File, Disk, Network, VirtualSystem and Item (per hardware section) its own id",
  },
  network: {
    id: "OVF-REF-006",
    layer: 3,
    severity: "warning",
    title: "a network adapter's Connection names no Network in NetworkSection",
    fix: "declare the network in NetworkSection or change rasd:Connection to a declared name",
  },
  capacity: {
    id: "OVF-REF-007",
    layer: 3,
    severity: "error",
    title: "a Disk's ovf:capacity / ovf:capacityAllocationUnits do not parse to a byte count",
    fix: 'write ovf:capacity as an integer and units as "byte * 2^30" (or omit units for bytes)',
  },
  fileSize: {
    id: "OVF-REF-008",
    layer: 3,
    severity: "error",
    title: "a File's ovf:size or ovf:chunkSize is not an integer in 0..2^64-1 (xs:unsignedLong)",
    fix: "write the size in bytes as a plain integer (no units, no decimals)",
  },
  fileSizeMismatch: {
    id: "OVF-REF-009",
    layer: 3,
    severity: "error",
    title:
      "a File's ovf:size differs from the size of the file in the package ('Wrong file size specified in OVF descriptor')",
    fix: "set ovf:size to the file's real byte size (not the disk capacity)",
    source:
      "notes/targets.md #4/#8: coreos/fedora-coreos-tracker#391, hashicorp/packer#8995, vmware/vic-product#1008",
  },
  hrefOutside: {
    id: "OVF-REF-010",
    layer: 3,
    severity: "error",
    title: "an ovf:href leaves the package (absolute path, '..', file: URL)",
    fix: "use a relative name of a file stored beside the descriptor (inside the OVA)",
  },
  fileMissing: {
    id: "OVF-REF-011",
    layer: 3,
    severity: "error",
    title: "a File in References is not in the package (warning for a folder .ovf, error inside an .ova)",
    fix: "add the file to the package, or remove the File and whatever uses it",
  },
  unusedFile: {
    id: "OVF-REF-012",
    layer: 3,
    severity: "info",
    title: "a File in References is used by no Disk or Item",
    fix: "remove the unused File (and its package member) or reference it",
  },
  parentRef: {
    id: "OVF-REF-013",
    layer: 3,
    severity: "error",
    title: "a Disk's ovf:parentRef names no Disk",
    fix: "point ovf:parentRef at the diskId of the delta disk's parent",
  },
  configuration: {
    id: "OVF-REF-014",
    layer: 3,
    severity: "error",
    title: "an ovf:configuration names a DeploymentOption Configuration that does not exist",
    fix: "use ids declared in DeploymentOptionSection",
  },
  hrefRemote: {
    id: "OVF-REF-015",
    layer: 3,
    severity: "warning",
    title: "an ovf:href is a URL (http/https): it is legal, but nothing in the package backs it",
    fix: "ship the file in the package, or make sure every importer can fetch the URL",
  },
  hrefFolder: {
    id: "OVF-REF-016",
    layer: 3,
    severity: "warning",
    title: "an ovf:href names a file in a sub-folder: OVA members must be plain names",
    fix: "store the file beside the descriptor and use its plain name",
  },
});

const R = REFERENCE_RULES;
/** oVirt's "no parent": the nil UUID. */
const NIL_UUID = /^0{8}-0{4}-0{4}-0{4}-0{12}$/;

/** `ovf:/disk/ID`, `/disk/ID` (VirtualBox), `ovf:/file/ID`; undefined for anything else. */
export function parseHostResource(value: string): { kind: "disk" | "file"; id: string } | undefined {
  const match = /^(?:ovf:)?\/(disk|file)\/(.+)$/.exec(value.trim());
  return match ? { kind: match[1] as "disk" | "file", id: match[2]! } : undefined;
}

/** How an href relates to the package: inside, a sub-folder member, a URL, or leaving it. */
export function classifyHref(href: string): "plain" | "folder" | "remote" | "outside" {
  if (/^https?:\/\//i.test(href)) return "remote";
  if (/^[a-z][a-z0-9+.-]*:/i.test(href)) return "outside"; // file:, C:, smb: ...
  if (href.startsWith("/") || href.startsWith("\\") || href.includes("\\")) return "outside";
  const parts = href.split("/");
  if (parts.some((p) => p === "..")) return "outside";
  if (href === "" || parts.some((p) => p === "")) return "outside";
  return parts.length > 1 ? "folder" : "plain";
}

export async function checkReferences(ctx: RuleContext): Promise<void> {
  const envelope = ctx.envelope;
  const files = envelope.files;
  const disks = envelope.disks;
  const fileIds = new Map<string, (typeof files)[number]>();
  const usedFiles = new Set<string>();
  for (const file of files) {
    if (file.id === undefined) continue;
    if (fileIds.has(file.id))
      ctx.report(R.duplicateId, file.element, `File id "${file.id}" is declared twice`, {
        attribute: "ovf:id",
      });
    fileIds.set(file.id, file);
  }
  const diskIds = new Set<string>();
  for (const disk of disks) {
    if (disk.diskId === undefined) continue;
    if (diskIds.has(disk.diskId)) {
      ctx.report(R.duplicateId, disk.element, `Disk id "${disk.diskId}" is declared twice`, {
        attribute: "ovf:diskId",
      });
    }
    diskIds.add(disk.diskId);
  }
  for (const disk of disks) {
    if (disk.fileRef !== undefined) {
      usedFiles.add(disk.fileRef);
      // oVirt writes the File's href (image-group/image ids) as the Disk's fileRef
      const ovirtHref = envelope.dialect === "ovirt" && files.some((f) => f.href === disk.fileRef);
      if (!fileIds.has(disk.fileRef) && disk.fileRef !== "" && !ovirtHref) {
        ctx.report(
          R.diskFileRef,
          disk.element,
          `Disk ${disk.diskId ?? ""} refers to File "${disk.fileRef}", which References does not declare`,
          {
            attribute: "ovf:fileRef",
          },
        );
      }
    }
    if (disk.parentRef && !diskIds.has(disk.parentRef)) {
      ctx.report(
        R.parentRef,
        disk.element,
        `Disk ${disk.diskId ?? ""} has parent "${disk.parentRef}", which is not a Disk`,
        {
          attribute: "ovf:parentRef",
        },
      );
    }
    if (disk.capacity !== undefined && envelope.dialect !== "ovirt") {
      if (capacityBytes(disk.capacity, disk.capacityAllocationUnits) === undefined) {
        const unitsBad =
          disk.capacityAllocationUnits !== undefined && !parseUnits(disk.capacityAllocationUnits);
        ctx.report(
          R.capacity,
          disk.element,
          unitsBad
            ? `capacity units "${disk.capacityAllocationUnits}" are not a byte unit`
            : /^\$\{.+\}$/.test(disk.capacity)
              ? `capacity "${disk.capacity}" is a ProductSection property reference; it must resolve to an integer at deploy time`
              : `capacity "${disk.capacity}" is not an integer`,
          {
            attribute: unitsBad ? "ovf:capacityAllocationUnits" : "ovf:capacity",
            ...(/^\$\{.+\}$/.test(disk.capacity) ? { severity: "info" as const } : {}),
          },
        );
      }
    }
  }
  const networkNames = new Set<string>();
  for (const network of envelope.networks) {
    if (network.name === undefined) continue;
    if (networkNames.has(network.name)) {
      ctx.report(R.duplicateId, network.element, `Network "${network.name}" is declared twice`, {
        attribute: "ovf:name",
      });
    }
    networkNames.add(network.name);
  }
  const configurations = new Set(
    envelope.deploymentOptions.map((o) => o.id).filter((id): id is string => !!id),
  );
  const systemIds = new Map<string, string>();
  for (const element of envelope.element.descendants()) {
    const kind = envelope.kindOf(element);
    if ((kind === "VirtualSystem" || kind === "VirtualSystemCollection") && envelope.isOvfElement(element)) {
      const id = envelope.ovfAttr(element, "id");
      if (id === undefined) continue;
      const previous = systemIds.get(id);
      if (previous !== undefined) {
        // vCenter exports give a one-VM collection the VM's own id: sloppy, but importers cope
        const lenient = previous === "VirtualSystemCollection" || kind === "VirtualSystemCollection";
        ctx.report(R.duplicateId, element, `${kind} id "${id}" is also the id of a ${previous}`, {
          attribute: "ovf:id",
          ...(lenient ? { severity: "warning" as const } : {}),
        });
      }
      systemIds.set(id, kind);
    }
    const configuration = envelope.ovfAttr(element, "configuration");
    if (configuration !== undefined && envelope.isOvfElement(element)) {
      for (const id of configuration.trim().split(/\s+/).filter(Boolean)) {
        if (!configurations.has(id)) {
          ctx.report(
            R.configuration,
            element,
            `configuration "${id}" is not declared in DeploymentOptionSection`,
            {
              attribute: "ovf:configuration",
            },
          );
        }
      }
    }
  }
  for (const system of envelope.virtualSystems) {
    for (const hardware of system.hardware) {
      const items = hardware.items;
      checkItemIds(ctx, items);
      const instanceIds = new Set(
        items.map((i) => i.instanceId).filter((id): id is string => id !== undefined),
      );
      for (const item of items) {
        const parent = item.parent;
        if (
          parent !== undefined &&
          parent !== "" &&
          !instanceIds.has(parent) &&
          !(envelope.dialect === "ovirt" && NIL_UUID.test(parent))
        ) {
          ctx.report(
            R.parent,
            item.fieldElement("Parent")!,
            `Parent "${parent}" is not the InstanceID of any Item in this section`,
          );
        }
        for (const host of item.hostResources) {
          if (host.value === "") continue;
          const ref = parseHostResource(host.value);
          if (!ref) {
            if (item.resourceType === 17) {
              ctx.report(
                R.hostResourceForm,
                host.element,
                `HostResource "${host.value}" is not ovf:/disk/ID or ovf:/file/ID`,
              );
            }
            continue;
          }
          if (ref.kind === "disk" && !diskIds.has(ref.id)) {
            ctx.report(
              R.hostResource,
              host.element,
              `HostResource "${host.value}" names Disk "${ref.id}", which DiskSection does not declare`,
            );
          } else if (ref.kind === "file") {
            usedFiles.add(ref.id);
            if (!fileIds.has(ref.id)) {
              ctx.report(
                R.hostResource,
                host.element,
                `HostResource "${host.value}" names File "${ref.id}", which References does not declare`,
              );
            }
          }
        }
        if (item.resourceType === 10 || item.kind === "EthernetPortItem") {
          for (const connection of item.connections) {
            if (connection.value && networkNames.size > 0 && !networkNames.has(connection.value)) {
              ctx.report(
                R.network,
                connection.element,
                `Connection "${connection.value}" is not a Network declared in NetworkSection`,
              );
            } else if (connection.value && networkNames.size === 0 && envelope.networks.length === 0) {
              ctx.report(
                R.network,
                connection.element,
                `Connection "${connection.value}" but the descriptor has no NetworkSection`,
              );
            }
          }
        }
      }
    }
  }
  // Files referenced from vendor sections or ProductSection (e.g. vmw:ExtraConfig, EnvironmentFiles) count as used
  for (const element of envelope.element.descendants()) {
    for (const attribute of element.attributes) {
      if (/(^|:)fileRef$/.test(attribute.name)) usedFiles.add(attribute.value);
    }
  }
  for (const file of files) {
    if (file.size !== undefined && !isUnsignedLong(file.size)) {
      ctx.report(R.fileSize, file.element, `ovf:size "${file.size}" is not a byte count`, {
        attribute: "ovf:size",
      });
    }
    if (file.chunkSize !== undefined && !(parseInteger(file.chunkSize)! > 0)) {
      ctx.report(R.fileSize, file.element, `ovf:chunkSize "${file.chunkSize}" is not a positive byte count`, {
        attribute: "ovf:chunkSize",
      });
    }
    if (file.id !== undefined && !usedFiles.has(file.id)) {
      ctx.report(
        R.unusedFile,
        file.element,
        `File "${file.id}" (${file.href ?? "no href"}) is not used by any Disk or Item`,
      );
    }
    if (file.href === undefined) continue;
    const kind = classifyHref(file.href);
    if (kind === "outside") {
      ctx.report(R.hrefOutside, file.element, `ovf:href "${file.href}" points outside the package`, {
        attribute: "ovf:href",
      });
      continue;
    }
    if (kind === "remote") {
      ctx.report(R.hrefRemote, file.element, `ovf:href "${file.href}" is a URL`, { attribute: "ovf:href" });
      continue;
    }
    if (kind === "folder" && ctx.pkg?.kind === "ova") {
      ctx.report(R.hrefFolder, file.element, `ovf:href "${file.href}" names a sub-folder member`, {
        attribute: "ovf:href",
      });
    }
    await checkFilePresence(ctx, file);
  }
}

async function checkFilePresence(
  ctx: RuleContext,
  file: ReturnType<RuleContext["envelope"]["files"]["at"]> & object,
): Promise<void> {
  const pkg = ctx.pkg;
  if (!pkg || pkg.compressed || file.href === undefined) return;
  const href = file.href;
  const chunk = parseInteger(file.chunkSize);
  let actual: number | undefined;
  if (chunk) {
    // split file: name.000000000, name.000000001, ... (DSP0243 §5.3)
    actual = 0;
    for (let index = 0; ; index++) {
      const size = await pkg.sizeOf(`${href}.${String(index).padStart(9, "0")}`);
      if (size === undefined) break;
      actual += size;
      if (index === 0 && size === 0) break;
    }
    if (actual === 0) actual = undefined;
  } else {
    actual = await pkg.sizeOf(href);
  }
  if (actual === undefined) {
    // a gzip-compressed reference may be stored under its own name; nothing else to try
    // inside an .ova the package is complete by definition; beside a lone .ovf the disks may simply not be there yet
    ctx.report(
      R.fileMissing,
      file.element,
      `${href} is not in the package${pkg.kind === "ovf" ? " (not found beside the descriptor; its size was not checked)" : ""}`,
      {
        attribute: "ovf:href",
        ...(pkg.kind === "ovf" ? { severity: "warning" as const } : {}),
      },
    );
    return;
  }
  const declared = parseInteger(file.size);
  if (declared !== undefined && declared !== actual) {
    ctx.report(
      R.fileSizeMismatch,
      file.element,
      `ovf:size is ${declared} but ${href} is ${actual} bytes${declared > actual ? " (is it the disk capacity?)" : ""}`,
      { attribute: "ovf:size", fix: `set ovf:size="${actual}"` },
    );
  }
}

function checkItemIds(ctx: RuleContext, items: OvfItem[]): void {
  const seen = new Map<string, OvfItem>();
  for (const item of items) {
    const id = item.instanceId;
    if (id === undefined) continue;
    const previous = seen.get(id);
    // the same InstanceID may describe one device in several deployment configurations
    if (previous?.coexistsWith(item)) {
      // overlapping deployment configurations are ambiguous (which variant wins?) but not fatal to importers
      const configured = previous.configuration !== undefined && item.configuration !== undefined;
      ctx.report(
        R.duplicateId,
        item.fieldElement("InstanceID")!,
        `InstanceID "${id}" is used by two Items${configured ? ` whose configurations overlap ("${previous.configuration}", "${item.configuration}")` : " in this section"}`,
        configured ? { severity: "warning" } : {},
      );
    }
    seen.set(id, item);
  }
}
