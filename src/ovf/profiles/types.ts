import type { ProfileContext } from "./checks.js";

/** One importer, optionally at one version, and the checks that encode what it refuses. */
export interface TargetProfile {
  /** `vsphere`, `virtualbox`, `aws`, `azure`, `ovirt`. */
  target: string;
  /** `6.7`, `8.0u2`; undefined = the newest the profile knows. */
  version: string | undefined;
  /** `vsphere-6.7`: what findings carry in `profile`. */
  label: string;
  run(ctx: ProfileContext): Promise<void>;
}
