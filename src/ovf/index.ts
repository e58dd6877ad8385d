/** Public OVF API: model, parse/serialize, validation, reports. */
export * from "./model.js";
export { folderPackage, ovaPackage, type PackageView, packagesIn } from "./package-view.js";
export * from "./parse.js";
export { type InspectedDisk, inspectDisk, parseVmdkDescriptor } from "./profiles/disk-inspect.js";
export {
  PROFILE_NAMES,
  resolveProfile,
  TARGET_RULES,
  type TargetProfile,
  VSPHERE_VERSIONS,
} from "./profiles/index.js";
export {
  formatJson,
  formatJunit,
  formatSarif,
  formatText,
  JSON_REPORT_VERSION,
  type JsonReport,
  SARIF_SCHEMA_URI,
} from "./reports/index.js";
export { classifyHref, parseHostResource, REFERENCE_RULES } from "./rules/references.js";
export { SEMANTIC_RULES } from "./rules/semantics.js";
export { STRUCTURE_RULES } from "./rules/structure.js";
export type { Finding, RuleDefinition, RuleLayer, Severity as FindingSeverity } from "./rules/types.js";
export { WELLFORMED_RULES } from "./rules/wellformed.js";
export { XSD_RULES } from "./rules/xsd.js";
export * from "./serialize.js";
export { capacityBytes, parseUnits } from "./units.js";
export {
  ALL_RULES,
  expandInputs,
  type FileResult,
  hasFailures,
  PACKAGE_RULES,
  type ValidateOptions,
  type ValidationReport,
  validateDescriptor,
  validateOvf,
} from "./validate.js";
export {
  checkXmlSyntax,
  DEFAULT_XML_LIMITS,
  escapeAttribute,
  escapeText,
  infoset,
  LineIndex,
  parseXml,
  serializeXml,
  type XmlAttribute,
  type XmlCData,
  type XmlComment,
  type XmlDocument,
  XmlElement,
  type XmlLimits,
  type XmlNode,
  type XmlPosition,
  type XmlProcessingInstruction,
  type XmlText,
  XSI_NS,
} from "./xml.js";
