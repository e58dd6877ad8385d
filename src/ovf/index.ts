/** Public OVF API: model, parse/serialize, validation, reports. */
export * from "./model.js";
export * from "./parse.js";
export * from "./serialize.js";
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
