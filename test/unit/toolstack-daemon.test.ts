// pvbox daemon: the JSON management API over the registry; it keeps no state, so a restarted daemon lists the running domains again; requests it cannot serve and a daemon that is not running are one-line errors.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PVBOX } from '../guest/harness.js';
import { daemonPidPath, daemonRequest, daemonSocketPath } from '../../src/toolstack/daemon.js';
import type { DomainRecord } from '../../src/toolstack/registry.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-daemon-'));
const env = { ...process.env, PVBOX_RUNDIR: join(dir, 'run') };
const sock = daemonSocketPath(env);
const children: ChildProcess[] = [];
after(() => { for (const c of children) c.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });

async function startForeground(): Promise<ChildProcess> {
  const d = spawn(process.execPath, [PVBOX, 'daemon', '--foreground'], { env, stdio: 'ignore' });
  children.push(d);
  for (let i = 0; i < 200 && !existsSync(daemonPidPath(env)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(existsSync(daemonPidPath(env)), 'daemon started');
  return d;
}
const stop = (d: ChildProcess) => new Promise<void>((resolve) => { d.once('exit', () => resolve()); d.kill('SIGTERM'); });

test('a restarted daemon lists the running domain again; forwarded and malformed requests answer with one error', async () => {
  // A stand-in domain process: the registry record of a live process (the guest itself is not needed to list it).
  const stand = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(stand);
  mkdirSync(join(env.PVBOX_RUNDIR, 'domains'), { recursive: true });
  const record: DomainRecord = { domid: 4, name: 'survivor', uuid: '00000000-0000-4000-8000-000000000004', memoryMiB: 128, targetMiB: 128, maxmemMiB: 128, vcpus: 1,
    startTime: Math.floor(Date.now() / 1000), pid: stand.pid!, vcpuTid: 0, state: 'running', logFile: '/dev/null' };
  writeFileSync(join(env.PVBOX_RUNDIR, 'domains', '4.json'), JSON.stringify(record));

  let d = await startForeground();
  const first = await daemonRequest({ op: 'list' }, sock);
  assert.ok(first.ok);
  assert.deepEqual((first.domains as DomainRecord[]).map((r) => [r.domid, r.name]), [[4, 'survivor']]);
  await stop(d);
  assert.equal(existsSync(sock), false, 'socket removed on SIGTERM');
  await assert.rejects(daemonRequest({ op: 'list' }, sock), /^HostError: the pvbox daemon is not running .*start it with 'pvbox daemon'$/);

  d = await startForeground();
  const again = await daemonRequest({ op: 'list' }, sock);
  assert.deepEqual(again.ok && (again.domains as DomainRecord[]).map((r) => r.name), ['survivor'], 'listed again after the restart');
  assert.deepEqual(await daemonRequest({ op: 'pause', domain: 'ghost' }, sock), { ok: false, error: "no domain 'ghost'" });
  assert.deepEqual(await daemonRequest({ op: 'frob' }, sock), { ok: false, error: "unknown request 'frob'" });
  const bad = await daemonRequest({ op: 'create', config: join(dir, 'missing.cfg') }, sock);
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.error : '', /missing\.cfg: cannot open: ENOENT/);
  // A second daemon on the same socket is refused.
  const second = spawnSync(process.execPath, [PVBOX, 'daemon', '--foreground'], { env, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(second.status, 0);
  assert.match(second.stderr.trim(), /^pvbox: a pvbox daemon already answers on /);
  // Once the domain process is gone, its record is dropped from the list.
  stand.kill('SIGKILL');
  await new Promise((r) => stand.once('exit', r));
  const gone = await daemonRequest({ op: 'list' }, sock);
  assert.deepEqual(gone.ok && gone.domains, []);
  assert.equal(existsSync(join(env.PVBOX_RUNDIR, 'domains', '4.json')), false, 'stale record removed');
  await stop(d);
});

test('`pvbox daemon` starts one on demand and is idempotent', () => {
  const a = spawnSync(process.execPath, [PVBOX, 'daemon'], { env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(a.status, 0, a.stderr);
  const pid = Number(readFileSync(daemonPidPath(env), 'utf8'));
  try {
    const b = spawnSync(process.execPath, [PVBOX, 'daemon'], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(b.status, 0, b.stderr);
    assert.equal(Number(readFileSync(daemonPidPath(env), 'utf8')), pid, 'the same daemon');
  } finally { process.kill(pid, 'SIGTERM'); }
});
