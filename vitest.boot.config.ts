import { defineConfig } from "vitest/config";

// Long boots of the reference appliances: run by `npm run test:boot`
// (and by .ci/run after `npm test`), not in the quick suite.
export default defineConfig({
  test: {
    include: ["test/boot/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 900_000,
    hookTimeout: 300_000,
    pool: "forks",
    fileParallelism: false,
  },
});
