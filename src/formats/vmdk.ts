import { OvfkitError } from "../errors.js";
import type { FormatDriver } from "./driver.js";

// Placeholder until the format lands: detection never picks it, opening says so.
export const vmdkDriver: FormatDriver = {
  name: "vmdk",
  description: "VMware VMDK",
  probe: () => 0,
  async open(path) {
    throw new OvfkitError("UNSUPPORTED_FORMAT", "vmdk is not implemented yet", { file: path });
  },
};
