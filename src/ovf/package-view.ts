import { open, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { type TarMember, TarReader } from "./tar.js";

/**
 * What the validator may look at besides the descriptor: the other files
 * of the package (sizes, a few header bytes of a disk), whether the
 * package is a folder (`.ovf` beside its files) or an `.ova` tar read in
 * place. Nothing is extracted; nothing outside the package is opened.
 */
export interface PackageView {
  kind: "ovf" | "ova";
  /** The .ovf or .ova path the user gave. */
  path: string;
  /** Name of the descriptor inside the package. */
  descriptorName: string;
  /** OVA only: the tar members in archive order (headers only). */
  members?: TarMember[];
  /** OVA only: true when the archive is gzip-compressed (then nothing inside can be read). */
  compressed?: boolean;
  /** Size of a package file (an ovf:href), undefined when it is not in the package. */
  sizeOf(name: string): Promise<number | undefined>;
  /** Reads up to `length` bytes at `offset` of a package file. */
  read(name: string, offset: number, length: number): Promise<Buffer>;
  /** A real path for the file when the package is a folder (lets disk drivers open it). */
  pathOf(name: string): string | undefined;
  /** Names of every file in the package (folder: the .ovf's folder, non-recursively). */
  list(): Promise<string[]>;
}

/** A folder package: the descriptor and the files beside it. */
export function folderPackage(descriptorPath: string): PackageView {
  const folder = dirname(resolve(descriptorPath));
  const inside = (name: string): string | undefined => {
    const full = resolve(folder, name);
    return full.startsWith(folder + sep) ? full : undefined;
  };
  // one directory listing per folder instead of a failing stat (and its exception) per missing file
  const listings = new Map<string, Promise<Set<string>>>();
  const listed = (full: string): Promise<boolean> => {
    const dir = dirname(full);
    let names = listings.get(dir);
    if (!names) {
      names = readdir(dir).then(
        (entries) => new Set(entries),
        () => new Set<string>(),
      );
      listings.set(dir, names);
    }
    return names.then((set) => set.has(full.slice(dir.length + 1)));
  };
  return {
    kind: "ovf",
    path: descriptorPath,
    descriptorName: basename(descriptorPath),
    async sizeOf(name) {
      const full = inside(name);
      if (!full || !(await listed(full))) return undefined;
      try {
        const info = await stat(full);
        return info.isFile() ? info.size : undefined;
      } catch {
        return undefined;
      }
    },
    async read(name, offset, length) {
      const full = inside(name);
      if (!full)
        throw new OvfkitError("OVF_HREF_PATH", `${name} is outside the package`, { file: descriptorPath });
      const handle = await open(full, "r").catch((error: unknown) => {
        throw asOvfkitError(error, full);
      });
      try {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    },
    pathOf: inside,
    async list() {
      return (await readdir(folder, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    },
  };
}

const GZIP_MAGIC = [0x1f, 0x8b];

/** An .ova read in place: the member list from the tar headers, data read at each member's offset. */
export async function ovaPackage(path: string): Promise<{
  view: PackageView;
  descriptor: Uint8Array | undefined;
  descriptorMember: TarMember | undefined;
}> {
  const head = Buffer.alloc(2);
  const handle = await open(path, "r").catch((error: unknown) => {
    throw asOvfkitError(error, path);
  });
  try {
    await handle.read(head, 0, 2, 0);
  } finally {
    await handle.close();
  }
  if (head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]) {
    const view = emptyOva(path, true);
    return { view, descriptor: undefined, descriptorMember: undefined };
  }
  const reader = await TarReader.open(path, { ova: false });
  let descriptor: Uint8Array | undefined;
  let descriptorMember: TarMember | undefined;
  try {
    for await (const member of reader.members()) {
      if (!descriptorMember && member.type === "file" && member.name.toLowerCase().endsWith(".ovf")) {
        descriptorMember = member;
        descriptor = await reader.readSmall(32 * 1024 * 1024);
      }
    }
  } finally {
    await reader.close();
  }
  const members = reader.list;
  const byName = new Map(
    members.filter((m) => m.type === "file").map((m) => [m.name.replace(/^\.\//, ""), m]),
  );
  const view: PackageView = {
    kind: "ova",
    path,
    descriptorName: descriptorMember?.name ?? "",
    members,
    async sizeOf(name) {
      return byName.get(name)?.size;
    },
    async read(name, offset, length) {
      const member = byName.get(name);
      if (!member) throw new OvfkitError("OVA_MEMBER_MISSING", `${name} is not in ${path}`, { file: path });
      const fh = await open(path, "r").catch((error: unknown) => {
        throw asOvfkitError(error, path);
      });
      try {
        const wanted = Math.max(0, Math.min(length, member.size - offset));
        const buffer = Buffer.alloc(wanted);
        const { bytesRead } = await fh.read(buffer, 0, wanted, member.dataOffset + offset);
        return buffer.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    },
    pathOf: () => undefined,
    async list() {
      return [...byName.keys()];
    },
  };
  return { view, descriptor, descriptorMember };
}

function emptyOva(path: string, compressed: boolean): PackageView {
  return {
    kind: "ova",
    path,
    descriptorName: "",
    members: [],
    compressed,
    sizeOf: async () => undefined,
    read: async () => Buffer.alloc(0),
    pathOf: () => undefined,
    list: async () => [],
  };
}

/** The .ovf and .ova files of a folder (recursively, sorted), for `validate DIR`. */
export async function packagesIn(folder: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (/\.(ovf|ova)$/i.test(entry.name)) out.push(full);
    }
  };
  await walk(folder);
  return out.sort();
}
