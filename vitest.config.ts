import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests start real servers; two cores do not like many at once.
    maxWorkers: 2,
    fileParallelism: true,
    // A focused test (`.only`) would silently skip the rest: refused under CI.
    allowOnly: !process.env.CI,
  },
});
