/**
 * The licence server killed with SIGKILL while activations are in flight, then restarted on the
 * same data directory / database: no acknowledged activation is lost, no slot is counted twice,
 * and a request whose answer was lost in the kill either committed (its retry is then a re-issue
 * that takes no slot) or left nothing behind. Checked against the database's own rows, right
 * after the kill (before a server touches the database again) and at the end.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import BetterSqlite3 from 'better-sqlite3';
import { encodeSecretKey } from '../../src/keys/vendor.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { parseLicenseText, type ActivationRequest } from '../../src/format/license.js';
import { key, tmp } from '../helpers.js';
import { fakeHost } from '../license/hosts.js';
import { KINDS, dbRows, freshServerPlace, type Kind } from './databases.js';
import { startServer, stop, type Running } from './process.js';

/** maxHosts of the entitlement; distinct hosts that try to activate; requests in flight at once */
const M = 60;
const K = 150;
const IN_FLIGHT = 24;
/** the server is killed once this many activations have been acknowledged */
const KILL_AFTER_ACKS = 24;
/** hosts 0..REACTIVATE-1 send a second (re-activation) request once their first one is acknowledged */
const REACTIVATE = 8;
/**
 * hosts whose first request goes, before the others, through a proxy that keeps the server's
 * answer back and drops it at the kill: requests that certainly committed without their client
 * hearing of it
 */
const LOSSY = new Set([9, 12, 17, 23, 30]);

interface HostRow {
  host_key: string;
  license_id: string;
  deactivated_at: number | null;
}

/** The entitlement's host rows, read from the database directly (not through the API). */
async function hostRows(kind: Kind, dataDir: string, url: string | undefined, entitlementId: string): Promise<HostRow[]> {
  const sql = 'SELECT host_key, license_id, deactivated_at FROM hosts WHERE entitlement_id = $1 ORDER BY host_key';
  if (kind === 'sqlite') {
    const db = new BetterSqlite3(join(dataDir, 'mlic.db'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql.replace('$1', '?')).all(entitlementId) as HostRow[];
    } finally {
      db.close();
    }
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<HostRow>(sql, [entitlementId])).rows;
  } finally {
    await c.end();
  }
}

/**
 * PostgreSQL: waits until no session of a killed server is left on its database, so that a
 * COMMIT it had already sent has been carried out (or rolled back) before the rows are read.
 */
async function untilNoOtherSessions(url: string, deadline: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (;;) {
      const n = Number((await c.query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")).rows[0].n);
      if (n === 0) return;
      if (Date.now() > deadline) throw new Error(`${n} sessions of the killed server are still open on its database`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await c.end();
  }
}

/**
 * A TCP proxy to the server that passes requests on at once but keeps the server's answers back
 * (each connection carries one request: its answer never completes, so the client does not reuse
 * it); drop() closes the clients' connections, as a kill would with answers still unsent.
 * onAnswer is told of each answer the server has sent (its status line, and what has come of it so far).
 */
async function holdingProxy(target: string, onAnswer: (statusLine: string, answer: string) => void): Promise<{ url: string; drop: () => void; close: () => Promise<void> }> {
  const t = new URL(target);
  const clients = new Set<Socket>();
  const server = createServer((c) => {
    clients.add(c);
    const u = connect(Number(t.port), t.hostname);
    let answer = '';
    u.on('data', (d: Buffer) => {
      const told = answer.includes('\r\n');
      answer += d.toString('latin1');
      if (!told && answer.includes('\r\n')) onAnswer(answer.slice(0, answer.indexOf('\r\n')), answer);
    });
    c.on('data', (d: Buffer) => u.write(d));
    u.on('error', () => c.destroy());
    u.on('close', () => c.destroy());
    c.on('error', () => u.destroy());
    c.on('close', () => {
      clients.delete(c);
      u.destroy();
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    drop: () => {
      for (const c of clients) c.destroy();
    },
    close: () => new Promise((res) => server.close(() => res())),
  };
}

async function entitle(s: Running, maxHosts: number): Promise<{ id: string; licenseKey: string }> {
  const r = await fetch(`${s.url}/v1/entitlements`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.first.adminToken as string}`, 'content-type': 'application/json' },
    body: JSON.stringify({ customer: 'globex', model: 'resnet', terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' }, maxHosts }),
  });
  expect(r.status).toBe(201);
  const j = (await r.json()) as { entitlement: { id: string }; licenseKey: string };
  return { id: j.entitlement.id, licenseKey: j.licenseKey };
}

interface Job {
  host: number;
  text: string;
  requestId: string;
  what: 'first' | 'reactivation' | 'retry' | 'again';
}

type Outcome =
  | { job: Job; phase: 1 | 2 | 3; kind: 'ack'; status: 200 | 201; licenseId: string; reissued: boolean }
  | { job: Job; phase: 1 | 2 | 3; kind: 'refused'; status: number; code: string }
  | { job: Job; phase: 1 | 2 | 3; kind: 'lost'; error: string }
  | { job: Job; phase: 1 | 2 | 3; kind: 'unexpected'; detail: string };

/** One activation, its outcome as a client sees it: acknowledged with a licence, refused with a code, or lost. */
async function send(base: string, licenseKey: string, job: Job, hostKey: string, phase: 1 | 2 | 3): Promise<Outcome> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${base}/v1/activations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ licenseKey, request: job.text }),
      signal: AbortSignal.timeout(20_000),
    });
    text = await res.text();
  } catch (e) {
    const c = (e as { cause?: { code?: string; message?: string } }).cause;
    return { job, phase, kind: 'lost', error: c?.code ?? c?.message ?? (e as Error).message };
  }
  let body: { license?: string; licenseId?: string; reissued?: boolean; error?: { code?: string } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    return { job, phase, kind: 'unexpected', detail: `${res.status} ${text.slice(0, 200)}` };
  }
  if (res.status === 200 || res.status === 201) {
    // the licence the client received: bound to this host and this request, with the id the body names
    const l = parseLicenseText(body.license ?? '').payload;
    const bound = l.host.binding === 'host' ? l.host : undefined;
    if (l.licenseId !== body.licenseId || bound?.publicKey !== hostKey || bound.requestId !== job.requestId || body.reissued !== (res.status === 200))
      return { job, phase, kind: 'unexpected', detail: `${res.status}: a licence that does not match its answer or request: ${text.slice(0, 200)}` };
    return { job, phase, kind: 'ack', status: res.status, licenseId: l.licenseId, reissued: body.reissued };
  }
  if (res.status === 403 && body.error?.code === 'HOST_LIMIT_REACHED') return { job, phase, kind: 'refused', status: res.status, code: body.error.code };
  return { job, phase, kind: 'unexpected', detail: `${res.status} ${text.slice(0, 300)}` };
}

describe.each(KINDS)('kill -9 during activations on %s', (kind) => {
  // a server left running by a failed test
  const live: Running[] = [];
  afterEach(() => {
    for (const r of live.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  });

  it(`loses no acknowledged activation and counts no slot twice (maxHosts ${M}, ${K} hosts, ${IN_FLIGHT} in flight, SIGKILL after ${KILL_AFTER_ACKS} acknowledgements and ${LOSSY.size} answers lost in the network)`, async () => {
    const t0 = Date.now();
    const deadline = t0 + 50_000;
    const d = await tmp();
    const keyFile = join(d, 'acme.key');
    await writeFile(keyFile, await encodeSecretKey(key('acme'), undefined), { mode: 0o600 });
    const place = await freshServerPlace(kind);
    // no rate limits: this is about crashes, and every request here comes from one address with one key
    const args = ['--data', place.dataDir, ...(place.url ? ['--database', place.url] : []), '--key', keyFile, '--rate-limit-key', '0', '--rate-limit-address', '0'];
    const rows = () => hostRows(kind, place.dataDir, place.url, ent.id);

    // K distinct hosts, each with its activation request; the first REACTIVATE hosts also with a second one
    const first: ActivationRequest[] = [];
    const second: ActivationRequest[] = [];
    for (let i = 0; i < K; i++) {
      const h = await fakeHost(`c${i}`);
      first.push((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      if (i < REACTIVATE) {
        const again = await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() });
        expect(again.reused).toBe(true);
        second.push(again.request);
      }
    }
    const hostKey = first.map((r) => r.payload.hostPublicKey);
    expect(new Set(hostKey).size).toBe(K);
    const hostOf = new Map(hostKey.map((k, i) => [k, i]));
    const job = (host: number, r: ActivationRequest, what: Job['what']): Job => ({ host, text: JSON.stringify(r), requestId: r.payload.requestId, what });
    const tPrepared = Date.now();

    let s = await startServer(args);
    live.push(s);
    const ent = await entitle(s, M);
    const outcomes: Outcome[] = [];
    const reactivated = new Set<number>();

    /**
     * Sends the queue's jobs, IN_FLIGHT at a time, one at a time per host (a host's next job waits
     * for its previous answer), each to via(job) (the server, or the proxy in front of it). No job
     * starts once run.stopped.
     */
    const run = { inFlight: new Set<Job>(), stopped: false };
    const fire = async (queue: Job[], phase: 1 | 2, via: (j: Job) => string, onAnswer: (o: Outcome) => void = () => undefined) => {
      run.stopped = false;
      const worker = async () => {
        while (!run.stopped) {
          const j = queue.shift();
          if (!j) return;
          run.inFlight.add(j);
          const o = await send(via(j), ent.licenseKey, j, hostKey[j.host]!, phase);
          run.inFlight.delete(j);
          outcomes.push(o);
          if (run.stopped) continue;
          onAnswer(o);
          // a re-activation once the host's first activation is acknowledged (one per host)
          if (o.kind === 'ack' && o.job.what !== 'reactivation' && o.job.host < REACTIVATE && !reactivated.has(o.job.host)) {
            reactivated.add(o.job.host);
            queue.unshift(job(o.job.host, second[o.job.host]!, 'reactivation'));
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    };

    // 1. first the LOSSY hosts' requests, through the proxy: the server commits and answers them, the
    // proxy keeps the answers. Then the other hosts' until KILL_AFTER_ACKS are acknowledged, and
    // SIGKILL with the rest in flight; the proxy drops the answers it kept.
    const held: string[] = [];
    const heldAnswers: string[] = [];
    let allHeld!: () => void;
    const heldAll = new Promise<void>((res) => (allHeld = res));
    const proxy = await holdingProxy(s.url, (statusLine, answer) => {
      held.push(statusLine);
      heldAnswers.push(answer);
      if (held.length === LOSSY.size) allHeld();
    });
    const lossy = [...LOSSY].map(async (h) => {
      const j = job(h, first[h]!, 'first');
      run.inFlight.add(j);
      const o = await send(proxy.url, ent.licenseKey, j, hostKey[h]!, 1);
      run.inFlight.delete(j);
      outcomes.push(o);
    });
    await heldAll;
    // the server answered each of them with a new activation (so it had committed it)
    expect(held, heldAnswers.join('\n')).toEqual([...LOSSY].map(() => 'HTTP/1.1 201 Created'));
    let acks = 0;
    let inFlightAtKill = new Set<Job>();
    await fire(
      first.map((r, i) => job(i, r, 'first')).filter((j) => !LOSSY.has(j.host)),
      1,
      () => s.url,
      (o) => {
        if (o.kind !== 'ack' || ++acks < KILL_AFTER_ACKS) return;
        s.child.kill('SIGKILL');
        proxy.drop();
        run.stopped = true;
        inFlightAtKill = new Set(run.inFlight);
      },
    );
    await Promise.all(lossy);
    await proxy.close();
    expect(await s.exited).toBe(null);
    expect(s.child.signalCode).toBe('SIGKILL');
    expect(s.stderr(), 'the server logged an error before it was killed').toBe('');
    const tKilled = Date.now();
    const phase1 = outcomes.filter((o) => o.phase === 1);
    expect(phase1.filter((o) => o.kind === 'unexpected')).toEqual([]);
    const lost1 = phase1.filter((o) => o.kind === 'lost');
    // only the requests in flight at the kill can have lost their answers (each, by then, was sent)
    expect(lost1.every((o) => inFlightAtKill.has(o.job))).toBe(true);
    expect(lost1.length + phase1.filter((o) => o.kind !== 'lost' && inFlightAtKill.has(o.job)).length).toBe(inFlightAtKill.size);

    // the database as the kill left it, before any server opens it again
    if (kind === 'postgres') await untilNoOtherSessions(place.url!, deadline);
    const atKill = await rows();
    const lastAck = new Map<number, string>(); // host -> the licence id of its latest acknowledged activation
    for (const o of phase1) if (o.kind === 'ack') lastAck.set(o.job.host, o.licenseId);
    const lostHosts = new Set(lost1.map((o) => o.job.host));
    const rowOf = new Map(atKill.map((r) => [r.host_key, r]));
    expect(rowOf.size, 'a host key twice for the entitlement').toBe(atKill.length);
    expect(atKill.every((r) => r.deactivated_at === null && hostOf.has(r.host_key))).toBe(true);
    expect(atKill.length, 'active hosts after the kill').toBeLessThanOrEqual(M);
    // every acknowledged activation is there, with the licence id its client received, unless a
    // later re-activation of that host was in flight at the kill (then it may hold that one's id)
    for (const [h, id] of lastAck) {
      const r = rowOf.get(hostKey[h]!);
      expect(r, `host ${h} was acknowledged (${id}) but has no row after the kill`).toBeDefined();
      if (r!.license_id !== id) expect(lostHosts.has(h), `host ${h}: its row holds ${r!.license_id}, its client received ${id}`).toBe(true);
    }
    // every row is an acknowledged host's, or one whose request was in flight at the kill (committed, never answered)
    const committedUnheard = new Set<number>(); // hosts whose lost request committed before the kill
    for (const r of atKill) {
      const h = hostOf.get(r.host_key)!;
      if (lastAck.get(h) === r.license_id) continue;
      expect(lostHosts.has(h), `host ${h} has a row (${r.license_id}) that no client was told of and no request in flight at the kill explains`).toBe(true);
      committedUnheard.add(h);
    }
    // the requests whose answers the proxy dropped committed: each has its row, and no client heard of it
    for (const h of LOSSY) expect(committedUnheard.has(h), `host ${h}: answered 201 into the proxy, but no row after the kill`).toBe(true);
    const tChecked = Date.now();

    // 2. a new server on the same data: the lost requests retried (a client would), then the hosts that never sent, until the entitlement is full
    s = await startServer(args);
    live.push(s);
    const queue2 = [...lost1.map((o) => ({ ...o.job, what: 'retry' as const })), ...first.map((r, i) => job(i, r, 'first')).filter((j) => !phase1.some((o) => o.job.host === j.host))];
    await fire(queue2, 2, () => s.url);
    const phase2 = outcomes.filter((o) => o.phase === 2);
    expect(phase2.filter((o) => o.kind !== 'ack' && o.kind !== 'refused')).toEqual([]);
    // a retried request that had committed is a re-issue; one that had not is a new activation (or a refusal, when full)
    for (const o of phase2.filter((x) => x.job.what === 'retry')) {
      const was = rowOf.get(hostKey[o.job.host]!);
      if (was) expect([o.kind, o.kind === 'ack' && o.status], `retry of host ${o.job.host}, whose row the kill left`).toEqual(['ack', 200]);
      else expect(o.kind === 'refused' || (o.kind === 'ack' && o.status === 201), `retry of host ${o.job.host}, which had no row: ${JSON.stringify(o)}`).toBe(true);
    }

    // every host has had its answer; the database's rows are exactly the acknowledged hosts, each with the last licence its client received
    const all = outcomes.filter((o) => o.kind === 'ack' || o.kind === 'refused');
    const last = new Map<number, Outcome>();
    for (const o of all) last.set(o.job.host, o);
    expect(last.size).toBe(K);
    const ackedHosts = [...last].filter(([, o]) => o.kind === 'ack').map(([h]) => h);
    const end = await rows();
    expect(end.every((r) => r.deactivated_at === null)).toBe(true);
    expect(new Set(end.map((r) => r.host_key)).size, 'a host key twice for the entitlement').toBe(end.length);
    expect(end.length, 'active hosts in the database').toBe(Math.min(M, ackedHosts.length));
    expect(ackedHosts.length, 'hosts acknowledged').toBe(M);
    const endOf = new Map(end.map((r) => [r.host_key, r.license_id]));
    for (const h of ackedHosts) expect(endOf.get(hostKey[h]!), `host ${h}`).toBe((last.get(h) as Outcome & { kind: 'ack' }).licenseId);
    // a slot was taken once per host: by a 201, or by a request that committed without being answered
    const created = all.filter((o) => o.kind === 'ack' && o.status === 201);
    expect(new Set(created.map((o) => o.job.host)).size).toBe(created.length);
    expect(created.length + [...committedUnheard].filter((h) => !phase1.some((o) => o.job.host === h && o.kind === 'ack')).length).toBe(M);
    // the hosts refused never got a row, and were refused for the limit
    for (const [h, o] of last) if (o.kind === 'refused') expect(endOf.has(hostKey[h]!), `refused host ${h} has a row`).toBe(false);

    // 3. the entitlement is full: acknowledged hosts activating again (from before and after the kill) are re-issued, without a slot
    const before = ackedHosts.filter((h) => lastAck.has(h)).slice(0, 3);
    const after = ackedHosts.filter((h) => !lastAck.has(h)).slice(-3);
    const refusedHost = [...last].find(([, o]) => o.kind === 'refused')![0];
    for (const h of [...before, ...after]) {
      const o = await send(s.url, ent.licenseKey, job(h, first[h]!, 'again'), hostKey[h]!, 3);
      expect(o.kind === 'ack' && o.status === 200 && o.reissued, `re-activation of host ${h}: ${JSON.stringify(o)}`).toBe(true);
      const r = (await rows()).find((x) => x.host_key === hostKey[h]);
      expect(r?.license_id).toBe((o as Outcome & { kind: 'ack' }).licenseId);
    }
    const no = await send(s.url, ent.licenseKey, job(refusedHost, first[refusedHost]!, 'again'), hostKey[refusedHost]!, 3);
    expect(no.kind === 'refused' && no.code).toBe('HOST_LIMIT_REACHED');
    expect((await rows()).filter((r) => r.deactivated_at === null)).toHaveLength(M);

    expect(await stop(s)).toBe(0);
    expect(s.stderr(), 'the restarted server logged an error').toBe('');
    const tEnd = Date.now();
    console.log(
      `${kind}: prepared ${K} requests in ${tPrepared - t0} ms; before the kill: ${phase1.filter((o) => o.kind === 'ack').length} acknowledged, ${phase1.filter((o) => o.kind === 'refused').length} refused, ${lost1.length} lost (${[...new Set(lost1.map((o) => (o as { error: string }).error))].join(', ')}) of ${inFlightAtKill.size} in flight; ${committedUnheard.size} committed without an answer; after the restart: ${phase2.filter((o) => o.kind === 'ack').length} acknowledged, ${phase2.filter((o) => o.kind === 'refused').length} refused; kill ${tKilled - tPrepared} ms, check ${tChecked - tKilled} ms, restart to end ${tEnd - tChecked} ms`,
    );
  }, 60_000);
});

describe.each(KINDS)('kill -9 during revocations on %s', (kind) => {
  const live: Running[] = [];
  afterEach(() => {
    for (const r of live.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  });

  it('loses no acknowledged revocation; serials stay one per change; the list after the restart names every acknowledged one', async () => {
    const d = await tmp();
    const keyFile = join(d, 'acme.key');
    await writeFile(keyFile, await encodeSecretKey(key('acme'), undefined), { mode: 0o600 });
    const place = await freshServerPlace(kind);
    const args = ['--data', place.dataDir, ...(place.url ? ['--database', place.url] : []), '--key', keyFile, '--rate-limit-key', '0', '--rate-limit-address', '0'];
    let s = await startServer(args);
    live.push(s);
    const ent = await entitle(s, 100);
    const N = 60;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const h = await fakeHost(`rv${i}`);
      const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      const res = await fetch(`${s.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: ent.licenseKey, request }) });
      expect(res.status).toBe(201);
      ids.push(((await res.json()) as { licenseId: string }).licenseId);
    }
    const token = s.first.adminToken as string;
    const acked = new Map<string, number>(); // licence id -> serial answered
    const lost: string[] = [];
    const already: string[] = [];
    let killed = false;
    const revokeOne = async (base: string, licenseId: string) => {
      try {
        const res = await fetch(`${base}/v1/revocations`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ licenseId }) });
        const body = (await res.json()) as { revoked: string[]; serial: number };
        expect(res.status).toBe(200);
        // newly revoked: with the serial of that change; already revoked (a retry of one whose answer was lost): it must be in the database
        if (body.revoked.includes(licenseId)) acked.set(licenseId, body.serial);
        else already.push(licenseId);
        if (!killed && acked.size + already.length >= 15) {
          killed = true;
          s.child.kill('SIGKILL');
        }
      } catch {
        lost.push(licenseId);
      }
    };
    // 12 in flight at a time
    let next = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < N) {
          const id = ids[next++]!;
          if (killed) {
            lost.push(id);
            continue;
          }
          await revokeOne(s.url, id);
        }
      }),
    );
    expect(killed).toBe(true);
    await s.exited;
    if (place.url) await untilNoOtherSessions(place.url, Date.now() + 20_000);
    const check = async () => {
      const revoked = await dbRows<{ id: string; listed_serial: number | string }>(kind, place.dataDir, place.url, 'SELECT id, listed_serial FROM licenses WHERE revoked_at IS NOT NULL');
      const [st] = await dbRows<{ serial: number | string }>(kind, place.dataDir, place.url, 'SELECT serial FROM revocation_state');
      const byId = new Map(revoked.map((r) => [r.id, Number(r.listed_serial)]));
      // every acknowledged revocation is in the database with the serial its client was told
      for (const [id, serial] of acked) expect(byId.get(id), `acknowledged revocation of ${id}`).toBe(serial);
      for (const id of already) expect(byId.has(id), `revocation of ${id} answered as done before`).toBe(true);
      // one serial per change, no two licences share one, and the state row is the highest
      const serials = [...byId.values()].sort((a, b) => a - b);
      expect(new Set(serials).size).toBe(serials.length);
      expect(Number(st!.serial)).toBe(serials.at(-1));
      // whatever else committed was in flight at the kill
      for (const id of byId.keys()) expect(acked.has(id) || lost.includes(id), `revocation of ${id} nobody sent`).toBe(true);
      return byId;
    };
    await check();
    // restart: retry the lost ones; the list names every revoked licence, once
    s = await startServer(args);
    live.push(s);
    for (const id of lost) await revokeOne(s.url, id);
    const byId = await check();
    expect(byId.size).toBe(N);
    const highest = Math.max(...byId.values());
    const list = JSON.parse(await (await fetch(`${s.url}/v1/revocations`)).text()) as { payload: { serial: number; licenses: { id: string }[] } };
    expect(list.payload.serial).toBe(highest);
    expect(list.payload.licenses.map((x) => x.id).sort()).toEqual([...ids].sort());
    expect(await stop(s)).toBe(0);
  }, 90_000);
});
