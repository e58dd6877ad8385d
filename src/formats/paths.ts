import { isAbsolute, relative } from "node:path";

/**
 * True when `path` is `folder` itself or lies below it (lexically: both
 * already resolved). Parent images, backing files and extents must stay in
 * the image's own folder tree unless the user allows otherwise.
 */
export function isInsideFolder(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}
