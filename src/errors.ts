/**
 * The one error type ovfkit throws on bad input or a failed operation.
 *
 * `code` is stable (documented in README "Error codes"): scripts and tests
 * match on it, never on the message. Where the problem sits in a file, the
 * error carries the file and either the byte offset (binary formats) or the
 * line and column (XML, descriptors, manifests).
 */
export interface ErrorLocation {
  /** The file the problem was found in. */
  file?: string;
  /** Byte offset into `file` where the offending structure starts. */
  offset?: number;
  /** 1-based line of a text file. */
  line?: number;
  /** 1-based column of a text file. */
  column?: number;
}

export interface OvfkitErrorOptions extends ErrorLocation {
  cause?: unknown;
}

export class OvfkitError extends Error {
  readonly code: string;
  readonly file: string | undefined;
  readonly offset: number | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(code: string, message: string, options: OvfkitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "OvfkitError";
    this.code = code;
    this.file = options.file;
    this.offset = options.offset;
    this.line = options.line;
    this.column = options.column;
  }

  /** `file:line:col` or `file@offset`, for messages people read. */
  get where(): string {
    const file = this.file ?? "";
    if (this.line !== undefined) return `${file}:${this.line}:${this.column ?? 1}`;
    if (this.offset !== undefined) return `${file} at offset ${this.offset} (0x${this.offset.toString(16)})`;
    return file;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      file: this.file,
      offset: this.offset,
      line: this.line,
      column: this.column,
    };
  }
}

export function isOvfkitError(error: unknown): error is OvfkitError {
  return error instanceof OvfkitError;
}

/**
 * Wraps a Node system error (ENOENT, EACCES, ENOSPC...) as an OvfkitError so
 * callers deal with one type. OvfkitErrors pass through unchanged.
 */
export function asOvfkitError(error: unknown, file?: string): OvfkitError {
  if (error instanceof OvfkitError) return error;
  const sys = error as NodeJS.ErrnoException;
  const path = sys?.path ?? file;
  switch (sys?.code) {
    case "ENOENT":
      return new OvfkitError("FILE_NOT_FOUND", `no such file: ${path}`, { file: path, cause: error });
    case "EACCES":
    case "EPERM":
      return new OvfkitError("PERMISSION_DENIED", `permission denied: ${path}`, { file: path, cause: error });
    case "ENOSPC":
      return new OvfkitError("NO_SPACE", `no space left on device writing ${path}`, {
        file: path,
        cause: error,
      });
    case "EISDIR":
      return new OvfkitError("IS_A_DIRECTORY", `is a directory: ${path}`, { file: path, cause: error });
    case "EEXIST":
      return new OvfkitError("FILE_EXISTS", `file exists: ${path}`, { file: path, cause: error });
    default:
      return new OvfkitError("IO_ERROR", `${sys?.message ?? String(error)}`, { file: path, cause: error });
  }
}
