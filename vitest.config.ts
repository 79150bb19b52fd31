import { defineConfig } from 'vitest/config';

// `npm test` runs everything but test/slow/ (the >4 GiB file test, fuzzing through the built binary); `npm run test:slow` runs those.
const slow = process.env.MLIC_TESTS === 'slow';

// Files that run many processes at once (40 seat clients; 8 hosts × 4 metering processes): they run
// after all the others, one file at a time, so that they neither starve other files' timing
// checks on a 2-core machine nor are starved by them.
const MANY_PROCESSES = ['test/server/seats.test.ts', 'test/server/fleet.test.ts'];

const common = { testTimeout: 60_000, hookTimeout: 60_000, pool: 'forks' as const };

export default defineConfig({
  test: slow
    ? { ...common, include: ['test/slow/**/*.test.ts'], maxWorkers: 2 }
    : {
        projects: [
          {
            test: {
              ...common,
              name: 'main',
              include: ['test/**/*.test.ts'],
              exclude: ['test/slow/**', 'node_modules/**', ...MANY_PROCESSES],
              maxWorkers: 2,
              // a private PostgreSQL for the server's tests (not needed by the slow ones)
              globalSetup: ['test/postgres-setup.ts'],
              sequence: { groupOrder: 0 },
            },
          },
          {
            test: {
              ...common,
              name: 'many-processes',
              include: MANY_PROCESSES,
              maxWorkers: 1,
              globalSetup: ['test/postgres-setup.ts'],
              sequence: { groupOrder: 1 },
            },
          },
        ],
      },
});
