import { OvfkitError } from "../errors.js";
import type { FormatDriver } from "./driver.js";

// Placeholder until the format lands: detection never picks it, opening says so.
export const vhdxDriver: FormatDriver = {
  name: "vhdx",
  description: "Hyper-V VHDX",
  probe: () => 0,
  async open(path) {
    throw new OvfkitError("UNSUPPORTED_FORMAT", "vhdx is not implemented yet", { file: path });
  },
};
