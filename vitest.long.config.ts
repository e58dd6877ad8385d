import { defineConfig } from "vitest/config";

// Long checks (full-corpus hashes of huge sparse images, the full XSD
// corpus run, long differential CPU runs): `npm run test:long`, called by
// .ci/run after `npm test`.
export default defineConfig({
  test: {
    include: ["test/long/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 1_800_000,
    hookTimeout: 300_000,
    pool: "forks",
  },
});
