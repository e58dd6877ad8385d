import { isOvfkitError } from "../../errors.js";
import type { OvfEnvelope } from "../model.js";
import { decodeDescriptor, parseOvf } from "../parse.js";
import type { XmlLimits } from "../xml.js";
import { defineRules, type Finding, type RuleDefinition } from "./types.js";

/** Layer 1: is it XML we can safely read at all? */
export const WELLFORMED_RULES = defineRules({
  malformed: {
    id: "OVF-XML-001",
    layer: 1,
    severity: "error",
    title: "the descriptor is not well-formed XML",
    fix: "fix the XML syntax at the reported position (unclosed tag, bad character, stray '&')",
  },
  dtd: {
    id: "OVF-XML-002",
    layer: 1,
    severity: "error",
    title: "DOCTYPE/DTD declarations are refused (entity expansion, external entities)",
    fix: "remove the <!DOCTYPE ...> declaration; OVF descriptors never need one",
  },
  encoding: {
    id: "OVF-XML-003",
    layer: 1,
    severity: "warning",
    title: "the XML declaration names an encoding the bytes are not in",
    fix: 'make encoding= say what the bytes are (encoding="UTF-8"); libxml2-based tools refuse the file',
  },
  limits: {
    id: "OVF-XML-004",
    layer: 1,
    severity: "error",
    title: "the descriptor exceeds the size or nesting limits",
    fix: "descriptors are small: remove embedded payloads or runaway nesting",
  },
  namespace: {
    id: "OVF-XML-005",
    layer: 1,
    severity: "error",
    title: "an element or attribute uses an undeclared namespace prefix, or a namespace URI is not a URI",
    fix: 'declare the prefix with xmlns:PREFIX="..." on the root element',
  },
  undefinedEntity: {
    id: "OVF-XML-006",
    layer: 1,
    severity: "error",
    title: "an entity other than the five XML entities is used",
    fix: "write the character itself or a character reference (&#160;) instead of a named entity",
  },
});

const CODE_TO_RULE: Record<string, RuleDefinition> = {
  OVF_XML_DTD_FORBIDDEN: WELLFORMED_RULES.dtd,
  OVF_XML_TOO_LARGE: WELLFORMED_RULES.limits,
  OVF_XML_TOO_DEEP: WELLFORMED_RULES.limits,
  OVF_XML_UNDEFINED_ENTITY: WELLFORMED_RULES.undefinedEntity,
};

export interface WellFormedResult {
  envelope: OvfEnvelope | undefined;
  findings: Finding[];
}

/** Decodes and parses; every problem becomes a finding (never a throw). */
export function checkWellFormed(
  bytes: Uint8Array,
  file: string,
  limits?: Partial<XmlLimits>,
): WellFormedResult {
  const findings: Finding[] = [];
  const add = (rule: RuleDefinition, message: string, line: number, column: number, xpath = ""): void => {
    findings.push({
      ruleId: rule.id,
      severity: rule.severity,
      message,
      fix: rule.fix,
      file,
      line,
      column,
      xpath,
      layer: 1,
    });
  };
  let envelope: OvfEnvelope | undefined;
  try {
    const decoded = decodeDescriptor(bytes, file);
    const declared = decoded.declaredEncoding?.toLowerCase().replace(/[-_]/g, "");
    const actual = decoded.encoding.replace(/-/g, "");
    if (declared && declared !== actual && !(declared === "utf16" && actual.startsWith("utf16"))) {
      if (!(declared === "usascii" || declared === "ascii") || /[^\x00-\x7f]/.test(decoded.text)) {
        add(
          WELLFORMED_RULES.encoding,
          `declared encoding "${decoded.declaredEncoding}" but the content is ${decoded.encoding.toUpperCase()}`,
          1,
          decoded.text.indexOf("encoding") + 1,
        );
      }
    }
    envelope = parseOvf(decoded.text, { file, limits });
  } catch (error) {
    if (!isOvfkitError(error)) throw error;
    const rule = CODE_TO_RULE[error.code] ?? WELLFORMED_RULES.malformed;
    add(rule, error.message, error.line ?? 1, error.column ?? 1);
    return { envelope: undefined, findings };
  }
  for (const element of envelope.element.descendants()) {
    if (element.prefix && element.lookupNamespace(element.prefix) === undefined) {
      add(
        WELLFORMED_RULES.namespace,
        `prefix "${element.prefix}" of <${element.name}> is not declared`,
        element.position.line,
        element.position.column,
        element.xpath,
      );
    }
    for (const attribute of element.attributes) {
      if ((attribute.name === "xmlns" || attribute.name.startsWith("xmlns:")) && /\s/.test(attribute.value)) {
        // libxml2: "namespace error : xmlns:epasd: '...cim2608 schema/...' is not a valid URI"
        add(
          WELLFORMED_RULES.namespace,
          `${attribute.name}="${attribute.value}" is not a valid namespace URI (it contains white space)`,
          element.position.line,
          element.position.column,
          `${element.xpath}/@${attribute.name}`,
        );
        continue;
      }
      const colon = attribute.name.indexOf(":");
      if (colon < 0 || attribute.name.startsWith("xmlns:")) continue;
      const prefix = attribute.name.slice(0, colon);
      if (element.lookupNamespace(prefix) === undefined) {
        add(
          WELLFORMED_RULES.namespace,
          `prefix "${prefix}" of attribute ${attribute.name} is not declared`,
          element.position.line,
          element.position.column,
          `${element.xpath}/@${attribute.name}`,
        );
      }
    }
  }
  return { envelope, findings };
}
