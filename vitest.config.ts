import { defineConfig } from 'vitest/config';

// `npm test` runs everything but test/slow/ (the >4 GiB file test, fuzzing through the built binary); `npm run test:slow` runs those.
const slow = process.env.MLIC_TESTS === 'slow';

export default defineConfig({
  test: {
    include: slow ? ['test/slow/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: slow ? [] : ['test/slow/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    // a private PostgreSQL for the server's tests (not needed by the slow ones)
    globalSetup: slow ? [] : ['test/postgres-setup.ts'],
  },
});
