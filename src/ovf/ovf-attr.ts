import type { OvfEnvelope } from "./model.js";
import type { XmlElement } from "./xml.js";

/**
 * Sets an `ovf:` attribute so that it really is in the OVF namespace.
 *
 * Local helper (the model's `setOvfAttr` writes an UNPREFIXED attribute
 * when the document's default namespace is the OVF one, as in
 * `<Envelope xmlns="…/envelope/1" xmlns:ovf="…/envelope/1">`; unprefixed
 * attributes are in no namespace per Namespaces in XML §6.3, so strict
 * readers would not see them). Prefers a non-empty prefix bound to the
 * envelope namespace, declaring `xmlns:ovf` on the root when none is.
 */
export function setOvfAttribute(
  envelope: OvfEnvelope,
  element: XmlElement,
  local: string,
  value: string,
): void {
  const existing = element.attributeNodeNS(envelope.ns, local);
  if (existing) {
    existing.value = value;
    return;
  }
  if (envelope.dialect === "ovirt") {
    // oVirt writes its OVF attributes with the ovf: prefix bound to ".../envelope/1/".
    element.setAttr(`ovf:${local}`, value);
    return;
  }
  element.setAttr(`${ovfPrefix(envelope, element)}:${local}`, value);
}

/** A non-empty prefix bound to the envelope namespace in scope at `element` (declares `ovf` when needed). */
export function ovfPrefix(envelope: OvfEnvelope, element: XmlElement): string {
  for (let node: XmlElement | null = element; node; node = node.parent) {
    for (const a of node.attributes) {
      if (a.value === envelope.ns && a.name.startsWith("xmlns:")) return a.name.slice(6);
    }
  }
  envelope.element.setAttr("xmlns:ovf", envelope.ns);
  return "ovf";
}
