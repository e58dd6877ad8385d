/**
 * Public API of appliance packages: OVA tar, manifest, certificate,
 * verify, pack/unpack, edit, convert for a target, create-ovf, ovf-env.
 */
export {
  type CertificateReport,
  type CertificateVerifyOptions,
  type ParsedCertificateFile,
  parseCertificateFile,
  type SignOptions,
  signManifest,
  verifyCertificate,
} from "./cert.js";
export {
  type AddProperty,
  applyEdits,
  type EditPackageOptions,
  type EditResult,
  type EditSpec,
  editPackage,
} from "./edit.js";
export {
  buildEnvironment,
  type Environment,
  type EnvironmentOptions,
  environmentProperties,
  parsePropertyPairs,
  writeEnvironment,
} from "./env.js";
export { buildIso9660, type IsoFile, type IsoOptions } from "./iso9660.js";
export {
  formatManifest,
  MANIFEST_ALGORITHMS,
  type ManifestAlgorithm,
  type ManifestEntry,
  type PackageFinding,
  type ParsedManifest,
  parseAlgorithm,
  parseManifest,
} from "./manifest.js";
export {
  type PackageKind,
  type PackageMember,
  packageKind,
  type VerifyOptions,
  type VerifyReport,
  verifyPackage,
} from "./ova.js";
export {
  type ManifestResult,
  type PackOptions,
  type PackResult,
  packOva,
  signPackage,
  type UnpackOptions,
  type UnpackResult,
  unpackOva,
  writeManifest,
} from "./pack.js";
export { listTar, type TarMember, TarReader, TarWriter } from "./tar.js";
export {
  CONVERT_TARGETS,
  type ConvertApplianceOptions,
  type ConvertApplianceResult,
  type ConvertTarget,
  type CreateOvfOptions,
  convertAppliance,
  createOvf,
} from "./target-convert.js";
