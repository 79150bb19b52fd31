#!/usr/bin/env node
// npm run bench:server: the licence server (`mlic server start`) as a real process, on SQLite and
// on a private, throwaway PostgreSQL, loaded over HTTP from this process:
//
//   - activations/s: POST /v1/activations with distinct hosts (every one a new slot, 201), closed
//     loop at 16 and at 64 requests in flight; then p50/p99 at half the best rate, open loop
//   - revocation-list fetches/s: GET /v1/revocations (public), closed loop at 32 in flight, then
//     p50/p99 at half that rate. While that route answers 404 (not built yet), GET /healthz is
//     measured in its place and labelled as such.
//   - lease renewals/s: an entitlement with floating seats (64 host seats, 600 s leases), 64 hosts
//     activated and one lease checked out by each, then POST /v1/leases action renew (200), closed
//     loop at 16 and at 64 in flight, the hosts' leases renewed in turn; p50/p99
//   - reservations/s: an entitlement with a fleet meter (inferences, 1e12 a month), 64 hosts
//     activated, then POST /v1/reservations action reserve (1000 units, a new request id each;
//     201), closed loop at 16 and at 64 in flight; p50/p99
//   - validate()/s in this process: one more host on the fleet-meter entitlement, activated through
//     the server into a state directory of its own (fake hardware), loadLicense() in this process,
//     then validate({ meter: inferences x1 }) called one after the other, each awaited (the ledger
//     reserves blocks of units from the server now and then; no round trip per call); p50/p99
//
//   node scripts/bench-server.mjs [--json] [--database sqlite|postgres|both] [--requests N] [--seconds S]
//
// --requests: activations per phase (default 2000); list fetches, lease renewals and reservations
// per phase are 10x that, validate() calls 100x.
// --seconds: the most one phase may take (default 20); a phase ends early when it runs out of time,
// and its rate is over what it completed.
//
// Everything is prepared before timing: the vendor key, the server, the entitlement, and every
// signed activation request (fresh Ed25519/X25519 host keys, signed with the library's
// signRequest); every lease and reservation request of a phase is signed by its host's key
// (signLeaseRequest, signReservationRequest) just before that phase, untimed. The open-loop
// phases send on a fixed schedule and time each request from its scheduled start, so a server
// that falls behind shows in p99 instead of slowing the sender.
// The load generator shares the machine's CPUs with the server (and PostgreSQL): on a small
// machine the figures are a floor for the server alone. Each phase reports who used the CPUs
// (this process, the server, PostgreSQL, anything else), so that a run disturbed by another
// workload shows as such. Where the server has rate limits, they are off for the run
// (--rate-limit-key 0 --rate-limit-address 0): the bench measures throughput, not the limits.
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { arch, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const BIN = join(root, 'bin/mlic.js');
if (!existsSync(join(root, 'dist/license/sign.js'))) {
  process.stderr.write('dist/ is missing: run `npm run build` first (or `npm run bench:server`)\n');
  process.exit(2);
}
const { signRequest } = await import('../dist/license/sign.js');
const { fingerprintOf } = await import('../dist/hardware/fingerprint.js');
const { signLeaseRequest } = await import('../dist/format/lease.js');
const { signReservationRequest } = await import('../dist/format/reservation.js');
const { createActivationRequest, activateLicense } = await import('../dist/host/licences.js');
const { loadLicense } = await import('../dist/host/handle.js');
const { StateDir } = await import('../dist/state/home.js');

// ---- options ----
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const JSON_OUT = args.includes('--json');
const DATABASES = { both: ['sqlite', 'postgres'], sqlite: ['sqlite'], postgres: ['postgres'] }[opt('--database', 'both')];
const REQUESTS = Math.floor(Number(opt('--requests', 2000)));
const PHASE_SECONDS = Number(opt('--seconds', 20));
if (!DATABASES || !(REQUESTS > 0) || !(PHASE_SECONDS > 0)) {
  process.stderr.write('usage: node scripts/bench-server.mjs [--json] [--database sqlite|postgres|both] [--requests N] [--seconds S]\n');
  process.exit(2);
}
const ACTIVATION_CONCURRENCY = [16, 64];
const LIST_CONCURRENCY = 32;
const LIST_REQUESTS = REQUESTS * 10;
const WARMUP_ACTIVATIONS = 100;
// floating seats and fleet quotas: hosts with one lease (or one quota account) each, loaded at these concurrencies
const SEAT_CONCURRENCY = [16, 64];
const SEAT_HOSTS = 64;
const LEASE_SECONDS = 600;
const RENEWALS = REQUESTS * 10;
const RESERVATIONS = REQUESTS * 10;
const WARMUP_SEAT_REQUESTS = 200;
// in-process validate() with a fleet meter: calls per phase, after a warm-up
const VALIDATE_CALLS = REQUESTS * 100;
const WARMUP_VALIDATE_CALLS = 5000;
// The goals of the issue, for SQLite.
const GOALS = { activationsPerSecond: 500, listPerSecond: 5000, p99AtHalfRateMs: 50, renewalsPerSecond: 2000, validatePerSecond: 50_000 };

/** Progress goes to stderr; stdout carries only the table (or, with --json, one JSON object). */
const note = (s) => process.stderr.write(`${s}\n`);

// ---- clean-up, also on failure and Ctrl-C ----
const cleanups = [];
let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (e) {
        note(`clean-up: ${e.message}`);
      }
    }
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    note(`${sig}: stopping servers and removing temporary files`);
    void cleanup().finally(() => process.exit(130));
  });
}

const tmpRoot = mkdtempSync(join(tmpdir(), 'mlic-bench-server-'));
cleanups.push(() => rmSync(tmpRoot, { recursive: true, force: true }));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- who used the CPUs during a phase (Linux /proc; left out elsewhere) ----
const TICK_MS = 1000 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100);

/**
 * CPU time of the whole machine, all cores, in ms: in processes (user, nice, system), in interrupts
 * (irq, softirq: loopback TCP is mostly softirq, charged to no process), stolen by the hypervisor, total.
 */
function machineCpu() {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { processes: (user + nice + system) * TICK_MS, irq: (irq + softirq) * TICK_MS, steal: steal * TICK_MS, total: (user + nice + system + idle + iowait + irq + softirq + steal) * TICK_MS };
}

/** utime + stime of processes, in ms, by pid (a process that is gone is left out). */
function processCpu(pids) {
  const m = new Map();
  for (const pid of pids) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(pid, (Number(f[11]) + Number(f[12])) * TICK_MS);
    } catch {
      // exited
    }
  }
  return m;
}

/** A process and its children (PostgreSQL: the postmaster and its backends). */
function withChildren(pid) {
  const pids = [pid];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === pid) pids.push(Number(d));
    } catch {
      // exited
    }
  }
  return pids;
}

/**
 * Runs a phase and says how busy the machine was meanwhile, as shares of all its cores: this
 * process (the load generator), the server, PostgreSQL, other processes, interrupts and steal. A
 * large "other" share means another workload competed with the run, and the figures are low.
 */
async function accounted(phase, who) {
  if (!existsSync('/proc/stat')) return phase();
  const snap = () => ({ m: machineCpu(), self: process.cpuUsage(), server: processCpu([who.server]), pg: who.postgres ? processCpu(withChildren(who.postgres)) : new Map() });
  const sum = (after, before) => [...after].reduce((a, [pid, ms]) => a + ms - (before.get(pid) ?? 0), 0);
  const a = snap();
  const r = await phase();
  const b = snap();
  const total = b.m.total - a.m.total;
  const pct = (ms) => round((100 * ms) / total, 0);
  const bench = (b.self.user + b.self.system - a.self.user - a.self.system) / 1000;
  const server = sum(b.server, a.server);
  const postgres = sum(b.pg, a.pg);
  const inProcesses = b.m.processes - a.m.processes;
  r.cpu = {
    benchPct: pct(bench),
    serverPct: pct(server),
    ...(who.postgres ? { postgresPct: pct(postgres) } : {}),
    otherPct: pct(Math.max(0, inProcesses - bench - server - postgres)),
    interruptsPct: pct(b.m.irq - a.m.irq),
    stealPct: pct(b.m.steal - a.m.steal),
    // CPU time per request (a process's own CPU time: a machine busy with other work leaves it as it is)
    ...(r.completed ? { serverMsPerRequest: round(server / r.completed, 3), ...(who.postgres ? { postgresMsPerRequest: round(postgres / r.completed, 3) } : {}), benchMsPerRequest: round(bench / r.completed, 3) } : {}),
  };
  return r;
}

// ---- PostgreSQL: a private cluster, as test/postgres-setup.ts makes it ----
function pgBin() {
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (which) return dirname(which);
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const v = readdirSync(base)
    .filter((d) => existsSync(join(base, d, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))[0];
  return v ? join(base, v, 'bin') : undefined;
}

/** Starts a throwaway PostgreSQL on 127.0.0.1; its URL, or why there is none. Stopped and deleted by cleanup(). */
async function startPostgres() {
  const bin = pgBin();
  if (!bin) return { why: 'PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql; Debian: apt-get install postgresql)' };
  const dir = mkdtempSync('/tmp/mlic-bench-pg-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const id = (flag) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (id('-u').status !== 0) return { why: 'running as root, and there is no postgres user to run PostgreSQL as' };
    chownSync(dir, Number(id('-u').stdout.trim()), Number(id('-g').stdout.trim()));
  }
  const run = (cmd, argv) => {
    const r = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...argv], { encoding: 'utf8' }) : spawnSync(join(bin, cmd), argv, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${(r.stderr || r.stdout || r.error?.message || '').trim()}`);
    return r.stdout;
  };
  const data = join(dir, 'data');
  try {
    run('initdb', ['-D', data, '-U', 'mlic', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  } catch (e) {
    return { why: e.message };
  }
  const port = await freePort();
  // defaults otherwise (fsync on, synchronous_commit on): a commit is durable, as SQLite's synchronous=FULL
  run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`, 'start']);
  // removed after this stop (cleanups run in reverse)
  cleanups.push(() => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']));
  const version = run('pg_ctl', ['--version']).trim();
  const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return { url: `postgres://mlic@127.0.0.1:${port}/postgres`, version, postmaster };
}

/** Committed and rolled-back transactions so far (a rollback: a refusal, or a SERIALIZABLE conflict the server retried). */
async function pgTransactions(url) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query('SELECT xact_commit::float8 AS commits, xact_rollback::float8 AS rollbacks FROM pg_stat_database WHERE datname = current_database()');
    return r.rows[0];
  } finally {
    await c.end();
  }
}

// ---- the server process ----
const serverEnv = { PATH: process.env.PATH ?? '' };

/**
 * `mlic server start` on a free loopback port; resolves with its URL and first admin token once it
 * prints its first line. Its stdout (the first line, then one access-log line per request) goes to
 * a file, so that neither a pipe the bench would have to drain nor the bench's CPU is involved.
 */
async function startServer(name, extraArgs) {
  const logPath = join(tmpRoot, `${name}.stdout`);
  const fd = openSync(logPath, 'w');
  const child = spawn(process.execPath, [BIN, 'server', 'start', '--listen', '127.0.0.1:0', '--json', ...extraArgs], { env: serverEnv, stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  let exitCode;
  const exited = new Promise((res) => child.on('exit', (code, signal) => res((exitCode = code ?? signal))));
  const stop = async () => {
    if (exitCode !== undefined) return exitCode;
    child.kill('SIGTERM');
    const late = setTimeout(() => child.kill('SIGKILL'), 15_000); // the server's own grace is 10 s
    const code = await exited;
    clearTimeout(late);
    return code;
  };
  cleanups.push(stop);
  for (const t0 = Date.now(); ; await sleep(25)) {
    const text = readFileSync(logPath, 'utf8');
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      const first = JSON.parse(text.slice(0, nl));
      if (!first.ok) throw new Error(`${name} server: ${text.slice(0, nl)}`);
      return { url: new URL(first.result.url), adminToken: first.result.adminToken, pid: child.pid, stop, stderr: () => stderr, logPath };
    }
    if (exitCode !== undefined) throw new Error(`${name} server exited (${exitCode}) before listening: ${stderr.trim()}`);
    if (Date.now() - t0 > 60_000) throw new Error(`${name} server did not start within 60 s: ${stderr.trim()}`);
  }
}

/** Statuses per route from a server's access log (written by the server, not measured by us). */
function accessLogSummary(logPath) {
  const byRoute = {};
  for (const line of readFileSync(logPath, 'utf8').split('\n').slice(1)) {
    if (!line) continue;
    try {
      const l = JSON.parse(line);
      const k = `${l.method} ${l.path}`;
      byRoute[k] ??= {};
      byRoute[k][l.status] = (byRoute[k][l.status] ?? 0) + 1;
    } catch {
      // not an access-log line
    }
  }
  return byRoute;
}

// ---- HTTP ----
/** One request over a keep-alive agent; never rejects (a network error is status 0). */
function send(agent, url, method, path, body, headers = {}) {
  return new Promise((resolve) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path, agent, headers: body ? { 'content-type': 'application/json', 'content-length': body.length, ...headers } : headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', (e) => resolve({ status: 0, body: Buffer.from(e.code ?? e.message) }));
      },
    );
    req.on('error', (e) => resolve({ status: 0, body: Buffer.from(e.code ?? e.message) }));
    req.end(body);
  });
}

/** What a failed answer was, for the error tally: "403 HOST_LIMIT_REACHED", "0 ECONNRESET". */
function failureOf(r) {
  if (r.status === 0) return `network ${r.body.toString()}`;
  try {
    return `${r.status} ${JSON.parse(r.body.toString()).error?.code ?? ''}`.trim();
  } catch {
    return String(r.status);
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summarize(latencies, okCount, seconds, errors, extra = {}) {
  const s = Float64Array.from(latencies).sort();
  return {
    completed: latencies.length,
    ok: okCount,
    errors: Object.fromEntries(errors),
    seconds: round(seconds, 2),
    perSecond: round(okCount / seconds, 0),
    p50Ms: round(percentile(s, 50), 2),
    p99Ms: round(percentile(s, 99), 2),
    maxMs: round(s[s.length - 1] ?? NaN, 2),
    ...extra,
  };
}
const round = (x, d) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

/**
 * Closed loop: `concurrency` workers, each sending its next request when the last one answered,
 * until `count` are done or `seconds` have passed. The rate counts successful answers only.
 */
async function closedLoop({ count, concurrency, seconds, fire, isOk }) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies = [];
  const errors = new Map();
  let next = 0;
  let ok = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      const s = performance.now();
      const r = await fire(agent, i);
      latencies.push(performance.now() - s);
      if (isOk(r)) ok++;
      else errors.set(failureOf(r), (errors.get(failureOf(r)) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return summarize(latencies, ok, elapsed, errors, { concurrency, timeBound: next < count });
}

/**
 * Open loop: requests start on a fixed schedule (`rate` per second) whatever the answers do, and
 * each latency runs from the scheduled start (no coordinated omission: a stalled server or a late
 * sender shows up in the figures).
 */
async function openLoop({ rate, count, fire, isOk }) {
  const agent = new Agent({ keepAlive: true, maxSockets: 512 });
  const latencies = [];
  const errors = new Map();
  let ok = 0;
  const pending = [];
  const t0 = performance.now() + 10;
  for (let i = 0; i < count; i++) {
    const at = t0 + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait >= 1) await sleep(wait); // timers are ~1 ms coarse: faster rates go out in small bursts, on schedule
    pending.push(
      fire(agent, i).then((r) => {
        latencies.push(performance.now() - at);
        if (isOk(r)) ok++;
        else errors.set(failureOf(r), (errors.get(failureOf(r)) ?? 0) + 1);
      }),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return summarize(latencies, ok, elapsed, errors, { targetPerSecond: round(rate, 0) });
}

// ---- activation requests, made before any timing ----
// Raw keys from DER, as src/crypto/ed25519.ts takes them: the 32 bytes after a fixed prefix.
// (Not export({ format: 'jwk' }): on Node 20.20 that deadlocks now and then when a garbage
// collection runs during the export of a key just made by generateKeyPairSync.)
const PKCS8_PREFIX = 16; // 302e020100300506032b6570 04220420 (Ed25519 and X25519 alike)
const SPKI_PREFIX = 12; // 302a300506032b65xx032100
function keyPair(type) {
  const { privateKey, publicKey } = generateKeyPairSync(type);
  return { secret: privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX), public: publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX) };
}

/** A signed activation request of a new host (what createActivationRequest makes, without a state directory). */
function activationRequest(i) {
  return newHost(`bench-host-${i}`).request;
}

/** A new host: its signed activation request, and the seed of its signing key (which signs its lease and reservation requests). */
function newHost(name) {
  const sign = keyPair('ed25519');
  const box = keyPair('x25519');
  // the components a GPU server reports (as test/license/hosts.ts fakes them); hashed with the host's salt
  const probe = {
    components: [
      { kind: 'gpu', value: `GPU-${name}-0`, label: 'GPU 0 (NVIDIA H100)' },
      { kind: 'gpu', value: `GPU-${name}-1`, label: 'GPU 1 (NVIDIA H100)' },
      { kind: 'machine-id', value: randomBytes(16).toString('hex'), label: '/etc/machine-id' },
      { kind: 'mac', value: '02:00:00:00:00:01', label: 'NIC eth0' },
    ],
    container: false,
    vm: false,
  };
  const payload = {
    v: 2,
    kind: 'mlic-activation-request',
    requestId: randomBytes(16).toString('hex'),
    createdAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    hostPublicKey: box.public.toString('base64'),
    signingPublicKey: sign.public.toString('base64'),
    hostname: name,
    fingerprint: fingerprintOf(probe, randomBytes(32)),
  };
  return { request: JSON.stringify(signRequest(payload, sign.secret)), signSeed: Buffer.from(sign.secret) };
}

// ---- floating seats, fleet quotas, in-process validate() ----
/** ISO time to the second, as the host library writes createdAt. */
const isoSecond = (d = new Date()) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const jsonBody = (v) => Buffer.from(JSON.stringify(v));
const TERMS = { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' };

/** POST /v1/entitlements with the admin token: { licenseKey, entitlement }. */
async function createEntitlement(server, body) {
  const agent = new Agent({ keepAlive: false });
  try {
    const r = await send(agent, server.url, 'POST', '/v1/entitlements', jsonBody(body), { authorization: `Bearer ${server.adminToken}` });
    if (r.status !== 201) throw new Error(`creating the entitlement (${body.customer}) answered ${failureOf(r)}: ${r.body}`);
    return JSON.parse(r.body.toString());
  } finally {
    agent.destroy();
  }
}

/** Activates `n` new hosts on an entitlement (8 at a time): each one's licence id and signing seed. */
async function activateHosts(server, licenseKey, prefix, n) {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  try {
    return await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const h = newHost(`${prefix}-${i}`);
        const r = await send(agent, server.url, 'POST', '/v1/activations', jsonBody({ licenseKey, request: h.request }));
        if (r.status !== 201 && r.status !== 200) throw new Error(`activating host ${prefix}-${i} answered ${failureOf(r)}`);
        return { name: `${prefix}-${i}`, licenseId: JSON.parse(r.body.toString()).licenseId, signSeed: h.signSeed };
      }),
    );
  } finally {
    agent.destroy();
  }
}

/**
 * `count` request bodies, { request: JSON of a signed request }, spread over the hosts (request i
 * from host i % hosts), each signed by its host's key before any timing. Made host by host: the
 * library keeps the last signing key built, so that each host's key is built once.
 */
function signedBodies(hosts, count, make) {
  const per = hosts.map((h, k) => {
    const mine = [];
    for (let i = k; i < count; i += hosts.length) mine.push(jsonBody({ request: JSON.stringify(make(h)) }));
    return mine;
  });
  return (i) => per[i % hosts.length][Math.floor(i / hosts.length)];
}

/** A load for closedLoop: `count` prepared bodies POSTed to `path`, ok on `okStatus`; notes how long preparing took. */
function prepared(server, path, okStatus, hosts, count, make, what) {
  const g0 = performance.now();
  const body = signedBodies(hosts, count, make);
  note(`  made ${count} signed ${what} in ${round((performance.now() - g0) / 1000, 1)} s`);
  return { fire: (agent, i) => send(agent, server.url, 'POST', path, body(i)), isOk: (r) => r.status === okStatus };
}

/** PostgreSQL's commits and rollbacks while `phase` ran (its statistics lag a little: read after a pause). */
async function pgCounted(postgres, phase, n) {
  if (!postgres) return { result: await phase() };
  const before = await pgTransactions(postgres.url);
  const result = await phase();
  await sleep(1500);
  const after = await pgTransactions(postgres.url);
  return { result, postgresTransactions: { requests: n(result), commits: after.commits - before.commits, rollbacks: after.rollbacks - before.rollbacks } };
}

/**
 * Lease renewals: an entitlement with one floating seat per host, SEAT_HOSTS hosts activated, one
 * lease checked out by each (201), then renewals (action renew with the lease's id, 200) in a
 * closed loop, request i renewing host i % SEAT_HOSTS's lease.
 */
async function benchLeases(kind, server, who, postgres) {
  const out = { hosts: SEAT_HOSTS, seats: SEAT_HOSTS, unit: 'host', leaseSeconds: LEASE_SECONDS };
  const e = await createEntitlement(server, { customer: 'bench-seats', model: 'resnet', maxHosts: SEAT_HOSTS, seats: { count: SEAT_HOSTS, unit: 'host', leaseSeconds: LEASE_SECONDS }, terms: TERMS });
  const hosts = await activateHosts(server, e.licenseKey, `${kind}-seat`, SEAT_HOSTS);
  const leaseRequest = (h, action) => signLeaseRequest({ v: 1, kind: 'mlic-lease-request', action, licenseId: h.licenseId, clientId: 'host', ...(h.leaseId ? { leaseId: h.leaseId } : {}), createdAt: isoSecond() }, h.signSeed);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  try {
    await Promise.all(
      hosts.map(async (h) => {
        const r = await send(agent, server.url, 'POST', '/v1/leases', jsonBody({ request: JSON.stringify(leaseRequest(h, 'checkout')) }));
        if (r.status !== 201) throw new Error(`checking out a lease for ${h.name} answered ${failureOf(r)}`);
        h.leaseId = JSON.parse(JSON.parse(r.body.toString()).lease).payload.leaseId;
      }),
    );
  } finally {
    agent.destroy();
  }
  const renewals = (count) => prepared(server, '/v1/leases', 200, hosts, count, (h) => leaseRequest(h, 'renew'), 'lease renewals');
  out.warmup = await closedLoop({ count: WARMUP_SEAT_REQUESTS, concurrency: 8, seconds: PHASE_SECONDS, ...renewals(WARMUP_SEAT_REQUESTS) });
  if (out.warmup.ok === 0) throw new Error(`no warm-up renewal succeeded: ${JSON.stringify(out.warmup.errors)}`);
  out.closed = [];
  const counted = await pgCounted(
    postgres,
    async () => {
      for (const c of SEAT_CONCURRENCY) {
        note(`${kind}: lease renewals, ${c} in flight`);
        const load = renewals(RENEWALS);
        out.closed.push(await accounted(() => closedLoop({ count: RENEWALS, concurrency: c, seconds: PHASE_SECONDS, ...load }), who));
      }
    },
    () => out.closed.reduce((a, r) => a + r.completed, 0),
  );
  if (counted.postgresTransactions) out.postgresTransactions = counted.postgresTransactions;
  out.best = out.closed.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  return out;
}

/**
 * Fleet-quota reservations: an entitlement with a fleet meter (limit 1e12 a month: never used up
 * here), SEAT_HOSTS hosts activated, then reserve requests (1000 units, at least 1; a fresh
 * request id each, 201) in a closed loop, request i from host i % SEAT_HOSTS.
 */
async function benchReservations(kind, server, who, postgres, fleet) {
  const out = { hosts: SEAT_HOSTS, amount: 1000, meter: fleet.meter };
  const hosts = await activateHosts(server, fleet.licenseKey, `${kind}-fleet`, SEAT_HOSTS);
  const reserve = (h) =>
    signReservationRequest(
      { v: 1, kind: 'mlic-reservation-request', action: 'reserve', requestId: randomBytes(16).toString('hex'), licenseId: h.licenseId, metric: 'inferences', period: new Date().toISOString().slice(0, 7), amount: 1000, min: 1, used: 0, createdAt: isoSecond() },
      h.signSeed,
    );
  const reservations = (count) => prepared(server, '/v1/reservations', 201, hosts, count, reserve, 'reservations');
  out.warmup = await closedLoop({ count: WARMUP_SEAT_REQUESTS, concurrency: 8, seconds: PHASE_SECONDS, ...reservations(WARMUP_SEAT_REQUESTS) });
  if (out.warmup.ok === 0) throw new Error(`no warm-up reservation succeeded: ${JSON.stringify(out.warmup.errors)}`);
  out.closed = [];
  const counted = await pgCounted(
    postgres,
    async () => {
      for (const c of SEAT_CONCURRENCY) {
        note(`${kind}: reservations, ${c} in flight`);
        const load = reservations(RESERVATIONS);
        out.closed.push(await accounted(() => closedLoop({ count: RESERVATIONS, concurrency: c, seconds: PHASE_SECONDS, ...load }), who));
      }
    },
    () => out.closed.reduce((a, r) => a + r.completed, 0),
  );
  if (counted.postgresTransactions) out.postgresTransactions = counted.postgresTransactions;
  out.best = out.closed.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  return out;
}

/** POST /v1/reservations lines in the server's access log so far (the server's blocks for the in-process phase). */
const reservationsLogged = (logPath) => Object.values(accessLogSummary(logPath)['POST /v1/reservations'] ?? {}).reduce((a, b) => a + b, 0);

/**
 * validate() in this process: one host (a state directory of its own, fake hardware) activated
 * online through the server on the fleet-meter entitlement, its licence installed, loadLicense(),
 * then VALIDATE_CALLS calls of validate({ meter: inferences x1 }) one after the other, each awaited.
 * The ledger asks the server for blocks of units as its pool runs short (a few calls in all), so
 * nearly every call is local: the ledger, the audit journal, the checks.
 */
async function benchValidate(kind, server, who, fleet, pubText) {
  const stateDir = join(tmpRoot, `${kind}-validate-host`, 'state');
  const name = `bench-${kind}-validate`;
  const hostProbe = {
    components: [
      { kind: 'gpu', value: `GPU-${name}-0`, label: 'GPU 0' },
      { kind: 'machine-id', value: `${name}-machine-id`, label: '/etc/machine-id' },
    ],
    gpus: [],
    container: false,
    vm: false,
    missing: {},
    hostname: name,
  };
  const state = new StateDir(stateDir);
  await state.trustAdd(pubText);
  const request = JSON.stringify((await createActivationRequest({ stateDir, hostProbe })).request);
  const agent = new Agent({ keepAlive: false });
  const a = await send(agent, server.url, 'POST', '/v1/activations', jsonBody({ licenseKey: fleet.licenseKey, request }));
  agent.destroy();
  if (a.status !== 201) throw new Error(`activating the validate() host answered ${failureOf(a)}`);
  await activateLicense(JSON.parse(a.body.toString()).license, { stateDir, hostProbe });
  await state.setServerUrl(server.url.origin);
  const lic = await loadLicense({ stateDir, hostProbe, model: 'resnet' });
  const out = { durability: 'batched (the default)', meter: fleet.meter };
  try {
    const req = { meter: { metric: 'inferences', quantity: 1 } };
    const run = async (count) => {
      const lat = new Float64Array(count);
      const errors = new Map();
      let n = 0;
      let ok = 0;
      const t0 = performance.now();
      const deadline = t0 + PHASE_SECONDS * 1000;
      let s = t0;
      while (n < count && s < deadline) {
        const r = await lic.validate(req);
        const e = performance.now();
        lat[n++] = e - s;
        s = e;
        if (r.valid) ok++;
        else errors.set(r.error, (errors.get(r.error) ?? 0) + 1);
      }
      const r = summarize(lat.subarray(0, n), ok, (performance.now() - t0) / 1000, errors, { timeBound: n < count });
      const sorted = Float64Array.from(lat.subarray(0, n)).sort();
      return { ...r, p50Us: round(percentile(sorted, 50) * 1000, 1), p99Us: round(percentile(sorted, 99) * 1000, 1), maxUs: round((sorted[n - 1] ?? NaN) * 1000, 1) };
    };
    out.warmup = await run(WARMUP_VALIDATE_CALLS);
    if (out.warmup.ok === 0) throw new Error(`no warm-up validate() succeeded: ${JSON.stringify(out.warmup.errors)}`);
    await sleep(300);
    const before = reservationsLogged(server.logPath);
    note(`${kind}: validate() in this process, ${VALIDATE_CALLS} calls`);
    out.calls = await accounted(() => run(VALIDATE_CALLS), who);
    await sleep(300);
    out.calls.serverReservations = reservationsLogged(server.logPath) - before;
    const [m] = await lic.status();
    out.ledgerUsed = m?.used;
  } finally {
    const c0 = performance.now();
    await lic.close();
    out.closeMs = round(performance.now() - c0, 1);
  }
  return out;
}

// ---- one database ----
async function benchDatabase(kind, requests, keyFile, rateLimitArgs) {
  const row = { database: kind };
  let dbArgs = [];
  let postgres;
  if (kind === 'postgres') {
    note('postgres: starting a private PostgreSQL');
    postgres = await startPostgres();
    if (!postgres.url) {
      note(`postgres: not measured: ${postgres.why}`);
      return { ...row, measured: false, why: postgres.why };
    }
    row.version = postgres.version;
    dbArgs = ['--database', postgres.url];
  }
  const server = await startServer(kind, ['--data', join(tmpRoot, `${kind}-data`), '--key', keyFile, ...dbArgs, ...rateLimitArgs]);
  note(`${kind}: server at ${server.url.origin}`);
  const who = { server: server.pid, postgres: postgres?.postmaster };
  try {
    // the entitlement every activation draws on (one customer's many hosts)
    const adminAgent = new Agent({ keepAlive: false });
    const ent = await send(
      adminAgent,
      server.url,
      'POST',
      '/v1/entitlements',
      Buffer.from(JSON.stringify({ customer: 'bench', model: 'bench-model', maxHosts: 1_000_000, terms: { versions: { policy: 'range', range: '^1' }, expires: '2099-01-01T00:00:00Z' } })),
      { authorization: `Bearer ${server.adminToken}` },
    );
    if (ent.status !== 201) throw new Error(`${kind}: creating the entitlement answered ${ent.status}: ${ent.body}`);
    const { licenseKey } = JSON.parse(ent.body.toString());

    // each activation request is used once: every measured activation is a new host (201)
    const bodies = requests.map((request) => Buffer.from(JSON.stringify({ licenseKey, request })));
    let used = 0;
    const take = (n) => {
      const from = used;
      used += n;
      if (used > bodies.length) throw new Error('ran out of prepared activation requests');
      return from;
    };
    const activations = (from) => ({ fire: (agent, i) => send(agent, server.url, 'POST', '/v1/activations', bodies[from + i]), isOk: (r) => r.status === 201 || r.status === 200 });

    // warm-up (JIT, connections, the database's caches); kept for its errors, not reported as a rate
    row.warmup = await closedLoop({ count: WARMUP_ACTIVATIONS, concurrency: 8, seconds: PHASE_SECONDS, ...activations(take(WARMUP_ACTIVATIONS)) });
    if (row.warmup.ok === 0) throw new Error(`${kind}: no warm-up activation succeeded: ${JSON.stringify(row.warmup.errors)}`);
    await closedLoop({ count: 500, concurrency: 8, seconds: 5, fire: (agent) => send(agent, server.url, 'GET', '/healthz'), isOk: (r) => r.status === 200 });
    const pgBefore = postgres ? await pgTransactions(postgres.url) : undefined;

    row.activations = { closed: [] };
    for (const c of ACTIVATION_CONCURRENCY) {
      note(`${kind}: activations, ${c} in flight`);
      row.activations.closed.push(await accounted(() => closedLoop({ count: REQUESTS, concurrency: c, seconds: PHASE_SECONDS, ...activations(take(REQUESTS)) }), who));
    }
    const best = row.activations.closed.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    row.activations.best = best;
    const half = Math.max(1, best.perSecond / 2);
    // as many as fit in three quarters of the phase's time at that rate (and at most --requests)
    const halfCount = Math.max(1, Math.min(REQUESTS, Math.floor(half * PHASE_SECONDS * 0.75)));
    note(`${kind}: activations at half rate, ${round(half, 0)}/s`);
    row.activations.halfRate = await accounted(() => openLoop({ rate: half, count: halfCount, ...activations(take(halfCount)) }), who);
    if (postgres) {
      // statistics reach pg_stat_database within a second or so of a transaction: a late count is low, never high
      await sleep(1500);
      const after = await pgTransactions(postgres.url);
      const n = row.activations.closed.reduce((a, r) => a + r.completed, 0) + row.activations.halfRate.completed;
      row.activations.postgresTransactions = { activations: n, commits: after.commits - pgBefore.commits, rollbacks: after.rollbacks - pgBefore.rollbacks };
    }

    // the revocation list, or /healthz standing in while that route is not built
    const probe = await send(adminAgent, server.url, 'GET', '/v1/revocations');
    adminAgent.destroy();
    let path = '/v1/revocations';
    if (probe.status === 200) {
      // the list as served (no licence is revoked in this run: the smallest list)
      let entries;
      try {
        const j = JSON.parse(probe.body.toString());
        entries = (j.payload ?? j.list?.payload ?? j)?.licenses?.length;
      } catch {
        // not JSON: its size is still reported
      }
      row.list = { route: path, builtYet: true, bytes: probe.body.length, entries };
    } else {
      row.list = { route: '/healthz', builtYet: false, revocationsAnswered: probe.status, why: probe.status === 404 ? 'GET /v1/revocations: not built yet (404)' : `GET /v1/revocations answered ${failureOf(probe)}` };
      path = '/healthz';
      note(`${kind}: ${row.list.why}; measuring GET /healthz in its place`);
    }
    const list = { fire: (agent) => send(agent, server.url, 'GET', path), isOk: (r) => r.status === 200 };
    note(`${kind}: GET ${path}, ${LIST_CONCURRENCY} in flight`);
    row.list.closed = await accounted(() => closedLoop({ count: LIST_REQUESTS, concurrency: LIST_CONCURRENCY, seconds: PHASE_SECONDS, ...list }), who);
    const listHalf = Math.max(1, row.list.closed.perSecond / 2);
    const listHalfCount = Math.max(1, Math.min(LIST_REQUESTS, Math.floor(listHalf * PHASE_SECONDS * 0.75)));
    note(`${kind}: GET ${path} at half rate, ${round(listHalf, 0)}/s`);
    row.list.halfRate = await accounted(() => openLoop({ rate: listHalf, count: listHalfCount, ...list }), who);

    // floating seats, fleet quotas, and validate() in this process: each reported on its own, so that one failing loses not the others
    const section = async (name, fn) => {
      try {
        row[name] = { measured: true, ...(await fn()) };
      } catch (e) {
        note(`${kind}: ${name}: failed: ${e.stack ?? e.message}`);
        row[name] = { measured: false, failed: true, why: e.message };
      }
    };
    await section('leases', () => benchLeases(kind, server, who, postgres));
    const meter = { metric: 'inferences', limit: 1e12, period: 'month', scope: 'fleet' };
    let fleet;
    await section('reservations', async () => {
      // one more host than the reservation phase's: the validate() host
      const e = await createEntitlement(server, { customer: 'bench-fleet', model: 'resnet', maxHosts: SEAT_HOSTS + 1, terms: { ...TERMS, meters: [meter] } });
      fleet = { licenseKey: e.licenseKey, meter };
      return benchReservations(kind, server, who, postgres, fleet);
    });
    if (fleet) await section('validate', () => benchValidate(kind, server, who, fleet, readFileSync(keyFile.replace(/\.key$/, '.pub'), 'utf8')));
    else row.validate = { measured: false, failed: true, why: 'the fleet-meter entitlement could not be made' };
    row.measured = true;
  } finally {
    row.serverExit = await server.stop();
    row.serverStatuses = accessLogSummary(server.logPath);
    const err = server.stderr().trim();
    if (err) row.serverStderr = err.split('\n').slice(-10);
  }
  return row;
}

// ---- the run ----
async function main() {
  const t0 = performance.now();
  const cpu = cpus();
  const machine = {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    loadAverageAtStart: loadavg().map((x) => round(x, 2)).join(' '),
  };

  // the vendor key the servers issue licences with (unencrypted: no passphrase prompt)
  const keys = join(tmpRoot, 'keys');
  const kg = spawnSync(process.execPath, [BIN, 'keygen', '-o', keys, '--name', 'vendor', '--unencrypted', '--json'], { encoding: 'utf8', env: serverEnv });
  if (kg.status !== 0) throw new Error(`mlic keygen failed: ${kg.stderr || kg.stdout}`);
  const keyFile = join(keys, 'vendor.key');

  // rate limits measure nothing here: off, where the server has them
  const help = spawnSync(process.execPath, [BIN, 'server', 'start', '--help'], { encoding: 'utf8', env: serverEnv }).stdout;
  const hasRateLimits = help.includes('--rate-limit-key') && help.includes('--rate-limit-address');
  const rateLimitArgs = hasRateLimits ? ['--rate-limit-key', '0', '--rate-limit-address', '0'] : [];
  const rateLimits = hasRateLimits ? 'disabled for this run (--rate-limit-key 0 --rate-limit-address 0)' : 'the server has no rate-limit options (none to disable)';
  note(`rate limits: ${rateLimits}`);

  // every activation request before any timing: warm-up, two closed loops, the half-rate phase
  const need = WARMUP_ACTIVATIONS + REQUESTS * (ACTIVATION_CONCURRENCY.length + 1);
  const g0 = performance.now();
  const requests = Array.from({ length: need }, (_, i) => activationRequest(i));
  note(`made ${need} signed activation requests in ${round((performance.now() - g0) / 1000, 1)} s`);

  const rows = [];
  for (const kind of DATABASES) {
    try {
      rows.push(await benchDatabase(kind, requests, keyFile, rateLimitArgs));
    } catch (e) {
      // one database failing does not lose the other's figures
      note(`${kind}: failed: ${e.stack ?? e.message}`);
      rows.push({ database: kind, measured: false, failed: true, why: `the run failed: ${e.message}` });
    }
  }

  const sqlite = rows.find((r) => r.database === 'sqlite' && r.measured);
  // a goal judged on a phase that another workload disturbed says so (its verdict may be wrong)
  const judged = (goal, phase, measured, met) => ({ goal, measured, met, ...(phase.cpu?.otherPct > 10 ? { disturbedByOtherProcessesPct: phase.cpu.otherPct } : {}) });
  const goals = sqlite
    ? {
        activationsPerSecond: judged(GOALS.activationsPerSecond, sqlite.activations.best, sqlite.activations.best.perSecond, sqlite.activations.best.perSecond >= GOALS.activationsPerSecond),
        activationP99AtHalfRateMs: judged(GOALS.p99AtHalfRateMs, sqlite.activations.halfRate, sqlite.activations.halfRate.p99Ms, sqlite.activations.halfRate.p99Ms < GOALS.p99AtHalfRateMs),
        listPerSecond: sqlite.list.builtYet
          ? judged(GOALS.listPerSecond, sqlite.list.closed, sqlite.list.closed.perSecond, sqlite.list.closed.perSecond >= GOALS.listPerSecond)
          : { goal: GOALS.listPerSecond, measured: null, met: null, why: `${sqlite.list.why}; /healthz stand-in: ${sqlite.list.closed.perSecond}/s` },
        listP99AtHalfRateMs: sqlite.list.builtYet
          ? judged(GOALS.p99AtHalfRateMs, sqlite.list.halfRate, sqlite.list.halfRate.p99Ms, sqlite.list.halfRate.p99Ms < GOALS.p99AtHalfRateMs)
          : { goal: GOALS.p99AtHalfRateMs, measured: null, met: null, why: 'not built yet' },
        renewalsPerSecond: sqlite.leases?.measured
          ? judged(GOALS.renewalsPerSecond, sqlite.leases.best, sqlite.leases.best.perSecond, sqlite.leases.best.perSecond >= GOALS.renewalsPerSecond)
          : { goal: GOALS.renewalsPerSecond, measured: null, met: null, why: sqlite.leases?.why ?? 'not run' },
        validatePerSecond: sqlite.validate?.measured
          ? judged(GOALS.validatePerSecond, sqlite.validate.calls, sqlite.validate.calls.perSecond, sqlite.validate.calls.perSecond >= GOALS.validatePerSecond)
          : { goal: GOALS.validatePerSecond, measured: null, met: null, why: sqlite.validate?.why ?? 'not run' },
      }
    : undefined;
  const result = {
    machine,
    note: `the load generator runs in the same invocation, sharing the ${machine.cores} CPU cores with the server${rows.some((r) => r.database === 'postgres' && r.measured) ? ' (and PostgreSQL)' : ''}`,
    rateLimits,
    requestsPerPhase: { activations: REQUESTS, list: LIST_REQUESTS, renewals: RENEWALS, reservations: RESERVATIONS, validateCalls: VALIDATE_CALLS, maxSeconds: PHASE_SECONDS },
    results: rows,
    goals,
    seconds: round((performance.now() - t0) / 1000, 1),
  };
  if (JSON_OUT) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else printTable(result);
  return rows.some((r) => r.failed || r.leases?.failed || r.reservations?.failed || r.validate?.failed);
}

function printTable(r) {
  const out = (s = '') => process.stdout.write(`${s}\n`);
  const ms = (x) => (x === null || x === undefined ? '-' : `${x} ms`);
  out(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, ${r.machine.os}, Node ${r.machine.node}; load average at the start ${r.machine.loadAverageAtStart}`);
  out(`note: ${r.note}`);
  out(`rate limits: ${r.rateLimits}`);
  out();
  const head = ['database', 'activations/s', 'p50', 'p99', 'p99 @ half rate', 'list fetches/s', 'p50', 'p99', 'p99 @ half rate'];
  const lines = [head];
  const head2 = ['database', 'lease renewals/s', 'p50', 'p99', 'reservations/s', 'p50', 'p99', 'validate()/s', 'p50', 'p99'];
  const lines2 = [head2];
  const notes = [];
  const us = (x) => (x === null || x === undefined ? '-' : `${x} µs`);
  const perRequest = (c) =>
    c.serverMsPerRequest !== undefined ? ` (CPU a request: server ${c.serverMsPerRequest} ms${c.postgresMsPerRequest !== undefined ? `, PostgreSQL ${c.postgresMsPerRequest} ms` : ''}, bench ${c.benchMsPerRequest} ms)` : '';
  const cpu = (c) => (c ? `; CPU: bench ${c.benchPct}%, server ${c.serverPct}%${c.postgresPct !== undefined ? `, PostgreSQL ${c.postgresPct}%` : ''}, other processes ${c.otherPct}%, interrupts ${c.interruptsPct}%, steal ${c.stealPct}% of the machine${perRequest(c)}` : '');
  const phase = (label, v) => `  ${label}: ${v.ok}/${v.completed} ok in ${v.seconds} s = ${v.perSecond}/s${v.targetPerSecond ? ` (target ${v.targetPerSecond}/s)` : ''}, p50 ${v.p50Ms} ms, p99 ${v.p99Ms} ms, max ${v.maxMs} ms${v.timeBound ? ', stopped by the time limit' : ''}${cpu(v.cpu)}`;
  let contended = 0;
  for (const row of r.results) {
    if (!row.measured) {
      lines.push([row.database, 'not measured', '', '', '', '', '', '', '']);
      lines2.push([row.database, 'not measured', '', '', '', '', '', '', '', '']);
      notes.push(`${row.database}: not measured: ${row.why}`);
      continue;
    }
    const a = row.activations;
    const l = row.list;
    const star = l.builtYet ? '' : ' *';
    lines.push([
      row.database,
      `${a.best.perSecond} (${a.best.concurrency} in flight)`,
      ms(a.best.p50Ms),
      ms(a.best.p99Ms),
      `${ms(a.halfRate.p99Ms)} at ${a.halfRate.targetPerSecond}/s`,
      `${l.closed.perSecond}${star}`,
      ms(l.closed.p50Ms),
      ms(l.closed.p99Ms),
      `${ms(l.halfRate.p99Ms)} at ${l.halfRate.targetPerSecond}/s`,
    ]);
    notes.push(`${row.database}${row.version ? ` (${row.version})` : ''}:`);
    for (const v of a.closed) notes.push(phase(`activations, ${v.concurrency} in flight`, v));
    notes.push(phase('activations at half rate (open loop)', a.halfRate));
    if (a.postgresTransactions) notes.push(`  PostgreSQL transactions during the activations: ${a.postgresTransactions.commits} commits, ${a.postgresTransactions.rollbacks} rollbacks (SERIALIZABLE conflicts retried by the server) for ${a.postgresTransactions.activations} activations`);
    if (!l.builtYet) notes.push(`  * ${l.why}: GET /healthz measured in its place (one database round trip, no signature)`);
    else notes.push(`  the revocation list fetched: ${l.bytes} bytes, ${l.entries ?? '?'} revoked licences`);
    notes.push(phase(`GET ${l.route}, ${l.closed.concurrency} in flight`, l.closed));
    notes.push(phase(`GET ${l.route} at half rate (open loop)`, l.halfRate));
    for (const [what, v] of [['warm-up', row.warmup], ...a.closed.map((v) => [`${v.concurrency} in flight`, v]), ['half rate', a.halfRate], ['list', l.closed], ['list at half rate', l.halfRate]])
      if (Object.keys(v.errors).length) notes.push(`  errors (${what}): ${JSON.stringify(v.errors)}`);
    // floating seats, fleet quotas, validate() in this process
    const le = row.leases;
    const rs = row.reservations;
    const va = row.validate;
    const closedCells = (x) => (x?.measured ? [`${x.best.perSecond} (${x.best.concurrency} in flight)`, ms(x.best.p50Ms), ms(x.best.p99Ms)] : ['failed', '', '']);
    lines2.push([row.database, ...closedCells(le), ...closedCells(rs), ...(va?.measured ? [String(va.calls.perSecond), us(va.calls.p50Us), us(va.calls.p99Us)] : ['failed', '', ''])]);
    if (le?.measured) {
      notes.push(`  lease renewals: ${le.hosts} hosts, one lease each (${le.seats} ${le.unit} seats, ${le.leaseSeconds} s leases), each renewed in turn`);
      for (const v of le.closed) notes.push(phase(`lease renewals, ${v.concurrency} in flight`, v));
      if (le.postgresTransactions) notes.push(`  PostgreSQL transactions during the renewals: ${le.postgresTransactions.commits} commits, ${le.postgresTransactions.rollbacks} rollbacks for ${le.postgresTransactions.requests} renewals`);
    } else notes.push(`  lease renewals: not measured: ${le?.why ?? 'not run'}`);
    if (rs?.measured) {
      notes.push(`  reservations: ${rs.hosts} hosts on a fleet meter (${rs.meter.metric}, limit ${rs.meter.limit} a ${rs.meter.period}), ${rs.amount} units a request, a new request id each`);
      for (const v of rs.closed) notes.push(phase(`reservations, ${v.concurrency} in flight`, v));
      if (rs.postgresTransactions) notes.push(`  PostgreSQL transactions during the reservations: ${rs.postgresTransactions.commits} commits, ${rs.postgresTransactions.rollbacks} rollbacks for ${rs.postgresTransactions.requests} reservations`);
    } else notes.push(`  reservations: not measured: ${rs?.why ?? 'not run'}`);
    if (va?.measured) {
      const v = va.calls;
      notes.push(
        `  validate({ meter: inferences x1 }) in this process, one call at a time: ${v.ok}/${v.completed} ok in ${v.seconds} s = ${v.perSecond}/s, p50 ${v.p50Us} µs, p99 ${v.p99Us} µs, max ${v.maxUs} µs${v.timeBound ? ', stopped by the time limit' : ''}; ${v.serverReservations} reservations from the server during the phase; the ledger shows ${va.ledgerUsed} used; close() took ${va.closeMs} ms${cpu(v.cpu)}`,
      );
    } else notes.push(`  validate() in this process: not measured: ${va?.why ?? 'not run'}`);
    for (const [what, v] of [
      ...(le?.measured ? [['renewal warm-up', le.warmup], ...le.closed.map((v) => [`renewals, ${v.concurrency} in flight`, v])] : []),
      ...(rs?.measured ? [['reservation warm-up', rs.warmup], ...rs.closed.map((v) => [`reservations, ${v.concurrency} in flight`, v])] : []),
      ...(va?.measured ? [['validate() warm-up', va.warmup], ['validate()', va.calls]] : []),
    ])
      if (Object.keys(v.errors).length) notes.push(`  errors (${what}): ${JSON.stringify(v.errors)}`);
    for (const v of [...(le?.measured ? le.closed : []), ...(rs?.measured ? rs.closed : []), ...(va?.measured ? [va.calls] : [])]) contended = Math.max(contended, v.cpu?.otherPct ?? 0);
    const fives = Object.entries(row.serverStatuses).flatMap(([route, st]) => Object.entries(st).filter(([code]) => code >= 500).map(([code, n]) => `${route} ${code} x${n}`));
    if (fives.length) notes.push(`  the server's access log has: ${fives.join(', ')}`);
    if (row.serverExit !== 0) notes.push(`  the server exited with ${row.serverExit} on SIGTERM`);
    if (row.serverStderr) notes.push(`  server stderr (last lines): ${row.serverStderr.join(' | ')}`);
    for (const v of [...a.closed, a.halfRate, l.closed, l.halfRate]) contended = Math.max(contended, v.cpu?.otherPct ?? 0);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  for (const [n, l] of lines.entries()) {
    out(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
    if (n === 0) out(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  out('(activations/s, p50, p99: the closed loop with the better rate; p99 @ half rate: open loop at half that rate, from each scheduled start)');
  out();
  const widths2 = head2.map((_, i) => Math.max(...lines2.map((l) => l[i].length)));
  for (const [n, l] of lines2.entries()) {
    out(l.map((c, i) => (i === 0 ? c.padEnd(widths2[i]) : c.padStart(widths2[i]))).join('  '));
    if (n === 0) out(widths2.map((w) => '-'.repeat(w)).join('  '));
  }
  out('(lease renewals/s, reservations/s, p50, p99: the closed loop with the better rate; validate()/s: in this process, with a fleet meter, one call at a time)');
  out();
  for (const f of notes) out(f);
  if (contended > 10) out(`\nWARNING: other processes used up to ${contended}% of the machine during a phase: these figures are low; run again on a quiet machine`);
  if (r.goals) {
    out();
    out('goals (SQLite):');
    const g = r.goals;
    const verdict = (x) =>
      (x.met === null ? `not measured (${x.why})` : x.met ? 'met' : 'NOT met') + (x.disturbedByOtherProcessesPct ? ` (disturbed: other processes used ${x.disturbedByOtherProcessesPct}% of the machine in that phase)` : '');
    const val = (x, unit) => (x.measured === null ? '-' : `${x.measured}${unit}`);
    out(`  activations/s >= ${g.activationsPerSecond.goal}: ${val(g.activationsPerSecond, '/s')}, ${verdict(g.activationsPerSecond)}`);
    out(`  activation p99 at half rate < ${g.activationP99AtHalfRateMs.goal} ms: ${val(g.activationP99AtHalfRateMs, ' ms')}, ${verdict(g.activationP99AtHalfRateMs)}`);
    out(`  list fetches/s >= ${g.listPerSecond.goal}: ${val(g.listPerSecond, '/s')}, ${verdict(g.listPerSecond)}`);
    out(`  list p99 at half rate < ${g.listP99AtHalfRateMs.goal} ms: ${val(g.listP99AtHalfRateMs, ' ms')}, ${verdict(g.listP99AtHalfRateMs)}`);
    out(`  lease renewals/s >= ${g.renewalsPerSecond.goal}: ${val(g.renewalsPerSecond, '/s')}, ${verdict(g.renewalsPerSecond)}`);
    out(`  validate()/s with a fleet meter, in process >= ${g.validatePerSecond.goal}: ${val(g.validatePerSecond, '/s')}, ${verdict(g.validatePerSecond)}`);
  }
  out();
  out(`run took ${r.seconds} s`);
}

let code = 0;
try {
  if (await main()) code = 1;
} catch (e) {
  note(`bench-server: ${e.stack ?? e.message}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
