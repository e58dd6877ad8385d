import { XMLParser, XMLValidator } from "fast-xml-parser";
import { OvfkitError } from "../errors.js";

/**
 * Safe, position-keeping XML for OVF descriptors.
 *
 * fast-xml-parser (preserveOrder) builds the ordered tree; this module turns
 * it into a small DOM whose every element knows its source offset,
 * line:column and XPath. Safety is enforced BEFORE the parser runs:
 * - a DOCTYPE (and with it every DTD, internal entity and external entity)
 *   is refused: OVF never needs one, and refusing it makes entity expansion
 *   bounded by construction (billion laughs cannot even start);
 * - only the five predefined entities and character references are decoded
 *   (by us, not by the parser: processEntities is off);
 * - input size and element depth are limited.
 */

export interface XmlPosition {
  /** 0-based character offset of the `<` that starts the node. */
  offset: number;
  /** 1-based line. */
  line: number;
  /** 1-based column (in characters). */
  column: number;
}

export interface XmlAttribute {
  /** Qualified name as written (`ovf:id`, `xmlns:rasd`). */
  name: string;
  /** Decoded value. */
  value: string;
}

export type XmlNode = XmlElement | XmlText | XmlComment | XmlCData | XmlProcessingInstruction;

export interface XmlText {
  type: "text";
  value: string;
  /**
   * The text as written in the source (entity references intact). The
   * writer reuses it only while it still decodes to `value`, so an edit of
   * `value` is never lost.
   */
  raw?: string;
}
export interface XmlComment {
  type: "comment";
  value: string;
}
export interface XmlCData {
  type: "cdata";
  value: string;
}
export interface XmlProcessingInstruction {
  type: "pi";
  target: string;
  attributes: XmlAttribute[];
}

export const XML_NS = "http://www.w3.org/XML/1998/namespace";
export const XMLNS_NS = "http://www.w3.org/2000/xmlns/";
export const XSI_NS = "http://www.w3.org/2001/XMLSchema-instance";

/** An element of the ordered tree. Mutations keep sibling order; nothing else moves. */
export class XmlElement {
  readonly type = "element" as const;
  parent: XmlElement | null = null;
  /** Where the start tag was in the source; synthetic elements (added by an edit) copy their parent's. */
  position: XmlPosition;
  /** `<a/>` in the source: kept so an unedited document serialises the same way. */
  selfClosing: boolean;

  constructor(
    public name: string,
    public attributes: XmlAttribute[] = [],
    public children: XmlNode[] = [],
    position: XmlPosition = { offset: 0, line: 0, column: 0 },
    selfClosing = false,
  ) {
    this.position = position;
    this.selfClosing = selfClosing;
    for (const child of children) if (child.type === "element") child.parent = this;
  }

  get prefix(): string {
    const colon = this.name.indexOf(":");
    return colon < 0 ? "" : this.name.slice(0, colon);
  }

  get localName(): string {
    const colon = this.name.indexOf(":");
    return colon < 0 ? this.name : this.name.slice(colon + 1);
  }

  /** The namespace URI of the element ("" when in no namespace). */
  get namespaceURI(): string {
    return this.lookupNamespace(this.prefix) ?? "";
  }

  /** Resolves a prefix ("" = default namespace) through the in-scope declarations. */
  lookupNamespace(prefix: string): string | undefined {
    if (prefix === "xml") return XML_NS;
    if (prefix === "xmlns") return XMLNS_NS;
    const declaration = prefix === "" ? "xmlns" : `xmlns:${prefix}`;
    for (let node: XmlElement | null = this; node; node = node.parent) {
      const found = node.attributes.find((a) => a.name === declaration);
      if (found) return found.value;
    }
    return prefix === "" ? "" : undefined;
  }

  /** A prefix bound to `uri` in scope here (the first found walking up), or undefined. */
  lookupPrefix(uri: string): string | undefined {
    for (let node: XmlElement | null = this; node; node = node.parent) {
      for (const a of node.attributes) {
        if (a.value !== uri) continue;
        if (a.name === "xmlns") return "";
        if (a.name.startsWith("xmlns:")) return a.name.slice(6);
      }
    }
    return undefined;
  }

  /** Namespace URI of an attribute name (unprefixed attributes are in no namespace). */
  attributeNamespace(name: string): string {
    const colon = name.indexOf(":");
    if (colon < 0) return "";
    return this.lookupNamespace(name.slice(0, colon)) ?? "";
  }

  /** Value of the attribute with this qualified name. */
  attr(name: string): string | undefined {
    return this.attributes.find((a) => a.name === name)?.value;
  }

  /** Value of the attribute `{ns}local` whatever prefix the document used. */
  attrNS(ns: string, local: string): string | undefined {
    return this.attributeNodeNS(ns, local)?.value;
  }

  attributeNodeNS(ns: string, local: string): XmlAttribute | undefined {
    for (const a of this.attributes) {
      const colon = a.name.indexOf(":");
      const aLocal = colon < 0 ? a.name : a.name.slice(colon + 1);
      if (aLocal !== local || a.name.startsWith("xmlns")) continue;
      if (this.attributeNamespace(a.name) === ns) return a;
    }
    return undefined;
  }

  /** Sets (or adds at the end) an attribute; other attributes keep their order. */
  setAttr(name: string, value: string): void {
    const found = this.attributes.find((a) => a.name === name);
    if (found) found.value = value;
    else this.attributes.push({ name, value });
  }

  removeAttr(name: string): boolean {
    const index = this.attributes.findIndex((a) => a.name === name);
    if (index < 0) return false;
    this.attributes.splice(index, 1);
    return true;
  }

  elements(): XmlElement[] {
    return this.children.filter((c): c is XmlElement => c.type === "element");
  }

  /** Child elements with this local name in one of `namespaces` (any namespace when omitted). */
  elementsNamed(local: string, namespaces?: readonly string[]): XmlElement[] {
    return this.elements().filter(
      (e) => e.localName === local && (!namespaces || namespaces.includes(e.namespaceURI)),
    );
  }

  firstNamed(local: string, namespaces?: readonly string[]): XmlElement | undefined {
    return this.elementsNamed(local, namespaces)[0];
  }

  /** Concatenated text and CDATA content of this element (not of descendants). */
  get text(): string {
    let out = "";
    for (const c of this.children) if (c.type === "text" || c.type === "cdata") out += c.value;
    return out;
  }

  /** Replaces the whole content by one text node. */
  setText(value: string): void {
    this.children = [{ type: "text", value }];
    this.selfClosing = false;
  }

  append(child: XmlNode): void {
    this.insertAt(this.children.length, child);
  }

  insertAt(index: number, child: XmlNode): void {
    if (child.type === "element") child.parent = this;
    this.children.splice(index, 0, child);
    this.selfClosing = false;
  }

  /** Removes a child; also removes the indentation text right before it so the output stays tidy. */
  remove(child: XmlNode): boolean {
    const index = this.children.indexOf(child);
    if (index < 0) return false;
    const before = this.children[index - 1];
    const removeIndent = before?.type === "text" && /^\s*$/.test(before.value) && index > 0;
    this.children.splice(removeIndent ? index - 1 : index, removeIndent ? 2 : 1);
    if (child.type === "element") child.parent = null;
    return true;
  }

  /** `/ovf:Envelope[1]/ovf:VirtualSystem[2]`: names as written, 1-based index among same-named siblings. */
  get xpath(): string {
    const steps: string[] = [];
    for (let node: XmlElement | null = this; node; node = node.parent) {
      const parent: XmlElement | null = node.parent;
      const siblings = parent ? parent.elements().filter((e) => e.name === node!.name) : [node];
      steps.push(`${node.name}[${siblings.indexOf(node) + 1}]`);
    }
    return `/${steps.reverse().join("/")}`;
  }

  /** Depth-first, document order, including this element (an array: recursive generators are slow). */
  descendants(): XmlElement[] {
    const out: XmlElement[] = [];
    const stack: XmlElement[] = [this];
    while (stack.length > 0) {
      const element = stack.pop()!;
      out.push(element);
      for (let i = element.children.length - 1; i >= 0; i--) {
        const child = element.children[i]!;
        if (child.type === "element") stack.push(child);
      }
    }
    return out;
  }
}

export interface XmlDocument {
  /** Attributes of the `<?xml ...?>` declaration, or null when absent. */
  declaration: XmlAttribute[] | null;
  /** Top-level nodes in order: comments, whitespace, the root element, PIs. */
  children: XmlNode[];
  root: XmlElement;
  /** The decoded source text positions refer to. */
  source: string;
  /** Offset → line:column over `source`. */
  lines: LineIndex;
  /** The source used CR LF line ends (read as LF, written back as CR LF). */
  crlf?: boolean;
}

export interface XmlLimits {
  /** Largest descriptor accepted, in characters (default 32 Mi). */
  maxChars: number;
  /** Deepest element nesting accepted (default 64; real OVF is < 10). */
  maxDepth: number;
  /** Most elements accepted (default 1 000 000). */
  maxElements: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = {
  maxChars: 32 * 1024 * 1024,
  maxDepth: 64,
  maxElements: 1_000_000,
};

/** Maps offsets to 1-based line:column with a binary search over line starts. */
export class LineIndex {
  private readonly starts: number[] = [0];
  constructor(source: string) {
    for (let i = source.indexOf("\n"); i >= 0; i = source.indexOf("\n", i + 1)) this.starts.push(i + 1);
  }
  position(offset: number): XmlPosition {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { offset, line: lo + 1, column: offset - this.starts[lo]! + 1 };
  }
}

const PREDEFINED_ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
const REFERENCE = /&(#x[0-9a-fA-F]+|#[0-9]+|[A-Za-z_][\w.-]*);/g;

/** Decodes the predefined entities and character references; anything else is an error (no DTD = no other entities). */
export function decodeEntities(raw: string, where: () => XmlPosition, file?: string): string {
  if (!raw.includes("&")) return raw;
  return raw.replace(REFERENCE, (_, ref: string) => {
    if (ref.startsWith("#")) {
      const code = ref[1] === "x" ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code > 0x10ffff || code === 0) {
        const at = where();
        throw new OvfkitError("OVF_XML_MALFORMED", `invalid character reference &${ref};`, { file, ...at });
      }
      return String.fromCodePoint(code);
    }
    const value = PREDEFINED_ENTITIES[ref];
    if (value === undefined) {
      const at = where();
      throw new OvfkitError(
        "OVF_XML_UNDEFINED_ENTITY",
        `undefined entity &${ref}; (only the five XML entities are allowed: DTDs are refused)`,
        { file, line: at.line, column: at.column },
      );
    }
    return value;
  });
}

export function escapeText(value: string): string {
  // \r is written as a reference: a literal one would be normalised away by the next reader
  return value.replace(/[&<>\r]/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : "&#13;",
  );
}

export function escapeAttribute(value: string): string {
  return value.replace(/[&<"\t\n\r]/g, (c) => {
    switch (c) {
      case "&":
        return "&amp;";
      case "<":
        return "&lt;";
      case '"':
        return "&quot;";
      case "\t":
        return "&#9;";
      case "\n":
        return "&#10;";
      default:
        return "&#13;";
    }
  });
}

/** Finds a DOCTYPE outside comments, CDATA and PIs; returns its offset or -1. */
function findDoctype(source: string): number {
  let from = 0;
  for (;;) {
    const at = source.indexOf("<!", from);
    if (at < 0) return -1;
    if (source.startsWith("<!--", at)) {
      const end = source.indexOf("-->", at + 4);
      if (end < 0) return -1;
      from = end + 3;
    } else if (source.startsWith("<![CDATA[", at)) {
      const end = source.indexOf("]]>", at + 9);
      if (end < 0) return -1;
      from = end + 3;
    } else if (/^<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)/i.test(source.slice(at, at + 10))) {
      return at;
    } else {
      from = at + 2;
    }
  }
}

/** Offset of the first start tag nested deeper than `maxDepth` (a light scan of well-formed text). */
function firstTooDeep(source: string, maxDepth: number): number {
  let depth = 0;
  for (let at = source.indexOf("<"); at >= 0; at = source.indexOf("<", at + 1)) {
    const next = source[at + 1];
    if (source.startsWith("<!--", at)) at = source.indexOf("-->", at);
    else if (source.startsWith("<![CDATA[", at)) at = source.indexOf("]]>", at);
    else if (next === "?" || next === "!") at = source.indexOf(">", at);
    else if (next === "/") depth -= 1;
    else {
      const end = source.indexOf(">", at);
      if (source[end - 1] !== "/") depth += 1;
      if (depth > maxDepth) return at;
    }
    if (at < 0) break;
  }
  return 0;
}

type FxpNode = Record<string, unknown> & { ":@"?: Record<string, string> };

const METADATA = XMLParser.getMetaDataSymbol() as unknown as symbol;

const PARSER_OPTIONS = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  commentPropName: "#comment",
  cdataPropName: "#cdata",
  textNodeName: "#text",
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: false,
  ignorePiTags: false,
  removeNSPrefix: false,
  captureMetaData: true,
} as const;

const parsers = new Map<number, XMLParser>();
/** One parser per depth limit: building the options object per document shows in profiles. */
function parserFor(maxNestedTags: number): XMLParser {
  let parser = parsers.get(maxNestedTags);
  if (!parser) {
    parser = new XMLParser({ ...PARSER_OPTIONS, maxNestedTags });
    parsers.set(maxNestedTags, parser);
  }
  return parser;
}

/** A well-formedness problem found by the validator pass: what layer 1 reports. */
export interface XmlSyntaxProblem {
  code: string;
  message: string;
  line: number;
  column: number;
}

/**
 * Checks well-formedness (fast-xml-parser's validator) and the safety rules.
 * Returns null when the text is acceptable, else the first problem.
 */
export function checkXmlSyntax(
  source: string,
  limits: XmlLimits = DEFAULT_XML_LIMITS,
): XmlSyntaxProblem | null {
  const lines = new LineIndex(source);
  if (source.length > limits.maxChars) {
    return {
      code: "OVF_XML_TOO_LARGE",
      message: `descriptor is ${source.length} characters, over the ${limits.maxChars} limit`,
      line: 1,
      column: 1,
    };
  }
  const doctype = findDoctype(source);
  if (doctype >= 0) {
    const at = lines.position(doctype);
    return {
      code: "OVF_XML_DTD_FORBIDDEN",
      message:
        "DOCTYPE/DTD declarations are refused (no entity or external DTD processing in OVF descriptors)",
      line: at.line,
      column: at.column,
    };
  }
  const verdict = XMLValidator.validate(source, { allowBooleanAttributes: false });
  if (verdict !== true) {
    return {
      code: "OVF_XML_MALFORMED",
      message: verdict.err.msg,
      line: verdict.err.line,
      column: verdict.err.col,
    };
  }
  return null;
}

/**
 * Parses XML text into the ordered, positioned tree. Throws OvfkitError
 * (OVF_XML_MALFORMED, OVF_XML_DTD_FORBIDDEN, OVF_XML_UNDEFINED_ENTITY,
 * OVF_XML_TOO_LARGE, OVF_XML_TOO_DEEP, OVF_XML_NO_ROOT) with line:column.
 */
export function parseXml(
  source: string,
  options: { file?: string; limits?: Partial<XmlLimits> } = {},
): XmlDocument {
  const limits = { ...DEFAULT_XML_LIMITS, ...options.limits };
  const file = options.file;
  // XML 1.0 §2.11: every CRLF / lone CR is read as LF (line numbers are unchanged)
  const crlf = source.includes("\r\n");
  if (source.includes("\r")) source = source.replace(/\r\n?/g, "\n");
  const problem = checkXmlSyntax(source, limits);
  if (problem) {
    throw new OvfkitError(problem.code, problem.message, {
      file,
      line: problem.line,
      column: problem.column,
    });
  }
  let tree: FxpNode[];
  try {
    // fast-xml-parser's own limit sits above ours so that ours, which knows the element's position, fires first
    tree = parserFor(limits.maxDepth + 2).parse(source) as FxpNode[];
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/nest/i.test(message)) {
      const at = new LineIndex(source).position(firstTooDeep(source, limits.maxDepth));
      throw new OvfkitError("OVF_XML_TOO_DEEP", `elements nested deeper than ${limits.maxDepth}`, {
        file,
        ...at,
        cause: error,
      });
    }
    throw new OvfkitError("OVF_XML_MALFORMED", message, { file, line: 1, column: 1, cause: error });
  }
  const lines = new LineIndex(source);
  let elementCount = 0;
  let declaration: XmlAttribute[] | null = null;

  const decodeAttributes = (raw: Record<string, string> | undefined, at: XmlPosition): XmlAttribute[] =>
    Object.entries(raw ?? {}).map(([name, value]) => ({
      name,
      // XML 1.0 §3.3.3: literal tabs and newlines in attribute values read as spaces; &#10; stays a newline
      value: decodeEntities(String(value).replace(/[\t\n]/g, " "), () => at, file),
    }));

  const convert = (nodes: FxpNode[], depth: number, parentOffset = 0): XmlNode[] => {
    const out: XmlNode[] = [];
    /** Where `&ref;` sits: the first occurrence after the enclosing element's start tag. */
    const entityAt = (raw: string) => (): XmlPosition => {
      const ref = /&[^;]*;/.exec(raw)?.[0] ?? "&";
      const at = source.indexOf(ref, parentOffset);
      return lines.position(at < 0 ? parentOffset : at);
    };
    for (const node of nodes) {
      const key = Object.keys(node).find((k) => k !== ":@")!;
      const content = node[key];
      const meta = (node as Record<symbol, { startIndex?: number; endIndex?: number } | undefined>)[METADATA];
      const start = meta?.startIndex ?? 0;
      if (key === "#text") {
        const raw = String(content);
        out.push({ type: "text", value: decodeEntities(raw, entityAt(raw), file), raw });
      } else if (key === "#comment") {
        out.push({ type: "comment", value: textOf(content) });
      } else if (key === "#cdata") {
        out.push({ type: "cdata", value: textOf(content) });
      } else if (key === "?xml") {
        declaration = Object.entries(node[":@"] ?? {}).map(([name, value]) => ({
          name,
          value: String(value),
        }));
      } else if (key.startsWith("?")) {
        const at = lines.position(start);
        out.push({ type: "pi", target: key.slice(1), attributes: decodeAttributes(node[":@"], at) });
      } else {
        elementCount += 1;
        if (elementCount > limits.maxElements) {
          throw new OvfkitError("OVF_XML_TOO_LARGE", `more than ${limits.maxElements} elements`, {
            file,
            ...lines.position(start),
          });
        }
        if (depth > limits.maxDepth) {
          throw new OvfkitError("OVF_XML_TOO_DEEP", `elements nested deeper than ${limits.maxDepth}`, {
            file,
            ...lines.position(start),
          });
        }
        const at = lines.position(start);
        const end = meta?.endIndex ?? start;
        const selfClosing =
          source.charCodeAt(end - 2) === 0x2f /* / */ && source.charCodeAt(end - 1) === 0x3e;
        const children = convert((content as FxpNode[]) ?? [], depth + 1, start);
        out.push(new XmlElement(key, decodeAttributes(node[":@"], at), children, at, selfClosing));
      }
    }
    return out;
  };

  const root = convert(tree, 1).find((c): c is XmlElement => c.type === "element");
  if (!root) throw new OvfkitError("OVF_XML_NO_ROOT", "no root element", { file, line: 1, column: 1 });
  // fast-xml-parser drops some whitespace between top-level nodes; the prolog and epilog are
  // re-read from the source so an unedited document serialises byte for byte
  const rootNode = tree.find((n) =>
    Object.keys(n).some((k) => k !== ":@" && !k.startsWith("#") && !k.startsWith("?")),
  );
  const rootMeta = rootNode && (rootNode as Record<symbol, { endIndex?: number } | undefined>)[METADATA];
  const epilogStart = rootMeta?.endIndex ?? source.length;
  const children: XmlNode[] = [
    ...topLevelNodes(source.slice(0, root.position.offset), lines, 0, file),
    root,
    ...topLevelNodes(source.slice(epilogStart), lines, epilogStart, file),
  ];
  return { declaration, children, root, source, lines, crlf };
}

const TOP_LEVEL = /<\?xml\s[\s\S]*?\?>|<!--([\s\S]*?)-->|<\?([^\s?]+)([\s\S]*?)\?>|(\s+)/y;
const PI_PSEUDO_ATTRIBUTE = /([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

/** Comments, PIs and whitespace before or after the root element (the XML declaration is kept apart). */
function topLevelNodes(text: string, lines: LineIndex, base: number, file?: string): XmlNode[] {
  const out: XmlNode[] = [];
  TOP_LEVEL.lastIndex = 0;
  while (TOP_LEVEL.lastIndex < text.length) {
    const at = TOP_LEVEL.lastIndex;
    const match = TOP_LEVEL.exec(text);
    if (!match) {
      throw new OvfkitError("OVF_XML_MALFORMED", "unexpected content outside the root element", {
        file,
        ...lines.position(base + at),
      });
    }
    if (match[1] !== undefined) out.push({ type: "comment", value: match[1] });
    else if (match[2] !== undefined) {
      const attributes = [...match[3]!.matchAll(PI_PSEUDO_ATTRIBUTE)].map((m) => ({
        name: m[1]!,
        value: m[2] ?? m[3] ?? "",
      }));
      out.push({ type: "pi", target: match[2], attributes });
    } else if (match[4] !== undefined) out.push({ type: "text", value: match[4] });
  }
  return out;
}

function textOf(content: unknown): string {
  if (!Array.isArray(content)) return "";
  return content.map((c: Record<string, unknown>) => String(c["#text"] ?? "")).join("");
}

/**
 * Where an attribute is written in the source (its name's first character),
 * for findings about one attribute; the element's position when the
 * attribute was added by an edit or cannot be found.
 */
export function attributePosition(doc: XmlDocument, element: XmlElement, name: string): XmlPosition {
  const start = element.position.offset;
  if (!doc.source.startsWith(`<${element.name}`, start)) return element.position;
  const pattern = new RegExp(`\\s(${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})\\s*=`, "y");
  let quote = "";
  for (let i = start + element.name.length + 1; i < doc.source.length; i++) {
    const c = doc.source[i]!;
    if (quote) {
      if (c === quote) quote = "";
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === ">") break;
    else {
      pattern.lastIndex = i;
      if (pattern.test(doc.source)) return doc.lines.position(i + 1);
    }
  }
  return element.position;
}

/**
 * Serialises a tree back to text: what was parsed comes back with the same
 * infoset, and, where nothing changed, with the same bytes. Every reuse of
 * source text is checked against the current tree when writing (a start
 * tag is copied only while its attributes still read back as the element's
 * attributes; a text only while it still decodes to the node's value), so
 * an edit made by any means shows up and the rest keeps its spelling
 * (quotes, `&quot;`, spaces before `/>`, line breaks between attributes).
 */
export function serializeXml(
  doc: Pick<XmlDocument, "declaration" | "children"> & Partial<XmlDocument>,
): string {
  const source = doc.source ?? "";
  const parts: string[] = [];
  if (doc.declaration) {
    const raw = /^<\?xml\s[^>]*\?>/.exec(source)?.[0];
    const same = raw !== undefined && sameAttributes(pseudoAttributes(raw), doc.declaration);
    parts.push(
      same
        ? raw
        : `<?xml${doc.declaration.map((a) => ` ${a.name}="${escapeAttribute(a.value)}"`).join("")}?>`,
    );
  }
  for (const node of doc.children) writeNode(node, parts, source);
  const text = parts.join("");
  return doc.crlf ? text.replace(/\r?\n/g, "\r\n") : text;
}

function writeNode(node: XmlNode, parts: string[], source: string): void {
  switch (node.type) {
    case "text":
      parts.push(
        node.raw !== undefined && rawTextMatches(node.raw, node.value) ? node.raw : escapeText(node.value),
      );
      return;
    case "comment":
      parts.push(`<!--${node.value}-->`);
      return;
    case "cdata":
      parts.push(`<![CDATA[${node.value}]]>`);
      return;
    case "pi":
      parts.push(
        `<?${node.target}${node.attributes.map((a) => ` ${a.name}="${escapeAttribute(a.value)}"`).join("")}?>`,
      );
      return;
    case "element": {
      const raw = rawStartTag(node, source);
      if (raw && (!raw.endsWith("/>") || node.children.length === 0)) {
        parts.push(raw);
        if (raw.endsWith("/>")) return;
      } else {
        parts.push(`<${node.name}`);
        for (const a of node.attributes) parts.push(` ${a.name}="${escapeAttribute(a.value)}"`);
        if (node.children.length === 0 && node.selfClosing) {
          parts.push("/>");
          return;
        }
        parts.push(">");
      }
      for (const child of node.children) writeNode(child, parts, source);
      parts.push(`</${node.name}>`);
      return;
    }
  }
}

function rawTextMatches(raw: string, value: string): boolean {
  if (raw === value) return !/[&<]/.test(raw) && !raw.includes("]]>");
  try {
    return decodeEntities(raw, () => ({ offset: 0, line: 0, column: 0 })) === value;
  } catch {
    return false;
  }
}

const RAW_ATTRIBUTE = /\s([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

/** Attributes as a start tag or declaration spells them, decoded the way the parser decodes them. */
function pseudoAttributes(tag: string): XmlAttribute[] {
  const out: XmlAttribute[] = [];
  for (const m of tag.matchAll(RAW_ATTRIBUTE)) {
    const value = (m[2] ?? m[3] ?? "").replace(/[\t\n]/g, " ");
    try {
      out.push({ name: m[1]!, value: decodeEntities(value, () => ({ offset: 0, line: 0, column: 0 })) });
    } catch {
      return [];
    }
  }
  return out;
}

function sameAttributes(a: readonly XmlAttribute[], b: readonly XmlAttribute[]): boolean {
  return a.length === b.length && a.every((x, i) => x.name === b[i]!.name && x.value === b[i]!.value);
}

/** The element's start tag in the source, if it is still exactly what the element holds. */
function rawStartTag(element: XmlElement, source: string): string | undefined {
  const start = element.position.offset;
  if (!source.startsWith(`<${element.name}`, start)) return undefined;
  const after = source.charCodeAt(start + element.name.length + 1);
  // the next character must end the name (`<Item ` or `<Item>`), not continue it (`<ItemX`)
  if (!(after === 0x20 || after === 0x09 || after === 0x0a || after === 0x3e || after === 0x2f))
    return undefined;
  let quote = 0;
  for (let i = start + element.name.length + 1; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (quote) {
      if (c === quote) quote = 0;
    } else if (c === 0x22 || c === 0x27) {
      quote = c;
    } else if (c === 0x3e) {
      const tag = source.slice(start, i + 1);
      return sameAttributes(pseudoAttributes(tag), element.attributes) ? tag : undefined;
    }
  }
  return undefined;
}

/** The XML infoset as plain data, for comparing two documents (namespace declarations included, as attributes). */
export function infoset(doc: Pick<XmlDocument, "children">): unknown[] {
  const walk = (nodes: XmlNode[]): unknown[] =>
    nodes.map((n) => {
      switch (n.type) {
        case "element":
          return { e: n.name, a: n.attributes.map((a) => [a.name, a.value]), c: walk(n.children) };
        case "text":
          return { t: n.value };
        case "cdata":
          return { t: n.value, cdata: true };
        case "comment":
          return { comment: n.value };
        default:
          return { pi: n.target, a: n.attributes.map((a) => [a.name, a.value]) };
      }
    });
  return walk(doc.children);
}
