// What a bench prints about the machine it ran on: which KVM /dev/kvm is, the CPU, load, and the pvbox checkout (the same facts bench/boot prints).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

export interface HostKvm { devKvm: boolean; intel: boolean; amd: boolean; pvm: boolean }

export function hostKvm(): HostKvm {
  return {
    devKvm: existsSync('/dev/kvm'),
    intel: existsSync('/sys/module/kvm_intel'),
    amd: existsSync('/sys/module/kvm_amd'),
    pvm: existsSync('/sys/module/kvm_pvm'),
  };
}

/** One word for RESULT lines and tables: pvm, vmx, svm or none. */
export function kvmKind(k: HostKvm): string {
  return !k.devKvm ? 'none' : k.pvm ? 'pvm' : k.intel ? 'vmx' : k.amd ? 'svm' : 'unknown';
}

export function describeKvm(k: HostKvm): string[] {
  const yn = (b: boolean) => (b ? 'loaded' : 'absent');
  const lines = [`KVM modules (/sys/module): kvm_intel ${yn(k.intel)}, kvm_amd ${yn(k.amd)}, kvm_pvm ${yn(k.pvm)}; /dev/kvm ${k.devKvm ? 'present' : 'absent'}`];
  if (!k.devKvm) lines.push('  => no KVM on this host');
  else if (k.pvm) lines.push('  => /dev/kvm is the PVM backend (kvm_pvm): guests run in ring 3, ring 0 is emulated, every exit is dear');
  else if (k.intel) lines.push('  => /dev/kvm is hardware KVM (Intel VMX)');
  else if (k.amd) lines.push('  => /dev/kvm is hardware KVM (AMD SVM)');
  return lines;
}

export function cpuFacts(): string {
  const info = (() => { try { return readFileSync('/proc/cpuinfo', 'utf8'); } catch { return ''; } })();
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  const flags = ` ${/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? ''} `;
  const virt = flags.includes(' vmx ') ? 'vmx' : flags.includes(' svm ') ? 'svm' : 'no vmx/svm';
  return `${model}, ${cpus().length} CPUs (${virt})`;
}

/** The checkout pvbox runs from: commit, and whether src/ or bin/ have uncommitted changes. */
export function pvboxRevision(root: string): string {
  const git = (args: string[]) => spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.error || head.status !== 0) return 'not a git checkout';
  const dirty = git(['status', '--porcelain', '--', 'src', 'bin', 'package.json']).stdout.trim();
  return `commit ${head.stdout.trim()}${dirty ? ', with uncommitted changes under src/, bin/ or package.json' : ''}`;
}
