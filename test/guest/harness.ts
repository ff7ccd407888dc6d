// Drives `pvbox run` as a user would: spawns it with piped stdin/stdout, waits for console output, types commands, and collects the exit status.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PVBOX = fileURLToPath(new URL('../../bin/pvbox.js', import.meta.url));

export class GuestSession {
  readonly proc: ChildProcessWithoutNullStreams;
  output = '';
  stderr = '';
  readonly exited: Promise<number>;
  private waiters: (() => void)[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = process.env) {
    // Each session gets its own run directory unless the test shares one on purpose, so tests never
    // meet the guests of a user (or of another test run) on this host.
    if (!env.PVBOX_RUNDIR) env = { ...env, PVBOX_RUNDIR: mkdtempSync(join(tmpdir(), 'pvbox-test-run-')) };
    this.proc = spawn(process.execPath, [PVBOX, 'run', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.proc.stdout.setEncoding('latin1');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (s: string) => { this.output += s; this.wake(); });
    this.proc.stderr.on('data', (s: string) => { this.stderr += s; this.wake(); });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => { this.wake(); resolve(code ?? (sig ? 128 : 1)); }));
  }
  private wake(): void { const w = this.waiters; this.waiters = []; for (const f of w) f(); }

  /** Wait until `pattern` appears in console output after `from`; returns the index just after it. */
  async waitFor(pattern: string | RegExp, timeoutMs: number, from = 0): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hay = this.output.slice(from);
      const m = typeof pattern === 'string' ? (hay.includes(pattern) ? { index: hay.indexOf(pattern), 0: pattern } : null) : hay.match(pattern);
      if (m && m.index !== undefined) return from + m.index + m[0].length;
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`timed out waiting for ${pattern}\n--- console (last 3000 chars) ---\n${this.output.slice(-3000)}\n--- stderr ---\n${this.stderr.slice(-3000)}`);
      }
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 250); });
    }
  }

  /** Type a shell command and return its output, delimited by unique markers. */
  async sh(cmd: string, timeoutMs = 120_000): Promise<string> {
    const tag = `M${Math.random().toString(36).slice(2, 10)}`;
    const start = this.output.length;
    this.proc.stdin.write(`echo ${tag}-BEGIN; ${cmd}; echo ${tag}-END $?\n`);
    const b = await this.waitFor(new RegExp(`(^|\\n)${tag}-BEGIN\\r?\\n`), timeoutMs, start);
    const e = await this.waitFor(new RegExp(`${tag}-END (\\d+)`), timeoutMs, b);
    const endLine = this.output.slice(b, e);
    const idx = endLine.lastIndexOf(`${tag}-END`);
    return endLine.slice(0, idx).replace(/\r/g, '');
  }

  kill(): void { this.proc.kill('SIGKILL'); }
}

/** `pvbox console <domain> [--num N]` as a second terminal would run it: collects what it shows. */
export class ConsoleClient {
  readonly proc: ChildProcessWithoutNullStreams;
  seen = '';
  readonly exited: Promise<number>;
  constructor(domain: string, env: NodeJS.ProcessEnv, num = 0) {
    this.proc = spawn(process.execPath, [PVBOX, 'console', domain, ...(num ? ['--num', String(num)] : [])], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout.setEncoding('latin1');
    this.proc.stdout.on('data', (s: string) => { this.seen += s; });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code ?? 1)));
  }
  /** Wait until `text` has been shown; false after `timeoutMs`. */
  async sees(text: string, timeoutMs = 30_000): Promise<boolean> {
    for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (this.seen.includes(text)) return true;
    return this.seen.includes(text);
  }
  close(): Promise<number> { this.proc.kill('SIGTERM'); return this.exited; }
}

/** The pvbox CLI as a user's shell runs it, with one environment (PVBOX_RUNDIR…): `pvbox` returns the result, `ok` asserts status 0 and returns stdout. */
export function pvboxCli(env: NodeJS.ProcessEnv, cwd?: string) {
  const pvbox = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', input: '', timeout: 360_000, env, cwd });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const ok = (...args: string[]): string => {
    const r = pvbox(...args);
    assert.equal(r.status, 0, `pvbox ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  return { pvbox, ok };
}

/** A command typed into an attached console; its output between markers at line starts (so the echoed command line does not match). */
export async function consoleSh(c: ConsoleClient, cmd: string, timeoutMs = 60_000): Promise<string> {
  const tag = `M${Math.random().toString(36).slice(2, 8)}`;
  const from = c.seen.length;
  c.proc.stdin.write(`echo ${tag}-B; ${cmd}; echo ${tag}-E\n`);
  const re = new RegExp(`(?<=\\n)${tag}-B\\r?\\n([\\s\\S]*?)(?<=\\n)${tag}-E\\r?\\n`);
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    const m = re.exec(c.seen.slice(from));
    if (m) return m[1]!.replace(/\r/g, '');
  }
  throw new Error(`no answer to ${cmd}: ${c.seen.slice(-1500)}`);
}
