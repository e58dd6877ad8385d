import { type OvfItem, RESOURCE_TYPES } from "../model.js";
import { parseInteger, parseUnits } from "../units.js";
import { defineRules, type RuleContext } from "./types.js";

/** Layer 4: the hardware described makes sense. */
export const SEMANTIC_RULES = defineRules({
  resourceType: {
    id: "OVF-SEM-001",
    layer: 4,
    severity: "error",
    title: "an Item's ResourceType is not a CIM resource type number",
    fix: "use the DSP1041 value (3 CPU, 4 memory, 5 IDE, 6 SCSI, 10 NIC, 15 CD, 17 disk, 20 SATA, ...)",
  },
  duplicateAddress: {
    id: "OVF-SEM-002",
    layer: 4,
    severity: "error",
    title: "two devices share one AddressOnParent on the same controller",
    fix: "give each device on a controller its own rasd:AddressOnParent (vCenter rejects duplicates, COT#17)",
  },
  controllerAddress: {
    id: "OVF-SEM-003",
    layer: 4,
    severity: "error",
    title:
      "a device's AddressOnParent is out of range for its controller (IDE 0-1, SCSI 0-15 but 7, SATA 0-29)",
    fix: "use a unit number the controller has (an IDE channel takes two devices: add a second IDE controller)",
  },
  orphanDevice: {
    id: "OVF-SEM-004",
    layer: 4,
    severity: "warning",
    title: "a disk or CD/DVD drive Item has no Parent controller",
    fix: "set rasd:Parent to the InstanceID of an IDE/SCSI/SATA controller Item",
  },
  bootDisks: {
    id: "OVF-SEM-005",
    layer: 4,
    severity: "warning",
    title: "more than one disk is marked as the boot disk, or boot order values repeat",
    fix: "mark exactly one disk bootable (oVirt ovf:boot, BootOrder)",
  },
  memory: {
    id: "OVF-SEM-006",
    layer: 4,
    severity: "error",
    title: "a memory Item's VirtualQuantity or AllocationUnits is not a byte amount",
    fix: "write memory as <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits> and an integer VirtualQuantity",
  },
  cpu: {
    id: "OVF-SEM-007",
    layer: 4,
    severity: "error",
    title: "a processor Item's VirtualQuantity is not a positive integer",
    fix: "write the number of virtual CPUs as <rasd:VirtualQuantity>2</rasd:VirtualQuantity>",
  },
  missingBasics: {
    id: "OVF-SEM-008",
    layer: 4,
    severity: "warning",
    title: "a VirtualHardwareSection has no processor or no memory Item",
    fix: "add a ResourceType 3 (CPU) and a ResourceType 4 (memory) Item",
  },
  zeroCapacity: {
    id: "OVF-SEM-009",
    layer: 4,
    severity: "error",
    title: "a Disk has zero capacity, or its populatedSize exceeds its capacity",
    fix: "set ovf:capacity to the disk's virtual size",
  },
  parentNotController: {
    id: "OVF-SEM-010",
    layer: 4,
    severity: "warning",
    title: "a device's Parent is not a controller Item",
    fix: "attach disks and drives to an IDE (5), SCSI (6), SATA/other storage (20) or virtual storage controller (40) Item",
  },
  memorySize: {
    id: "OVF-SEM-011",
    layer: 4,
    severity: "warning",
    title: "memory is implausibly small (< 4 MiB) or large (> 24 TiB): probably wrong units",
    fix: "check AllocationUnits: 'byte * 2^20' means VirtualQuantity is in MiB",
  },
});

const S = SEMANTIC_RULES;
const CONTROLLER_TYPES = new Set([5, 6, 7, 8, 20, 39, 40]);
const STORAGE_DEVICES = new Set([14, 15, 16, 17]);
const SATA_SUBTYPES = /^(ahci|vmware\.sata\.ahci|AHCI)$/i;

/** Units on one controller type: how many addresses it has and which are reserved. */
function addressRange(controller: OvfItem): { max: number; reserved?: number } | undefined {
  switch (controller.resourceType) {
    case 5:
      return { max: 1 }; // an IDE channel: master 0, slave 1
    case 6:
      return { max: 15, reserved: 7 }; // parallel SCSI: unit 7 is the HBA itself
    case 20:
      return SATA_SUBTYPES.test(controller.resourceSubType ?? "") ? { max: 29 } : undefined;
    default:
      return undefined;
  }
}

export function checkSemantics(ctx: RuleContext): void {
  const envelope = ctx.envelope;
  for (const disk of envelope.disks) {
    const capacity = parseInteger(disk.capacity);
    if (capacity === 0)
      ctx.report(S.zeroCapacity, disk.element, `Disk ${disk.diskId ?? ""} has capacity 0`, {
        attribute: "ovf:capacity",
      });
  }
  const bootDisks = envelope.disks.filter((d) => envelope.ovfAttr(d.element, "boot") === "true");
  if (bootDisks.length > 1) {
    ctx.report(S.bootDisks, bootDisks[1]!.element, `${bootDisks.length} disks are marked ovf:boot="true"`, {
      attribute: "ovf:boot",
    });
  }
  for (const system of envelope.virtualSystems) {
    for (const hardware of system.hardware) {
      const items = hardware.items;
      const byId = new Map(items.map((i) => [i.instanceId ?? "", i]));
      let hasCpu = false;
      let hasMemory = false;
      const addresses = new Map<string, Map<string, OvfItem>>();
      const bootOrders = new Map<string, OvfItem>();
      for (const item of items) {
        const typeText = item.field("ResourceType");
        const type = item.resourceType;
        // oVirt writes ResourceType 0 for its own devices (balloon, RNG, watchdog): part of its dialect
        const ovirtOther = envelope.dialect === "ovirt" && type === 0;
        if (
          typeText !== undefined &&
          !ovirtOther &&
          (type === undefined || type < 1 || (type > 40 && type < 32768) || type > 65535)
        ) {
          ctx.report(
            S.resourceType,
            item.fieldElement("ResourceType")!,
            `ResourceType "${typeText}" is not a CIM resource type`,
          );
        }
        if (type === 3) {
          hasCpu = true;
          const count = parseInteger(item.virtualQuantity);
          if (item.virtualQuantity !== undefined && !(count! > 0)) {
            ctx.report(
              S.cpu,
              item.fieldElement("VirtualQuantity")!,
              `processor count "${item.virtualQuantity}" is not a positive integer`,
            );
          }
        }
        if (type === 4) {
          hasMemory = true;
          checkMemory(ctx, item);
        }
        const bootOrder = item.field("BootOrder");
        if (bootOrder !== undefined && bootOrder !== "0" && bootOrder !== "") {
          if (bootOrders.get(bootOrder)?.coexistsWith(item)) {
            ctx.report(S.bootDisks, item.fieldElement("BootOrder")!, `boot order ${bootOrder} is used twice`);
          }
          bootOrders.set(bootOrder, item);
        }
        if (type === undefined || !STORAGE_DEVICES.has(type)) {
          if (type !== undefined && type !== 10 && item.parent === undefined) continue;
        }
        const parentId = item.parent;
        if (
          type !== undefined &&
          STORAGE_DEVICES.has(type) &&
          type !== 14 &&
          (parentId === undefined || parentId === "")
        ) {
          ctx.report(
            S.orphanDevice,
            item.element,
            `${RESOURCE_TYPES[type]} "${item.elementName ?? item.instanceId}" has no Parent controller`,
          );
          continue;
        }
        if (parentId === undefined || parentId === "") continue;
        const controller = byId.get(parentId);
        if (!controller) continue; // OVF-REF-004 reports it
        if (
          type !== undefined &&
          STORAGE_DEVICES.has(type) &&
          controller.resourceType !== undefined &&
          !CONTROLLER_TYPES.has(controller.resourceType)
        ) {
          ctx.report(
            S.parentNotController,
            item.fieldElement("Parent")!,
            `Parent "${parentId}" is a ${RESOURCE_TYPES[controller.resourceType] ?? `type ${controller.resourceType}`}, not a controller`,
          );
        }
        const address = item.addressOnParent;
        if (address === undefined || address === "") continue;
        const key = `${parentId}`;
        const used = addresses.get(key) ?? new Map<string, OvfItem>();
        addresses.set(key, used);
        const previous = used.get(address);
        if (previous?.coexistsWith(item)) {
          ctx.report(
            S.duplicateAddress,
            item.fieldElement("AddressOnParent")!,
            `AddressOnParent ${address} on controller ${parentId} is also used by "${previous.elementName ?? previous.instanceId}"`,
          );
        }
        used.set(address, item);
        const range = addressRange(controller);
        const unit = parseInteger(address);
        if (range && (unit === undefined || unit > range.max || unit === range.reserved)) {
          ctx.report(
            S.controllerAddress,
            item.fieldElement("AddressOnParent")!,
            `AddressOnParent ${address} does not exist on ${RESOURCE_TYPES[controller.resourceType!]} ${parentId} (units 0-${range.max}${range.reserved !== undefined ? `, not ${range.reserved}` : ""})`,
          );
        }
      }
      if (items.length > 0 && (!hasCpu || !hasMemory)) {
        ctx.report(
          S.missingBasics,
          hardware.element,
          `VirtualHardwareSection has no ${!hasCpu ? "processor" : ""}${!hasCpu && !hasMemory ? " and no " : ""}${!hasMemory ? "memory" : ""} Item`,
        );
      }
    }
  }
}

function checkMemory(ctx: RuleContext, item: OvfItem): void {
  const quantity = parseInteger(item.virtualQuantity);
  const unitsText = item.allocationUnits ?? item.field("VirtualQuantityUnits");
  const units = unitsText === undefined ? { base: "byte", factor: 1 } : parseUnits(unitsText);
  if (item.virtualQuantity !== undefined && quantity === undefined) {
    ctx.report(
      S.memory,
      item.fieldElement("VirtualQuantity")!,
      `memory quantity "${item.virtualQuantity}" is not an integer`,
    );
    return;
  }
  if (units?.base !== "byte") {
    const at = item.fieldElement("AllocationUnits") ?? item.element;
    ctx.report(S.memory, at, `memory units "${unitsText}" are not a byte unit`);
    return;
  }
  if (quantity === undefined) return;
  const bytes = quantity * units.factor;
  if (bytes < 4 * 2 ** 20 || bytes > 24 * 2 ** 40) {
    ctx.report(
      S.memorySize,
      item.fieldElement("VirtualQuantity")!,
      `memory is ${bytes} bytes (${quantity} × ${unitsText ?? "byte"})`,
    );
  }
}
