import type { OvfEnvelope } from "../model.js";
import type { PackageView } from "../package-view.js";
import { attributePosition, type XmlElement, type XmlPosition } from "../xml.js";

export type Severity = "error" | "warning" | "info";

/** 1 well-formedness, 2 structure, 3 references, 4 semantics, 5 strict XSD, "profile" target importers. */
export type RuleLayer = 1 | 2 | 3 | 4 | 5 | "profile";

/** A rule's catalogue entry: stable id, what it checks, how to fix what it finds. */
export interface RuleDefinition {
  /** Stable id (`OVF-REF-002`); never reused for another check. */
  id: string;
  layer: RuleLayer;
  severity: Severity;
  /** One line: what the rule checks. */
  title: string;
  /** One line: how to fix a finding. */
  fix: string;
  /** Profile rules: the targets it applies to (`vsphere`, `aws`, ...). */
  targets?: readonly string[];
  /** Profile rules: the public evidence (notes/targets.md) the check encodes. */
  source?: string;
}

/** One problem found in one file. */
export interface Finding {
  ruleId: string;
  severity: Severity;
  message: string;
  /** One-line fix hint. */
  fix: string;
  /** The file the finding is about (descriptor, OVA, manifest or disk). */
  file: string;
  /** 1-based; 0 when the finding is about a whole (binary) file. */
  line: number;
  column: number;
  /** XPath of the element the finding is about ("" for non-XML files). */
  xpath: string;
  layer: RuleLayer;
  /** Profile findings: the target profile that raised it (`vsphere-6.7`). */
  profile?: string;
  /** Profile findings: the evidence the rule encodes. */
  source?: string;
}

export interface ReportOptions {
  /** Put the location on this attribute (qualified name as written or `{ns}local`). */
  attribute?: string;
  /** Overrides the rule's default severity (e.g. a profile-version dependent check). */
  severity?: Severity;
  /** Overrides the rule's generic fix with a specific one. */
  fix?: string;
  /** Another file (manifest, disk) the finding is about. */
  file?: string;
}

export type Location = XmlElement | { line: number; column: number; xpath: string };

/** What every layer's checks get: the model, the package (when known) and a way to report. */
export class RuleContext {
  readonly findings: Finding[] = [];

  constructor(
    readonly envelope: OvfEnvelope,
    readonly file: string,
    readonly pkg: PackageView | undefined,
    readonly profile?: string,
  ) {}

  report(rule: RuleDefinition, at: Location, message: string, options: ReportOptions = {}): void {
    let position: Pick<XmlPosition, "line" | "column">;
    let xpath: string;
    if ("xpath" in at && !("type" in at)) {
      position = at;
      xpath = at.xpath;
    } else {
      const element = at as XmlElement;
      const attribute = options.attribute ? this.attributeName(element, options.attribute) : undefined;
      position = attribute ? attributePosition(this.envelope.document, element, attribute) : element.position;
      xpath = attribute ? `${element.xpath}/@${attribute}` : element.xpath;
    }
    this.findings.push({
      ruleId: rule.id,
      severity: options.severity ?? rule.severity,
      message,
      fix: options.fix ?? rule.fix,
      file: options.file ?? this.file,
      line: position.line,
      column: position.column,
      xpath,
      layer: rule.layer,
      ...(this.profile ? { profile: this.profile } : {}),
      ...(rule.source ? { source: rule.source } : {}),
    });
  }

  /** `ovf:size` written with whatever prefix the document bound to the envelope namespace. */
  private attributeName(element: XmlElement, name: string): string {
    if (element.attributes.some((a) => a.name === name)) return name;
    const local = name.includes(":") ? name.slice(name.indexOf(":") + 1) : name;
    const found =
      element.attributeNodeNS(this.envelope.ns, local) ?? element.attributes.find((a) => a.name === local);
    return found?.name ?? name;
  }
}

/** A check: reads the context, reports findings. */
export type Check = (context: RuleContext) => void | Promise<void>;

export function defineRules<const T extends Record<string, Omit<RuleDefinition, "id"> & { id: string }>>(
  rules: T,
): T {
  return rules;
}
