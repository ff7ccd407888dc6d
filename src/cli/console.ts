// `pvbox console <domain>`: attach this terminal to a running guest's console; Ctrl-] detaches and the guest keeps running (xl console).
import { createConnection } from 'node:net';
import { UsageError } from '../errors.js';
import { findConsoleSocket } from '../toolstack/console-server.js';

const CTRL_RIGHT_BRACKET = 0x1d;

export async function consoleCommand(target: string, num = 0): Promise<number> {
  const path = findConsoleSocket(target, num);
  if (!path) throw new UsageError(num ? `domain '${target}' has no console ${num} (or is not running)` : `no running domain '${target}' (no console socket for it)`);
  const s = createConnection(path);
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, msg?: string) => {
      if (done) return; done = true;
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      s.end();
      if (msg) process.stderr.write(msg);
      resolve(code);
    };
    s.on('connect', () => {
      if (tty) stdin.setRawMode(true);
      stdin.on('data', (b: Buffer) => {
        const cut = tty ? b.indexOf(CTRL_RIGHT_BRACKET) : -1;
        if (cut >= 0) { if (cut > 0) s.write(b.subarray(0, cut)); finish(0, '\n'); return; }
        s.write(b);
      });
      stdin.on('end', () => { if (!tty) { /* keep showing output until the guest goes away */ } });
    });
    s.on('data', (b) => process.stdout.write(b));
    s.on('close', () => finish(0, '\npvbox: the guest\'s console closed\n'));
    s.on('error', (e) => finish(1, `pvbox: cannot attach to ${target}: ${e.message}\n`));
  });
}
