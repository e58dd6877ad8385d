import { OvfkitError } from "../../errors.js";
import { awsProfile } from "./aws.js";
import { azureProfile } from "./azure.js";
import { ovirtProfile } from "./ovirt.js";
import type { TargetProfile } from "./types.js";
import { virtualboxProfile } from "./virtualbox.js";
import { vsphereProfile } from "./vsphere.js";

export { ProfileContext } from "./checks.js";
export { TARGET_RULES } from "./rules.js";
export type { TargetProfile } from "./types.js";
export { VSPHERE_VERSIONS } from "./vsphere.js";

const FACTORIES: Record<string, (version: string | undefined) => TargetProfile> = {
  vsphere: vsphereProfile,
  virtualbox: virtualboxProfile,
  aws: awsProfile,
  azure: azureProfile,
  ovirt: ovirtProfile,
};

export const PROFILE_NAMES = Object.keys(FACTORIES);

/** `vsphere`, `vsphere-6.7`, `VSphere-8.0U2` → a profile; OVF_UNKNOWN_PROFILE otherwise. */
export function resolveProfile(spec: string): TargetProfile {
  const match = /^([a-z]+)(?:-(.+))?$/i.exec(spec.trim());
  const factory = match ? FACTORIES[match[1]!.toLowerCase()] : undefined;
  if (!match || !factory) {
    throw new OvfkitError(
      "OVF_UNKNOWN_PROFILE",
      `unknown profile "${spec}" (known: ${PROFILE_NAMES.join(", ")}; e.g. vsphere-6.7)`,
    );
  }
  return factory(match[2]?.toLowerCase());
}
