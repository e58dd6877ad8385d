import type { OvfEnvelope } from "./model.js";
import { serializeXml } from "./xml.js";

/**
 * Model → descriptor text. Without edits the output has the same infoset
 * as the input (elements, attributes, namespace declarations, order,
 * comments, text); after an edit only the edited nodes differ. Always
 * UTF-8: the declaration's `encoding` is rewritten to say so when it
 * claimed something else (writing UTF-16 is never needed by an importer).
 */
export function serializeOvf(envelope: OvfEnvelope): string {
  const declaration = envelope.document.declaration?.map((a) =>
    a.name === "encoding" && !/^utf-?8$/i.test(a.value) ? { name: a.name, value: "UTF-8" } : a,
  );
  return serializeXml({ ...envelope.document, declaration: declaration ?? null });
}

/** Serialises to UTF-8 bytes. */
export function serializeOvfBytes(envelope: OvfEnvelope): Buffer {
  return Buffer.from(serializeOvf(envelope), "utf8");
}
