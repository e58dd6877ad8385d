import { OvfkitError } from "../errors.js";
import type { FormatDriver } from "./driver.js";

// Placeholder until the format lands: detection never picks it, opening says so.
export const qcow2Driver: FormatDriver = {
  name: "qcow2",
  description: "QEMU qcow2",
  probe: () => 0,
  async open(path) {
    throw new OvfkitError("UNSUPPORTED_FORMAT", "qcow2 is not implemented yet", { file: path });
  },
};
