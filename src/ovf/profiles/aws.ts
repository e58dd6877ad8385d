import {
  checkAwsLimits,
  checkCollection,
  checkCompression,
  checkQcow2,
  checkSizes,
  checkTarLayout,
  checkVmdkComplete,
  checkVmdkSubformat,
} from "./checks.js";
import type { TargetProfile } from "./types.js";

/** AWS VM Import/Export (import-image / import-instance with an OVA). */
export function awsProfile(version: string | undefined): TargetProfile {
  const label = version ? `aws-${version}` : "aws";
  return {
    target: "aws",
    version,
    label,
    async run(ctx) {
      checkTarLayout(ctx);
      await checkSizes(ctx);
      await checkVmdkSubformat(ctx, "AWS VM Import");
      checkCompression(ctx, "AWS VM Import");
      await checkAwsLimits(ctx);
      await checkVmdkComplete(ctx);
      checkCollection(ctx, "AWS VM Import");
      await checkQcow2(ctx, "AWS VM Import");
    },
  };
}
