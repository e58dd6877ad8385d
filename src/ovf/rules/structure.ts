import {
  compareFieldNames,
  EPASD_NS,
  KNOWN_SECTIONS,
  type OvfEnvelope,
  RASD_NS,
  SASD_NS,
  VSSD_NS,
} from "../model.js";
import type { XmlElement } from "../xml.js";
import { defineRules, type RuleContext } from "./types.js";

/**
 * Layer 2: what DSP0243 requires of the document's shape, tolerant of
 * well-formed vendor extensions (which the strict XSDs reject: that is
 * most of the 2/3 of real descriptors failing xmllint --schema).
 */
export const STRUCTURE_RULES = defineRules({
  root: {
    id: "OVF-STRUCT-001",
    layer: 2,
    severity: "error",
    title: "the root element is not an OVF Envelope in a known OVF namespace",
    fix: 'use <Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"> (DMTF OVF 1.x), the namespace every importer reads',
  },
  legacyDialect: {
    id: "OVF-STRUCT-002",
    layer: 2,
    severity: "info",
    title: "the descriptor uses a legacy or vendor dialect (VMware OVF 0.9, oVirt)",
    fix: "re-export as DMTF OVF 1.x for portability (ovftool, VirtualBox and vSphere all write 1.x)",
  },
  content: {
    id: "OVF-STRUCT-003",
    layer: 2,
    severity: "error",
    title: "the Envelope has no VirtualSystem or VirtualSystemCollection (or more than one)",
    fix: "an Envelope holds exactly one VirtualSystem or VirtualSystemCollection after its sections",
  },
  info: {
    id: "OVF-STRUCT-004",
    layer: 2,
    severity: "warning",
    title: "a section or VirtualSystem has no Info element (required by DSP0243)",
    fix: "add <Info>one line describing the section</Info> as the first child",
  },
  requiredUnknown: {
    id: "OVF-STRUCT-005",
    layer: 2,
    severity: "error",
    title:
      'a section unknown to OVF is marked ovf:required="true": importers that do not know it must refuse',
    fix: 'drop the section, or mark it ovf:required="false" if the appliance works without it',
  },
  unknownDefaultRequired: {
    id: "OVF-STRUCT-006",
    layer: 2,
    severity: "info",
    title: "a vendor section has no ovf:required attribute (it then defaults to required)",
    fix: 'add ovf:required="false" so importers that do not know the section may ignore it',
  },
  id: {
    id: "OVF-STRUCT-007",
    layer: 2,
    severity: "error",
    title: "a VirtualSystem, VirtualSystemCollection, File, Disk or Network lacks its required identifier",
    fix: "add the missing ovf:id / ovf:diskId / ovf:name attribute",
  },
  hardware: {
    id: "OVF-STRUCT-008",
    layer: 2,
    severity: "warning",
    title: "a VirtualSystem has no VirtualHardwareSection",
    fix: "describe the virtual hardware (CPU, memory, controllers, disks) in a VirtualHardwareSection",
  },
  itemFields: {
    id: "OVF-STRUCT-009",
    layer: 2,
    severity: "error",
    title: "an Item lacks InstanceID or ResourceType",
    fix: "every Item needs rasd:InstanceID (unique in the section) and rasd:ResourceType",
  },
  instanceIdSpelling: {
    id: "OVF-STRUCT-010",
    layer: 2,
    severity: "warning",
    title: "an Item or System uses the OVF 0.9 spelling InstanceId in an OVF 1.x/2.x descriptor",
    fix: "rename rasd:InstanceId / vssd:InstanceId to InstanceID",
  },
  fieldOrder: {
    id: "OVF-STRUCT-011",
    layer: 2,
    severity: "info",
    title: "RASD/VSSD fields are not in the schema's (alphabetical) order",
    fix: "sort the Item's rasd:* children alphabetically (ovfkit's writer does); strict XSD validation requires it",
  },
  elementName: {
    id: "OVF-STRUCT-012",
    layer: 2,
    severity: "warning",
    title: "an Item has no ElementName (required by the CIM RASD schema)",
    fix: "add <rasd:ElementName>a short device name</rasd:ElementName>",
  },
  fileAttributes: {
    id: "OVF-STRUCT-013",
    layer: 2,
    severity: "error",
    title: "a File has no ovf:href, or a Disk no ovf:capacity",
    fix: 'add the missing attribute (File: ovf:href="disk1.vmdk"; Disk: ovf:capacity in bytes or with units)',
  },
  unqualified: {
    id: "OVF-STRUCT-015",
    layer: 2,
    severity: "warning",
    title:
      "OVF elements are in no namespace (unprefixed, no default xmlns): only lenient importers read them",
    fix: 'declare xmlns="http://schemas.dmtf.org/ovf/envelope/1" on the Envelope (or prefix the elements with ovf:)',
  },
  duplicateSection: {
    id: "OVF-STRUCT-014",
    layer: 2,
    severity: "error",
    title: "a section that may appear once appears more than once",
    fix: "merge the duplicated sections into one",
  },
});

const SINGLE_TOP = ["References", "DiskSection", "NetworkSection", "DeploymentOptionSection"];

export function checkStructure(ctx: RuleContext): void {
  const envelope = ctx.envelope;
  const root = envelope.element;
  const R = STRUCTURE_RULES;
  if (root.localName !== "Envelope" || envelope.dialect === "unknown") {
    ctx.report(
      R.root,
      root,
      `root element <${root.name}> in namespace "${root.namespaceURI}" is not an OVF Envelope (known: OVF 0.9, DMTF 1.x, DMTF 2.x, oVirt)`,
    );
    return;
  }
  if (envelope.dialect === "vmware-0.9" || envelope.dialect === "ovirt") {
    ctx.report(R.legacyDialect, root, `descriptor dialect is ${envelope.dialect}`);
  }
  const unqualified = root.elements().find((e) => e.namespaceURI === "");
  if (unqualified && envelope.dialect !== "ovirt") {
    ctx.report(
      R.unqualified,
      unqualified,
      `<${unqualified.name}> and its siblings are in no namespace, not in ${envelope.ns}`,
    );
  }
  const contents = root.elements().filter((e) => {
    const kind = envelope.kindOf(e);
    return envelope.isOvfElement(e) && (kind === "VirtualSystem" || kind === "VirtualSystemCollection");
  });
  if (contents.length !== 1) {
    ctx.report(
      R.content,
      contents[1] ?? root,
      contents.length === 0
        ? "the Envelope has no VirtualSystem or VirtualSystemCollection"
        : `the Envelope has ${contents.length} top-level VirtualSystem/VirtualSystemCollection elements; DSP0243 allows one`,
    );
  }
  for (const kind of SINGLE_TOP) {
    const found = envelope.topSections(kind);
    if (found.length > 1) ctx.report(R.duplicateSection, found[1]!, `${kind} appears ${found.length} times`);
  }
  checkSections(ctx, root, true);
  for (const file of envelope.files) {
    if (file.id === undefined) ctx.report(R.id, file.element, "File has no ovf:id");
    if (file.href === undefined)
      ctx.report(R.fileAttributes, file.element, `File ${file.id ?? ""} has no ovf:href`);
  }
  for (const disk of envelope.disks) {
    if (disk.diskId === undefined) ctx.report(R.id, disk.element, "Disk has no ovf:diskId");
    if (disk.capacity === undefined && envelope.dialect !== "ovirt") {
      ctx.report(R.fileAttributes, disk.element, `Disk ${disk.diskId ?? ""} has no ovf:capacity`);
    }
  }
  for (const network of envelope.networks) {
    if (network.name === undefined) ctx.report(R.id, network.element, "Network has no ovf:name");
  }
  const visit = (system: XmlElement): void => {
    const kind = envelope.kindOf(system);
    if (envelope.ovfAttr(system, "id") === undefined) ctx.report(R.id, system, `${kind} has no ovf:id`);
    checkInfo(ctx, system, kind);
    checkSections(ctx, system, false);
    const nested = system.elements().filter((e) => {
      const k = envelope.kindOf(e);
      return envelope.isOvfElement(e) && (k === "VirtualSystem" || k === "VirtualSystemCollection");
    });
    if (kind === "VirtualSystem") {
      const hardware = system.elements().filter((e) => envelope.kindOf(e) === "VirtualHardwareSection");
      if (hardware.length === 0) {
        ctx.report(
          R.hardware,
          system,
          `VirtualSystem ${envelope.ovfAttr(system, "id") ?? ""} has no VirtualHardwareSection`,
        );
      }
      for (const section of hardware) checkHardware(ctx, section);
    }
    nested.forEach(visit);
  };
  contents.forEach(visit);
}

function checkInfo(ctx: RuleContext, element: XmlElement, kind: string): void {
  if (ctx.envelope.dialect === "ovirt") return; // oVirt's own format has no Info elements by design
  if (!element.elements().some((e) => e.localName === "Info")) {
    ctx.report(STRUCTURE_RULES.info, element, `${kind} has no Info element`);
  }
}

function checkSections(ctx: RuleContext, container: XmlElement, top: boolean): void {
  const envelope = ctx.envelope;
  for (const section of envelope.sectionsOf(container)) {
    const isOvf = envelope.isOvfElement(section.element);
    if (isOvf && section.known) {
      if (
        section.kind !== "References" &&
        section.kind !== "Strings" &&
        !(top && section.kind === "References")
      ) {
        checkInfo(ctx, section.element, section.kind);
      }
      continue;
    }
    if (isOvf && !section.kind.endsWith("Section")) continue; // Info, Name, Description...
    if (
      isOvf &&
      !(KNOWN_SECTIONS as readonly string[]).includes(section.kind) &&
      envelope.dialect === "ovirt"
    ) {
      continue; // oVirt's unprefixed sections are its dialect
    }
    const requiredAttr = envelope.ovfAttr(section.element, "required");
    if (requiredAttr === "true") {
      ctx.report(
        STRUCTURE_RULES.requiredUnknown,
        section.element,
        `<${section.element.name}> is not an OVF section and is marked ovf:required="true"`,
        { attribute: "ovf:required" },
      );
    } else if (requiredAttr === undefined && section.kind.endsWith("Section")) {
      ctx.report(
        STRUCTURE_RULES.unknownDefaultRequired,
        section.element,
        `vendor section <${section.element.name}> has no ovf:required="false"`,
      );
    }
  }
}

function checkHardware(ctx: RuleContext, section: XmlElement): void {
  const envelope = ctx.envelope;
  const modern = envelope.dialect === "dmtf-1" || envelope.dialect === "dmtf-2";
  checkInfo(ctx, section, "VirtualHardwareSection");
  const system = section.elements().find((e) => e.localName === "System");
  if (system) checkFieldOrder(ctx, system, VSSD_NS, modern);
  for (const item of section.elements()) {
    if (!["Item", "EthernetPortItem", "StorageItem"].includes(item.localName) || !envelope.isOvfElement(item))
      continue;
    const fields = item.elements().map((e) => e.localName);
    const hasId = fields.includes("InstanceID") || fields.includes("InstanceId");
    if (!hasId || !fields.includes("ResourceType")) {
      const missing = [
        hasId ? "" : "InstanceID",
        fields.includes("ResourceType") ? "" : "ResourceType",
      ].filter(Boolean);
      ctx.report(STRUCTURE_RULES.itemFields, item, `Item has no ${missing.join(" or ")}`);
    }
    if (!fields.includes("ElementName") && modern) {
      ctx.report(STRUCTURE_RULES.elementName, item, "Item has no ElementName");
    }
    const ns =
      item.localName === "EthernetPortItem" ? EPASD_NS : item.localName === "StorageItem" ? SASD_NS : RASD_NS;
    checkFieldOrder(ctx, item, ns, modern);
  }
}

function checkFieldOrder(ctx: RuleContext, element: XmlElement, ns: string, modern: boolean): void {
  const fields = element.elements();
  const spelled = fields.find((e) => e.localName === "InstanceId");
  if (spelled && modern) {
    ctx.report(
      STRUCTURE_RULES.instanceIdSpelling,
      spelled,
      `<${spelled.name}> is the OVF 0.9 spelling of InstanceID`,
    );
  }
  // CIM fields only (vendor children such as vmw:Config sit after them in the schema's xs:any)
  // one class's fields (RASD, or VSSD): other classes' elements (e.g. 2.x pasd:) have their own sequence
  const cim = fields.filter((e) => e.namespaceURI === ns);
  for (let i = 1; i < cim.length; i++) {
    const previous = cim[i - 1]!;
    const current = cim[i]!;
    if (compareFieldNames(previous.localName, current.localName) > 0) {
      ctx.report(
        STRUCTURE_RULES.fieldOrder,
        current,
        `<${current.name}> comes after <${previous.name}>; the schema orders fields alphabetically (code-point order)`,
      );
      return;
    }
  }
}

export type { OvfEnvelope };
