import { OvfkitError } from "../errors.js";
import { type XmlDocument, XmlElement, type XmlPosition, XSI_NS } from "./xml.js";

/**
 * The typed OVF model: a view over the ordered XML tree. Every getter reads
 * the tree, every setter writes the one element or attribute it is about,
 * so serialising after an edit changes only that (lossless round-trip).
 */

export const OVF_NS = {
  /** VMware's pre-DMTF OVF 0.9 (ESX 3.5 era). */
  vmware09: "http://www.vmware.com/schema/ovf/1/envelope",
  /** DMTF DSP0243 1.x. */
  dmtf1: "http://schemas.dmtf.org/ovf/envelope/1",
  /** oVirt/RHV: the 1.x namespace with a trailing slash. */
  ovirt: "http://schemas.dmtf.org/ovf/envelope/1/",
  /** DMTF DSP0243 2.x. */
  dmtf2: "http://schemas.dmtf.org/ovf/envelope/2",
} as const;

const CIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
export const RASD_NS = `${CIM}CIM_ResourceAllocationSettingData`;
export const VSSD_NS = `${CIM}CIM_VirtualSystemSettingData`;
export const EPASD_NS = `${CIM}CIM_EthernetPortAllocationSettingData`;
export const SASD_NS = `${CIM}CIM_StorageAllocationSettingData`;
export const VMW_NS = "http://www.vmware.com/schema/ovf";

export type OvfDialect = "vmware-0.9" | "dmtf-1" | "dmtf-2" | "ovirt" | "unknown";

export function dialectOf(namespace: string): OvfDialect {
  switch (namespace) {
    case OVF_NS.vmware09:
      return "vmware-0.9";
    case OVF_NS.dmtf1:
      return "dmtf-1";
    case OVF_NS.dmtf2:
      return "dmtf-2";
    case OVF_NS.ovirt:
      return "ovirt";
    default:
      return "unknown";
  }
}

/** A located model node: every model object can say where it came from. */
export interface Located {
  readonly element: XmlElement;
}

export function locationOf(node: Located | XmlElement): { position: XmlPosition; xpath: string } {
  const element = node instanceof XmlElement ? node : node.element;
  return { position: element.position, xpath: element.xpath };
}

/** Section kinds the standard defines (the local name of the element, or of its 0.9 `xsi:type` minus `_Type`). */
export const KNOWN_SECTIONS = [
  "References",
  "DiskSection",
  "NetworkSection",
  "DeploymentOptionSection",
  "VirtualSystem",
  "VirtualSystemCollection",
  "VirtualHardwareSection",
  "OperatingSystemSection",
  "ProductSection",
  "EulaSection",
  "AnnotationSection",
  "StartupSection",
  "ResourceAllocationSection",
  "InstallSection",
  "EnvironmentFilesSection",
  "BootDeviceSection",
  "SharedDiskSection",
  "ScaleOutSection",
  "PlacementGroupSection",
  "PlacementSection",
  "EncryptionSection",
  "Strings",
] as const;

/** Plain-data summary of one RASD/EPASD/SASD field set. */
export type ItemKind = "Item" | "EthernetPortItem" | "StorageItem";

/** CIM ResourceType values used in OVF (DSP1041/DSP0243 Annex). */
export const RESOURCE_TYPES: Record<number, string> = {
  1: "Other",
  2: "Computer System",
  3: "Processor",
  4: "Memory",
  5: "IDE Controller",
  6: "Parallel SCSI HBA",
  7: "FC HBA",
  8: "iSCSI HBA",
  9: "IB HCA",
  10: "Ethernet Adapter",
  11: "Other Network Adapter",
  12: "I/O Slot",
  13: "I/O Device",
  14: "Floppy Drive",
  15: "CD Drive",
  16: "DVD drive",
  17: "Disk Drive",
  18: "Tape Drive",
  19: "Storage Extent",
  20: "Other storage device",
  21: "Serial port",
  22: "Parallel port",
  23: "USB Controller",
  24: "Graphics controller",
  25: "IEEE 1394 Controller",
  26: "Partitionable Unit",
  27: "Base Partitionable Unit",
  28: "Power",
  29: "Cooling Capacity",
  30: "Ethernet Switch Port",
  31: "Logical Disk",
  32: "Storage Volume",
  33: "Ethernet Connection",
  34: "Virtual Frame Buffer",
  35: "Sound Card",
  36: "Keyboard",
  37: "Pointing Device",
  38: "Graphics output",
  39: "Storage Extent Controller",
  40: "Virtual Storage Controller",
};

export const RESOURCE_TYPE = {
  processor: 3,
  memory: 4,
  ideController: 5,
  scsiController: 6,
  ethernet: 10,
  otherNetwork: 11,
  floppy: 14,
  cdDrive: 15,
  dvdDrive: 16,
  disk: 17,
  usb: 23,
  sound: 35,
  storageController: 20,
  sataController: 20,
} as const;

/** One `<Item>` (RASD), `<EthernetPortItem>` (EPASD) or `<StorageItem>` (SASD). */
export class OvfItem implements Located {
  constructor(
    readonly element: XmlElement,
    readonly kind: ItemKind,
  ) {}

  /** The settings namespace this item's fields live in. */
  get fieldNamespace(): string {
    return this.kind === "EthernetPortItem" ? EPASD_NS : this.kind === "StorageItem" ? SASD_NS : RASD_NS;
  }

  /** The child element of a field (`InstanceID`; 0.9's `InstanceId` spelling is accepted). */
  fieldElement(name: string): XmlElement | undefined {
    const found = this.element.elements().find((e) => e.localName === name);
    if (found || name !== "InstanceID") return found;
    return this.element.elements().find((e) => e.localName === "InstanceId");
  }

  field(name: string): string | undefined {
    const element = this.fieldElement(name);
    return element ? element.text.trim() : undefined;
  }

  /** All values of a repeatable field (HostResource, Connection). */
  fields(name: string): { value: string; element: XmlElement }[] {
    return this.element
      .elements()
      .filter((e) => e.localName === name)
      .map((element) => ({ value: element.text.trim(), element }));
  }

  get instanceId(): string | undefined {
    return this.field("InstanceID");
  }
  get resourceType(): number | undefined {
    const raw = this.field("ResourceType");
    return raw === undefined || !/^\d+$/.test(raw) ? undefined : Number(raw);
  }
  get resourceSubType(): string | undefined {
    return this.field("ResourceSubType");
  }
  get parent(): string | undefined {
    return this.field("Parent");
  }
  get addressOnParent(): string | undefined {
    return this.field("AddressOnParent");
  }
  get elementName(): string | undefined {
    return this.field("ElementName") ?? this.field("Caption");
  }
  get hostResources(): { value: string; element: XmlElement }[] {
    return this.fields("HostResource");
  }
  get connections(): { value: string; element: XmlElement }[] {
    return this.fields("Connection");
  }
  get virtualQuantity(): string | undefined {
    return this.field("VirtualQuantity");
  }
  get allocationUnits(): string | undefined {
    return this.field("AllocationUnits");
  }
  /** `ovf:required="false"` items are optional for the importer. */
  get required(): boolean {
    const value = this.element.attributes.find(
      (a) => a.name.endsWith(":required") || a.name === "required",
    )?.value;
    return value !== "false";
  }
  /** `ovf:configuration` (space-separated deployment option ids) or undefined when the item is in all. */
  get configuration(): string | undefined {
    return this.element.attributes.find(
      (a) => a.name === "configuration" || a.name.endsWith(":configuration"),
    )?.value;
  }

  /** True when both items can be present in one deployment configuration. */
  coexistsWith(other: OvfItem): boolean {
    const mine = this.configuration?.trim().split(/\s+/);
    const theirs = other.configuration?.trim().split(/\s+/);
    if (!mine || !theirs) return !mine && !theirs; // an unconditional item and a per-configuration variant are alternatives
    return mine.some((c) => theirs.includes(c));
  }

  /**
   * Sets a field; a new field element is inserted where the schema's
   * alphabetical order puts it (RASD/EPASD/SASD sequences are alphabetical).
   */
  setField(name: string, value: string): XmlElement {
    const existing = this.fieldElement(name);
    if (existing) {
      existing.setText(value);
      return existing;
    }
    const prefix = this.element.lookupPrefix(this.fieldNamespace);
    const qname = prefix ? `${prefix}:${name}` : name;
    const created = new XmlElement(
      qname,
      prefix === undefined ? [{ name: "xmlns", value: this.fieldNamespace }] : [],
    );
    created.position = this.element.position;
    created.setText(value);
    insertSorted(this.element, created);
    return created;
  }

  removeField(name: string): boolean {
    const existing = this.fieldElement(name);
    return existing ? this.element.remove(existing) : false;
  }
}

/**
 * The CIM RASD/VSSD/EPASD/SASD schemas list their fields in code-point
 * order (`VSITypeID` before `VirtualQuantity`, `SoID` before `SourceMAC...`),
 * which is the order xs:sequence then requires.
 */
export function compareFieldNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Inserts `child` among element children in schema (code-point) order of local name, copying the siblings' indentation. */
export function insertSorted(parent: XmlElement, child: XmlElement): void {
  const siblings = parent.elements();
  const next = siblings.find(
    (e) => compareFieldNames(e.localName, child.localName) > 0 && isSettingsField(e),
  );
  const indent = indentationOf(parent);
  if (next) {
    const index = parent.children.indexOf(next);
    parent.insertAt(index, child);
    parent.insertAt(index + 1, { type: "text", value: indent.child });
  } else {
    appendIndented(parent, child);
  }
}

function isSettingsField(e: XmlElement): boolean {
  return e.namespaceURI.startsWith(CIM);
}

/** Indentation used for this element's children and its closing tag, guessed from the existing text. */
export function indentationOf(parent: XmlElement): { child: string; close: string } {
  const texts = parent.children.filter((c) => c.type === "text").map((c) => c.value);
  const childIndent = texts.find((t) => /^\s*\n[ \t]*$/.test(t) && t !== texts[texts.length - 1]) ?? texts[0];
  const close = texts.length > 0 && /^\s*$/.test(texts[texts.length - 1]!) ? texts[texts.length - 1]! : "\n";
  return { child: childIndent && /^\s*$/.test(childIndent) ? childIndent : `${close}  `, close };
}

/** Appends an element before the closing tag's indentation so the output keeps its layout. */
export function appendIndented(parent: XmlElement, child: XmlElement): void {
  const { child: indent } = indentationOf(parent);
  const last = parent.children[parent.children.length - 1];
  if (last?.type === "text" && /^\s*$/.test(last.value)) {
    const index = parent.children.length - 1;
    parent.insertAt(index, { type: "text", value: indent });
    parent.insertAt(index + 1, child);
  } else {
    parent.append(child);
  }
}

export interface OvfFile extends Located {
  id: string | undefined;
  href: string | undefined;
  /** Declared size in bytes (as written; may be absent or invalid). */
  size: string | undefined;
  compression: string | undefined;
  chunkSize: string | undefined;
}

export interface OvfDisk extends Located {
  diskId: string | undefined;
  fileRef: string | undefined;
  capacity: string | undefined;
  capacityAllocationUnits: string | undefined;
  populatedSize: string | undefined;
  format: string | undefined;
  parentRef: string | undefined;
}

export interface OvfNetwork extends Located {
  name: string | undefined;
  description: string | undefined;
}

export interface OvfProperty extends Located {
  key: string | undefined;
  type: string | undefined;
  value: string | undefined;
  userConfigurable: boolean;
  required: boolean;
}

/** A generic section view (the element and its kind). */
export interface OvfSection extends Located {
  /** `DiskSection`, `ProductSection`, ... or the vendor element's local name. */
  kind: string;
  namespace: string;
  /** True for standard sections; false for vendor extensions kept opaque. */
  known: boolean;
  /** `ovf:required` (default true for unknown sections per DSP0243 §9). */
  required: boolean;
  info: string | undefined;
}

export class OvfVirtualHardware implements Located {
  constructor(
    readonly element: XmlElement,
    private readonly envelope: OvfEnvelope,
  ) {}

  get system(): XmlElement | undefined {
    return this.element.elements().find((e) => e.localName === "System");
  }

  /** `vmx-13 vmx-14` → ["vmx-13", "vmx-14"]. */
  get systemTypes(): { value: string; element: XmlElement }[] {
    const element = this.system?.elements().find((e) => e.localName === "VirtualSystemType");
    if (!element) return [];
    return element.text
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((value) => ({ value, element }));
  }

  get items(): OvfItem[] {
    return this.element
      .elements()
      .filter(
        (e) => e.localName === "Item" || e.localName === "EthernetPortItem" || e.localName === "StorageItem",
      )
      .filter((e) => this.envelope.isOvfElement(e))
      .map((e) => new OvfItem(e, e.localName as ItemKind));
  }

  /** Adds an `<Item>` with these RASD fields (written in schema order) and returns it. */
  addItem(fields: Record<string, string>, kind: ItemKind = "Item"): OvfItem {
    const envelopePrefix = this.element.prefix;
    const element = new XmlElement(envelopePrefix ? `${envelopePrefix}:${kind}` : kind);
    element.position = this.element.position;
    const lastItem = this.items.at(-1)?.element;
    if (lastItem) {
      const index = this.element.children.indexOf(lastItem);
      const { child } = indentationOf(this.element);
      this.element.insertAt(index + 1, { type: "text", value: child });
      this.element.insertAt(index + 2, element);
    } else {
      appendIndented(this.element, element);
    }
    const item = new OvfItem(element, kind);
    for (const name of Object.keys(fields).sort(compareFieldNames)) {
      item.setField(name, fields[name]!);
    }
    const { close } = indentationOf(this.element);
    element.append({ type: "text", value: close });
    return item;
  }

  removeItem(item: OvfItem): boolean {
    return this.element.remove(item.element);
  }
}

export class OvfVirtualSystem implements Located {
  constructor(
    readonly element: XmlElement,
    private readonly envelope: OvfEnvelope,
  ) {}

  get id(): string | undefined {
    return this.envelope.ovfAttr(this.element, "id");
  }

  get isCollection(): boolean {
    return this.envelope.kindOf(this.element) === "VirtualSystemCollection";
  }

  get sections(): OvfSection[] {
    return this.envelope.sectionsOf(this.element);
  }

  /** Nested systems of a VirtualSystemCollection. */
  get children(): OvfVirtualSystem[] {
    return this.element
      .elements()
      .filter((e) => {
        const kind = this.envelope.kindOf(e);
        return kind === "VirtualSystem" || kind === "VirtualSystemCollection";
      })
      .map((e) => new OvfVirtualSystem(e, this.envelope));
  }

  get hardware(): OvfVirtualHardware[] {
    return this.sectionElements("VirtualHardwareSection").map(
      (e) => new OvfVirtualHardware(e, this.envelope),
    );
  }

  get operatingSystem(): XmlElement | undefined {
    return this.sectionElements("OperatingSystemSection")[0];
  }

  get products(): XmlElement[] {
    return this.sectionElements("ProductSection");
  }

  get properties(): OvfProperty[] {
    const out: OvfProperty[] = [];
    for (const product of this.products) {
      for (const e of product.descendants()) {
        if (e.localName !== "Property" || !this.envelope.isOvfElement(e)) continue;
        out.push({
          element: e,
          key: this.envelope.ovfAttr(e, "key"),
          type: this.envelope.ovfAttr(e, "type"),
          value: this.envelope.ovfAttr(e, "value"),
          userConfigurable: this.envelope.ovfAttr(e, "userConfigurable") === "true",
          required: this.envelope.ovfAttr(e, "required") !== "false",
        });
      }
    }
    return out;
  }

  get eulas(): XmlElement[] {
    return this.sectionElements("EulaSection");
  }
  get annotation(): XmlElement | undefined {
    return this.sectionElements("AnnotationSection")[0];
  }
  get startup(): XmlElement | undefined {
    return this.sectionElements("StartupSection")[0];
  }

  sectionElements(kind: string): XmlElement[] {
    return this.element.elements().filter((e) => this.envelope.kindOf(e) === kind);
  }
}

/** The whole descriptor. Build one with `parseOvf` (parse.ts). */
export class OvfEnvelope implements Located {
  readonly dialect: OvfDialect;
  /** The envelope namespace (the root's). */
  readonly ns: string;

  constructor(
    readonly document: XmlDocument,
    readonly file: string | undefined,
  ) {
    this.ns = document.root.namespaceURI;
    this.dialect = dialectOf(this.ns);
  }

  get element(): XmlElement {
    return this.document.root;
  }

  /** `ovf:version` as written, or the version implied by the namespace. */
  get version(): string | undefined {
    return this.ovfAttr(this.element, "version") ?? (this.dialect === "dmtf-2" ? "2.0" : undefined);
  }

  /**
   * OVF elements are in the envelope namespace. oVirt, and 2008-era
   * VirtualCenter exports, write them unprefixed with no default namespace
   * (so in no namespace): importers read them, so the model does too and
   * the structure layer warns (OVF-STRUCT-015).
   */
  isOvfElement(e: XmlElement): boolean {
    const ns = e.namespaceURI;
    return ns === this.ns || ns === "";
  }

  /** An `ovf:`-namespaced attribute (oVirt also uses them), falling back to the unprefixed name. */
  ovfAttr(e: XmlElement, local: string): string | undefined {
    return e.attrNS(this.ns, local) ?? e.attr(local);
  }

  setOvfAttr(e: XmlElement, local: string, value: string): void {
    const existing = e.attributeNodeNS(this.ns, local);
    if (existing) {
      existing.value = value;
      return;
    }
    const prefix = e.lookupPrefix(this.ns);
    e.setAttr(prefix ? `${prefix}:${local}` : local, value);
  }

  /**
   * The section kind of an element: its local name for OVF elements
   * (0.9's `<Section xsi:type="ovf:DiskSection_Type">` and
   * `<Content xsi:type="ovf:VirtualSystem_Type">` map to the 1.x names).
   */
  kindOf(e: XmlElement): string {
    const local = e.localName;
    if ((local === "Section" || local === "Content") && this.isOvfElement(e)) {
      const type = e.attrNS(XSI_NS, "type");
      if (type) return type.slice(type.indexOf(":") + 1).replace(/_Type$/, "");
    }
    return local;
  }

  get references(): XmlElement | undefined {
    return this.element.elements().find((e) => this.isOvfElement(e) && e.localName === "References");
  }

  get files(): OvfFile[] {
    const refs = this.references;
    if (!refs) return [];
    return refs
      .elements()
      .filter((e) => e.localName === "File")
      .map((element) => ({
        element,
        id: this.ovfAttr(element, "id"),
        href: this.ovfAttr(element, "href"),
        size: this.ovfAttr(element, "size"),
        compression: this.ovfAttr(element, "compression"),
        chunkSize: this.ovfAttr(element, "chunkSize"),
      }));
  }

  get diskSection(): XmlElement | undefined {
    return this.topSections("DiskSection")[0];
  }

  get disks(): OvfDisk[] {
    return this.topSections("DiskSection").flatMap((section) =>
      section
        .elements()
        .filter((e) => e.localName === "Disk")
        .map((element) => ({
          element,
          diskId: this.ovfAttr(element, "diskId"),
          fileRef: this.ovfAttr(element, "fileRef"),
          capacity: this.ovfAttr(element, "capacity"),
          capacityAllocationUnits: this.ovfAttr(element, "capacityAllocationUnits"),
          populatedSize: this.ovfAttr(element, "populatedSize"),
          format: this.ovfAttr(element, "format"),
          parentRef: this.ovfAttr(element, "parentRef"),
        })),
    );
  }

  get networks(): OvfNetwork[] {
    return this.topSections("NetworkSection").flatMap((section) =>
      section
        .elements()
        .filter((e) => e.localName === "Network")
        .map((element) => ({
          element,
          name: this.ovfAttr(element, "name"),
          description: element.elements().find((d) => d.localName === "Description")?.text,
        })),
    );
  }

  get deploymentOptions(): { id: string | undefined; isDefault: boolean; element: XmlElement }[] {
    return this.topSections("DeploymentOptionSection").flatMap((section) =>
      section
        .elements()
        .filter((e) => e.localName === "Configuration")
        .map((element) => ({
          element,
          id: this.ovfAttr(element, "id"),
          isDefault: this.ovfAttr(element, "default") === "true",
        })),
    );
  }

  /** The top-level VirtualSystem or VirtualSystemCollection (the Content). */
  get content(): OvfVirtualSystem | undefined {
    const e = this.element.elements().find((c) => {
      const kind = this.kindOf(c);
      return this.isOvfElement(c) && (kind === "VirtualSystem" || kind === "VirtualSystemCollection");
    });
    return e ? new OvfVirtualSystem(e, this) : undefined;
  }

  /** Every VirtualSystem (not collections), depth-first. */
  get virtualSystems(): OvfVirtualSystem[] {
    const out: OvfVirtualSystem[] = [];
    const visit = (system: OvfVirtualSystem): void => {
      if (system.isCollection) system.children.forEach(visit);
      else out.push(system);
    };
    const content = this.content;
    if (content) visit(content);
    return out;
  }

  /** Every item of every hardware section. */
  get items(): { system: OvfVirtualSystem; hardware: OvfVirtualHardware; item: OvfItem }[] {
    return this.virtualSystems.flatMap((system) =>
      system.hardware.flatMap((hardware) => hardware.items.map((item) => ({ system, hardware, item }))),
    );
  }

  /** Top-level sections of one kind (DiskSection, NetworkSection, ...). */
  topSections(kind: string): XmlElement[] {
    return this.element.elements().filter((e) => this.kindOf(e) === kind && this.isOvfElement(e));
  }

  /** Sections (standard and vendor) directly inside a container, in document order. */
  sectionsOf(container: XmlElement): OvfSection[] {
    return container
      .elements()
      .filter((e) => this.kindOf(e).endsWith("Section") || !this.isOvfElement(e))
      .map((element) => {
        const kind = this.kindOf(element);
        const known = this.isOvfElement(element) && (KNOWN_SECTIONS as readonly string[]).includes(kind);
        const requiredAttr = this.ovfAttr(element, "required");
        return {
          element,
          kind,
          namespace: element.namespaceURI,
          known,
          required: requiredAttr === undefined ? true : requiredAttr !== "false",
          info: element.elements().find((i) => i.localName === "Info")?.text,
        };
      });
  }

  /** Sets a Disk's capacity (and optionally its allocation units); only those attributes change. */
  setDiskCapacity(diskId: string, capacity: string, units?: string): void {
    const disk = this.disks.find((d) => d.diskId === diskId);
    if (!disk)
      throw new OvfkitError("OVF_NO_SUCH_DISK", `no Disk with ovf:diskId="${diskId}"`, { file: this.file });
    this.setOvfAttr(disk.element, "capacity", capacity);
    if (units !== undefined) this.setOvfAttr(disk.element, "capacityAllocationUnits", units);
  }

  /** Sets a File's size attribute (what packing does after writing the file). */
  setFileSize(fileId: string, size: number): void {
    const file = this.files.find((f) => f.id === fileId);
    if (!file)
      throw new OvfkitError("OVF_NO_SUCH_FILE", `no File with ovf:id="${fileId}"`, { file: this.file });
    this.setOvfAttr(file.element, "size", String(size));
  }
}
