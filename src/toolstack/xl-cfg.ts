// xl.cfg(5) domain configuration files, the PV subset pvbox runs: the syntax of libxlu's parser (xen tools/libs/util/libxlu_cfg_l.l, libxlu_cfg_y.y, libxlu_cfg.c) and the keys as xl reads them (tools/xl/xl_parse.c parse_config_data).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { type DiskSpec, parseDiskSpec } from '../backends/vbd/disk-spec.js';
import { parseVifSpec, type VifSpec } from '../backends/vif/vif-spec.js';

/** Where a setting was written: a file and line, or `<command line>` and the override's position (1-based). */
export interface XlOrigin { readonly file: string; readonly line: number }

/** A value as libxlu stores it: numbers and strings are both atoms (XLU_STRING); lists may nest. */
export type XlValue =
  | { readonly kind: 'atom'; readonly text: string; readonly quoted: boolean; readonly line: number }
  | { readonly kind: 'list'; readonly items: readonly XlValue[]; readonly line: number };

/** One key's effective setting: the last assignment wins (libxlu_cfg.c find()), `+=` joins onto the one before. */
export interface XlSetting { readonly key: string; readonly value: XlValue; readonly op: '=' | '+='; readonly origin: XlOrigin }

/** The actions pvbox carries out when a guest stops (xl_parse.c action_on_shutdown_names has more). */
export type XlShutdownAction = 'destroy' | 'restart' | 'preserve';

/** How the kernel is found when it is not given directly: pvbox reads the guest disk's grub.cfg/extlinux.conf itself. */
export interface XlBootloader {
  /** What the file asked for: `pygrub` (or a path to it), or `pvgrub64` through firmware=. */
  readonly program: string;
  /** bootloader_args, recorded (pvbox runs no bootloader process). */
  readonly args: readonly string[];
  readonly key: 'bootloader' | 'firmware';
}

/** A paravirtual framebuffer (xl.cfg(5) VFB_SPEC_STRING), with libxl__device_vfb_setdefault's defaults. */
export interface VfbSpec {
  readonly vnc: boolean;
  /** ADDRESS[:DISPLAYNUM]; 127.0.0.1 when vnc is on and none is given. */
  readonly vnclisten?: string;
  readonly vncdisplay?: number;
  /** Search for a free display; defaults to `vnc`. */
  readonly vncunused: boolean;
  readonly vncpasswd?: string;
  readonly keymap?: string;
}

export interface XlConfig {
  /** The configuration file's name as given (messages use it). */
  readonly file: string;
  readonly name: string;
  /** Lower case; absent: xl generates one at each start. */
  readonly uuid?: string;
  readonly type: 'pv';
  readonly memoryMiB: number;
  readonly maxmemMiB: number;
  readonly vcpus: number;
  readonly maxvcpus: number;
  /** A host path for direct boot; with a bootloader, a path inside the guest's disk (pygrub --kernel). */
  readonly kernel?: string;
  readonly ramdisk?: string;
  /** cmdline=, or `root=<root> <extra>` built as xl_parse.c parse_cmdline does. */
  readonly cmdline?: string;
  readonly bootloader?: XlBootloader;
  readonly disks: readonly DiskSpec[];
  readonly vifs: readonly VifSpec[];
  readonly vfbs: readonly VfbSpec[];
  readonly onPoweroff: XlShutdownAction;
  readonly onReboot: XlShutdownAction;
  readonly onCrash: XlShutdownAction;
  readonly onWatchdog: XlShutdownAction;
  /** xl's default is soft-reset (kexec keeps the domain); pvbox takes the other three too. */
  readonly onSoftReset: XlShutdownAction | 'soft-reset';
  /** The guest's wall clock is host local time, not UTC (libxl_x86.c adds tm_gmtoff to rtc_timeoffset). */
  readonly localtime: boolean;
  /** Seconds added to the guest's wall clock. */
  readonly rtcTimeoffset: number;
  /** Where each key came from, and each list item as `disk[0]`, `vif[1]`, `vfb[0]`. */
  readonly origins: ReadonlyMap<string, XlOrigin>;
  /** Settings accepted but without effect in pvbox, each naming file:line and the key. */
  readonly warnings: readonly string[];
}

/** Larger inputs are refused before they are read: a real xl.cfg is a few KiB, and this keeps a wrong path (a disk image, /dev/zero) cheap. */
export const MAX_CONFIG_BYTES = 1 << 20;
/** libxlu nests lists without limit; pvbox stops early so a hostile `[[[[…` cannot exhaust the stack. */
const MAX_LIST_DEPTH = 16;
/** Shown in messages for the command-line overrides of `xl create cfg key=value…`. */
export const COMMAND_LINE = '<command line>';

export function formatOrigin(origin: XlOrigin): string { return `${origin.file}:${origin.line}`; }

/** A value for a one-line message: control characters escaped, long values cut. */
function show(text: string): string {
  const escaped = text.replace(/[\u0000-\u001f\u007f\\']/g, (c) => c === '\\' ? '\\\\' : c === "'" ? "\\'" : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `'${escaped.length > 60 ? `${escaped.slice(0, 57)}...` : escaped}'`;
}

/** Messages are one line even when they quote a value holding `\n` (an escape in a string). */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function fail(origin: XlOrigin, what: string): never { throw new ConfigError(`${formatOrigin(origin)}: ${oneLine(what)}`); }

// ---------------------------------------------------------------------------------------------
// Bytes to text

/**
 * The file as text. flex reads bytes (`%option 8bit`); pvbox needs UTF-8 strings for names and
 * paths, so other encodings are refused, and so is NUL, which libxlu's strdup would cut a
 * string at.
 */
function decodeConfig(file: string, data: Uint8Array | string): string {
  if (data.length > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: more than ${MAX_CONFIG_BYTES >> 20} MiB, too large for an xl.cfg file`);
  const lineAt = (bytes: Uint8Array, end: number): number => { let n = 1; for (let i = 0; i < end; i++) if (bytes[i] === 0x0a) n++; return n; };
  if (typeof data === 'string') {
    const nul = data.indexOf('\0');
    if (nul >= 0) fail({ file, line: data.slice(0, nul).split('\n').length }, 'NUL byte (this is not a text file)');
    return data;
  }
  const nul = data.indexOf(0);
  if (nul >= 0) fail({ file, line: lineAt(data, nul) }, 'NUL byte (this is not a text file)');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    // Find the line only on this path: decode line by line until one fails.
    let start = 0, line = 1;
    for (;;) {
      const nl = data.indexOf(0x0a, start);
      const end = nl < 0 ? data.length : nl;
      try { new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(start, end)); } catch { break; }
      if (nl < 0) break;
      start = nl + 1; line++;
    }
    fail({ file, line }, 'not valid UTF-8 (save the file as UTF-8)');
  }
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser (libxlu_cfg_l.l, libxlu_cfg_y.y)

type TokenKind = 'ident' | 'number' | 'string' | 'newline' | '=' | '+=' | ',' | '[' | ']' | ';' | 'eof';
interface Token { readonly kind: TokenKind; readonly text: string; readonly line: number }

const PYTHON_HINT = ' (xl config files are not Python: https://wiki.xen.org/wiki/PythonInXlConfig)';

function describe(t: Token): string {
  switch (t.kind) {
    case 'ident': return `'${t.text}'`;
    case 'number': return `the number ${t.text}`;
    case 'string': return `the string ${show(t.text)}`;
    case 'newline': return 'the end of the line';
    case 'eof': return 'the end of the file';
    default: return `'${t.kind}'`;
  }
}

/** The escapes xlu__cfgl_dequote decodes. */
const ESCAPES: Readonly<Record<string, string>> = { '"': '"', "'": "'", '\\': '\\', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

class Parser {
  private pos = 0;
  private line = 1;
  /** The key being assigned, for messages. */
  private key: string | undefined;

  constructor(private readonly file: string, private readonly text: string, private readonly store: SettingsTable,
    private readonly lineOf: (line: number) => number = (l) => l) {}

  private error(line: number, what: string): never {
    fail({ file: this.file, line: this.lineOf(line) }, this.key === undefined ? what : `${this.key}: ${what}`);
  }

  /** The rest of the offending word, as xl's `<lexerr>[^ \t\n]*` rule takes it. */
  private near(from: number): string {
    let end = from;
    while (end < this.text.length && end - from < 40 && !' \t\n'.includes(this.text[end]!)) end++;
    return show(this.text.slice(from, end));
  }

  private next(): Token {
    const s = this.text;
    let i = this.pos;
    while (s[i] === ' ' || s[i] === '\t') i++;
    const line = this.line;
    if (i >= s.length) { this.pos = i; return { kind: 'eof', text: '', line }; }
    const c = s[i]!;
    const take = (kind: TokenKind, end: number, text = s.slice(i, end)): Token => { this.pos = end; return { kind, text, line }; };
    if (c === '\n') { this.line++; return take('newline', i + 1); }
    if (c === '#') {
      // `\#.*\n`: a comment ends its line. xl refuses a last comment without a newline (the `.`
      // rule takes the '#'); pvbox accepts it, the one place it is more lenient.
      const nl = s.indexOf('\n', i);
      if (nl < 0) return take('newline', s.length);
      this.line++;
      return take('newline', nl + 1);
    }
    if (c >= 'a' && c <= 'z') {
      let j = i + 1;
      while (j < s.length && /[._0-9a-z]/.test(s[j]!)) j++;
      return take('ident', j);
    }
    if (c >= '0' && c <= '9') {
      let j = i + 1;
      while (j < s.length && /[0-9a-fx]/.test(s[j]!)) j++;
      return take('number', j);
    }
    if (c === '"' || c === "'") return take('string', ...this.quoted(i, c));
    if (c === '+' && s[i + 1] === '=') return take('+=', i + 2);
    if (c === '=' || c === ',' || c === '[' || c === ']' || c === ';') return take(c, i + 1);
    if (c === '\r') this.error(line, 'carriage return: the file has DOS line endings, which xl refuses (convert it with dos2unix)');
    if (c >= 'A' && c <= 'Z') this.error(line, `unexpected ${this.near(i)}: keys are lower case and values are numbers, 'strings' or [lists]`);
    // NUMBER is `[0-9][0-9a-fx]*`: a sign needs quotes, as strtol reads "-3600" but the lexer cannot.
    if (c === '-' && /[0-9]/.test(s[i + 1] ?? '')) this.error(line, `unexpected ${this.near(i)}: a negative number must be quoted in xl ("${this.text.slice(i).match(/^-[0-9a-fx]*/)![0]}")`);
    this.error(line, `unexpected ${this.near(i)}${'+-.():'.includes(c) ? PYTHON_HINT : ''}`);
  }

  /** A quoted string from `start`: its end and decoded text. Strings end on their own line (`\\.` excludes newline). */
  private quoted(start: number, quote: string): [number, string] {
    const s = this.text;
    const parts: string[] = [];
    let j = start + 1, run = j;
    for (;;) {
      if (j >= s.length || s[j] === '\n') this.error(this.line, `unterminated string ${this.near(start)} (a string ends on the line it starts)`);
      const c = s[j]!;
      if (c === quote) break;
      if (c !== '\\') { j++; continue; }
      parts.push(s.slice(run, j));
      const e = s[j + 1];
      if (e === undefined || e === '\n') this.error(this.line, `unterminated string ${this.near(start)} (a backslash ends the line)`);
      const decoded = ESCAPES[e];
      if (decoded === undefined) {
        // xlu__cfgl_dequote's NUMERIC_CHAR refuses every \x escape and consumes octal digits
        // without storing a character, so neither means in xl what it means in C.
        if (e === 'x' || (e >= '0' && e <= '7')) this.error(this.line, `'\\${e}' in ${this.near(start)}: xl does not decode numeric escapes; write the character itself`);
        this.error(this.line, `invalid character after backslash in ${this.near(start)} (xl knows \\' \\" \\\\ \\a \\b \\f \\n \\r \\t \\v)`);
      }
      parts.push(decoded);
      j += 2; run = j;
    }
    parts.push(s.slice(run, j));
    return [j + 1, parts.join('')];
  }

  /** file: stmts | stmts assignment;  stmt: assignment endstmt | endstmt;  endstmt: NEWLINE | ';' */
  parse(): void {
    for (;;) {
      this.key = undefined;
      const t = this.next();
      if (t.kind === 'eof') return;
      if (t.kind === 'newline' || t.kind === ';') continue;
      if (t.kind !== 'ident') this.error(t.line, `expected a key at the start of a statement, found ${describe(t)}`);
      this.assignment(t);
      const end = this.next();
      if (end.kind === 'eof') return;
      if (end.kind !== 'newline' && end.kind !== ';') this.error(end.line, `expected the end of the line or ';' after the value, found ${describe(end)}`);
    }
  }

  /** assignment: IDENT '=' value | IDENT "+=" value */
  private assignment(ident: Token): void {
    this.key = ident.text;
    const op = this.next();
    if (op.kind !== '=' && op.kind !== '+=') this.error(op.line, `expected '=' after the key, found ${describe(op)}`);
    const value = this.value(this.next(), 0);
    this.store.assign(ident.text, op.kind, value, { file: this.file, line: this.lineOf(ident.line) });
  }

  /** value: atom | '[' nlok valuelist ']' */
  private value(t: Token, depth: number): XlValue {
    if (t.kind === 'number' || t.kind === 'string') return { kind: 'atom', text: t.text, quoted: t.kind === 'string', line: this.lineOf(t.line) };
    if (t.kind === '[') return this.list(t.line, depth + 1);
    this.error(t.line, `expected a value (a number, a 'string' or a [list]), found ${describe(t)}`);
  }

  private nextSkippingNewlines(): Token {
    for (;;) { const t = this.next(); if (t.kind !== 'newline') return t; }
  }

  /** valuelist: empty | values | values ',' nlok — a trailing comma is allowed, newlines anywhere between items. */
  private list(openLine: number, depth: number): XlValue {
    if (depth > MAX_LIST_DEPTH) this.error(openLine, `lists nested more than ${MAX_LIST_DEPTH} deep`);
    const items: XlValue[] = [];
    const unclosed = (t: Token): never => t.kind === 'eof'
      ? this.error(openLine, "the list opened on this line is not closed with ']' before the end of the file")
      : this.error(t.line, `expected ',' or ']' in the list opened at line ${this.lineOf(openLine)}, found ${describe(t)}`);
    let t = this.nextSkippingNewlines();
    if (t.kind === ']') return { kind: 'list', items, line: this.lineOf(openLine) };
    for (;;) {
      if (t.kind === 'eof') unclosed(t);
      items.push(this.value(t, depth));
      t = this.nextSkippingNewlines();
      if (t.kind === ']') break;
      if (t.kind !== ',') unclosed(t);
      t = this.nextSkippingNewlines();
      if (t.kind === ']') break;
    }
    return { kind: 'list', items, line: this.lineOf(openLine) };
  }
}

function pushAll<T>(target: T[], items: readonly T[]): T[] {
  for (const item of items) target.push(item);
  return target;
}

/** The settings of one configuration: xlu__cfg_set_store's semantics. */
class SettingsTable {
  readonly settings = new Map<string, XlSetting>();
  /** Keys already warned about as set twice: one warning each, however often they repeat. */
  private readonly warnedTwice = new Set<string>();
  constructor(readonly warnings: string[]) {}

  assign(key: string, op: '=' | '+=', value: XlValue, origin: XlOrigin): void {
    const previous = this.settings.get(key);
    if (op === '+=' && previous) {
      // xlu__cfg_concat_vals: strings are joined, lists appended; a list and a string cannot be.
      const a = previous.value;
      if (a.kind === 'atom' && value.kind === 'atom') value = { kind: 'atom', text: a.text + value.text, quoted: a.quoted || value.quoted, line: value.line };
      // The earlier list is dropped with its setting, so its array is extended in place: a
      // thousand `disk += [...]` lines must not copy the list a thousand times.
      else if (a.kind === 'list' && value.kind === 'list') value = { kind: 'list', items: pushAll(a.items as XlValue[], value.items), line: value.line };
      else fail(origin, `${key}: '+=' cannot add a ${value.kind === 'list' ? 'list' : 'string'} to a ${a.kind === 'list' ? 'list' : 'string'}`);
    } else if (op === '=' && previous && previous.origin.file === origin.file && origin.file !== COMMAND_LINE && !this.warnedTwice.has(key)) {
      // xl lets the later assignment win without a word; in one file that is usually a mistake.
      this.warnedTwice.add(key);
      this.warnings.push(`${formatOrigin(origin)}: ${key}: set again; this value replaces the one at line ${previous.origin.line} (the last one wins, as in xl)`);
    }
    this.settings.delete(key);
    this.settings.set(key, { key, value, op, origin });
  }
}

/**
 * The syntax layer alone: every effective setting of `data` followed by the overrides, in the
 * order they were last assigned. Throws ConfigError naming file:line.
 */
export function parseXlSettings(file: string, data: Uint8Array | string, overrides: readonly string[] = [], warnings: string[] = []): Map<string, XlSetting> {
  const text = decodeConfig(file, data);
  const store = new SettingsTable(warnings);
  new Parser(file, text, store).parse();
  // xl_vmcontrol.c main_create/create_domain: every "key=value" argument is appended after the
  // file, each on its own line, so it is parsed by the same grammar and wins over the file.
  overrides.forEach((arg, i) => {
    const origin = { file: COMMAND_LINE, line: i + 1 };
    if (arg.includes('\n')) fail(origin, `${show(arg)}: a setting on the command line cannot contain a newline`);
    if (!arg.includes('=')) fail(origin, `${show(arg)} is not key=value`);
    new Parser(COMMAND_LINE, decodeConfig(COMMAND_LINE, arg), store, () => i + 1).parse();
  });
  return store.settings;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** How pvbox treats each key xl knows that it does not read itself. */
type KeyRule =
  /** Read and typed below. */
  | { kind: 'pvbox' }
  /** Accepted with a warning: a host-side hint, or something with no counterpart in pvbox that the guest cannot see. */
  | { kind: 'warn'; why: string }
  /** Refused unless it says "off": 0, an empty list, or one of `off`. */
  | { kind: 'unless-off'; why: string; off?: readonly string[] }
  /** Refused. */
  | { kind: 'refuse'; why: string };

const HOST_SCHEDULING = 'a host scheduling hint; pvbox leaves vCPU scheduling to Linux';
const NOT_FOR_PV = 'has no effect on PV guests (xl ignores it for them too)';
const NO_DEVICE_MODEL = 'pvbox runs no device model (QEMU)';
const OWN_LIMIT = 'pvbox keeps its own limit';
const XM_ONLY = "an xm setting that xl ignores";

const PVBOX_KEYS = ['name', 'uuid', 'type', 'builder', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'kernel', 'ramdisk', 'cmdline', 'root', 'extra',
  'bootloader', 'bootloader_args', 'firmware', 'disk', 'vif', 'vfb', 'on_poweroff', 'on_reboot', 'on_crash', 'on_watchdog', 'on_soft_reset',
  'localtime', 'rtc_timeoffset', 'vnc', 'vnclisten', 'vncpasswd', 'vncdisplay', 'vncunused', 'sdl', 'opengl', 'display', 'xauthority', 'keymap'] as const;

const KEY_RULES: ReadonlyMap<string, KeyRule> = new Map<string, KeyRule>([
  ...PVBOX_KEYS.map((k): [string, KeyRule] => [k, { kind: 'pvbox' }]),
  ...['cpu_weight', 'cap', 'period', 'slice', 'latency', 'extratime', 'cpus', 'cpus_soft', 'pool', 'llc_colors']
    .map((k): [string, KeyRule] => [k, { kind: 'warn', why: HOST_SCHEDULING }]),
  ...['max_grant_frames', 'max_maptrack_frames', 'max_grant_version', 'max_event_channels']
    .map((k): [string, KeyRule] => [k, { kind: 'warn', why: OWN_LIMIT }]),
  ...['device_model', 'device_model_version', 'device_model_override', 'device_model_args', 'device_model_args_pv', 'device_model_user',
    'device_model_stubdomain_override', 'device_model_stubdomain_seclabel', 'dm_restrict']
    .map((k): [string, KeyRule] => [k, { kind: 'warn', why: NO_DEVICE_MODEL }]),
  // HVM, PVH and Arm settings that parse_config_data reads only for those guest types.
  ...['acpi', 'acpi_firmware', 'acpi_laptop_slate', 'acpi_s3', 'acpi_s4', 'altp2m', 'altp2mhvm', 'apic', 'bios', 'bios_path_override', 'boot',
    'device_model_args_hvm', 'firmware_override', 'gfx_passthru', 'hap', 'hdtype', 'hpet', 'hvm_pirq', 'mca_caps', 'mmio_hole', 'ms_vm_genid',
    'nestedhvm', 'nographic', 'nx', 'pae', 'rdm', 'rdm_mem_boundary', 'serial', 'smbios', 'smbios_firmware', 'soundhw', 'spice',
    'spice_clipboard_sharing', 'spice_image_compression', 'spice_streaming_video', 'spiceagent_mouse', 'spicedisable_ticketing', 'spicehost',
    'spicepasswd', 'spiceport', 'spicetls_port', 'spiceusbredirection', 'spicevdagent', 'stdvga', 'stubdomain_cmdline', 'stubdomain_kernel',
    'stubdomain_memory', 'stubdomain_ramdisk', 'usb', 'usbdevice', 'usbversion', 'vga', 'videoram', 'viridian', 'vpt_align', 'vendor_device',
    'xen_platform_pci', 'xen_platform_pci_bar_uc', 'vkb_device', 'pvshim', 'pvshim_path', 'pvshim_cmdline', 'pvshim_extra', 'gic_version',
    'tee', 'sve', 'nr_spis', 'arm_sci', 'vuart', 'trap_unmapped_accesses', 'pci_msitranslate', 'pci_power_mgmt', 'pci_permissive', 'pci_seize']
    .map((k): [string, KeyRule] => [k, { kind: 'warn', why: NOT_FOR_PV }]),
  ['nomigrate', { kind: 'warn', why: 'pvbox does not migrate guests' }],
  ['bootloader_restrict', { kind: 'warn', why: 'pvbox runs no bootloader process; it reads the boot menu itself' }],
  ['bootloader_user', { kind: 'warn', why: 'pvbox runs no bootloader process; it reads the boot menu itself' }],
  ['vncviewer', { kind: 'warn', why: "xl ignores it too (use a VNC viewer yourself)" }],
  ['shadow_memory', { kind: 'warn', why: 'pvbox has no shadow page-table pool to size' }],
  ['xend_suspend_evtchn_compat', { kind: 'warn', why: 'pvbox does not save or migrate guests' }],
  ['vif2', { kind: 'warn', why: 'netchannel2 is not supported by xl either' }],
  ...['dhcp', 'netmask', 'gateway', 'hostname', 'ip', 'nics', 'on_xend_start', 'on_xend_stop']
    .map((k): [string, KeyRule] => [k, { kind: 'warn', why: XM_ONLY }]),
  // Devices and features a PV guest would see, which pvbox does not provide: refused unless empty.
  ...([['pci', 'PCI passthrough'], ['dtdev', 'device-tree passthrough'], ['iomem', 'I/O memory passthrough'], ['ioports', 'I/O port passthrough'],
    ['irqs', 'IRQ passthrough'], ['channel', 'channels'], ['vtpm', 'virtual TPMs'], ['p9', '9pfs shares'], ['pvcalls', 'PV calls'],
    ['vkb', 'PV keyboards outside vfb'], ['vdispl', 'PV displays'], ['vsnd', 'PV sound'], ['usbctrl', 'USB controllers'], ['usbdev', 'USB devices'],
    ['vnuma', 'virtual NUMA'], ['virtio', 'virtio devices'], ['e820_host', 'the host E820 map'], ['driver_domain', 'driver domains'],
    ['vpmu', 'the virtual PMU'], ['msr_relaxed', 'relaxed MSR access'], ['vmtrace_buf_kb', 'VM tracing']] as const)
    .map(([k, what]): [string, KeyRule] => [k, { kind: 'unless-off', why: `pvbox has no ${what}` }]),
  ['passthrough', { kind: 'unless-off', why: 'pvbox has no device passthrough', off: ['disabled', 'default'] }],
  ['tsc_mode', { kind: 'unless-off', why: 'pvbox gives the guest the host TSC (tsc_mode "default")', off: ['default'] }],
  ...([['cpuid', 'CPUID policies'], ['seclabel', 'XSM security labels'], ['init_seclabel', 'XSM security labels'],
    ['device_tree', 'guest device trees'], ['xenstore_quota', 'per-domain XenStore quotas from the config'],
    ['xenstore_feature_mask', 'XenStore feature masks']] as const)
    .map(([k, what]): [string, KeyRule] => [k, { kind: 'refuse', why: `pvbox has no ${what}` }]),
  ['timer_mode', { kind: 'refuse', why: 'not for PV guests (xl refuses it too)' }],
]);

/** The known key closest to a misspelt one (edit distance ≤ 2), for "did you mean". */
function closestKey(key: string): string | undefined {
  let best: string | undefined, bestDistance = 3;
  for (const candidate of KEY_RULES.keys()) {
    if (Math.abs(candidate.length - key.length) >= bestDistance) continue;
    const d = editDistance(key, candidate);
    if (d < bestDistance) { best = candidate; bestDistance = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Typed access (libxlu_cfg.c xlu_cfg_get_*), strict where xl only warns

/** strtol(…, 0) as xlu_cfg_get_bounded_long calls it: decimal, 0x hex, 0 octal; the whole string must be used. */
function parseCLong(text: string): { value: bigint; octal: boolean } | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const digits = m[2]!;
  const octal = digits.length > 1 && digits[0] === '0' && !/^0[xX]/.test(digits);
  const magnitude = octal ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  return { value: m[1] === '-' ? -magnitude : magnitude, octal };
}

const LONG_MAX = (1n << 63n) - 1n;

class Reader {
  readonly origins = new Map<string, XlOrigin>();

  constructor(private readonly settings: ReadonlyMap<string, XlSetting>, readonly warnings: string[]) {
    for (const [key, s] of settings) this.origins.set(key, s.origin);
  }

  has(key: string): boolean { return this.settings.has(key); }
  setting(key: string): XlSetting | undefined { return this.settings.get(key); }
  where(key: string): XlOrigin { return this.settings.get(key)!.origin; }
  fail(key: string, what: string): never { fail(this.where(key), `${key}: ${what}`); }
  warn(key: string, what: string): void { this.warnings.push(`${formatOrigin(this.where(key))}: ${key}: ${what}`); }

  string(key: string): string | undefined {
    const s = this.settings.get(key);
    if (!s) return undefined;
    if (s.value.kind !== 'atom') this.fail(key, 'is a list but should be a single value');
    return s.value.text;
  }

  /** A non-empty string. */
  text(key: string): string | undefined {
    const v = this.string(key);
    if (v === '') this.fail(key, 'is empty');
    return v;
  }

  long(key: string, min: number, max: number, unit = ''): number | undefined {
    const s = this.settings.get(key);
    const text = this.string(key);
    if (text === undefined) return undefined;
    if (s!.op === '+=') this.fail(key, "'+=' cannot be used with numbers (xl refuses it too)");
    const n = parseCLong(text);
    if (!n) this.fail(key, `${show(text)} is not a number`);
    if (n.value > LONG_MAX || n.value < -LONG_MAX - 1n) this.fail(key, `${show(text)} is out of range`);
    if (n.value < BigInt(min) || n.value > BigInt(max)) this.fail(key, `${show(text)} is not between ${min} and ${max}${unit}`);
    if (n.octal) this.warn(key, `${show(text)} is octal (${n.value}), as xl reads numbers with a leading 0`);
    return Number(n.value);
  }

  /** libxl_defbool from a number: any non-zero value is true (xlu_cfg_get_defbool). */
  bool(key: string): boolean | undefined {
    const v = this.long(key, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    return v === undefined ? undefined : v !== 0;
  }

  /** A list of strings with each item's line; an absent key is an empty list. */
  strings(key: string): { text: string; line: number }[] {
    const s = this.settings.get(key);
    if (!s) return [];
    if (s.value.kind !== 'list') this.fail(key, 'is a single value but should be a list');
    return s.value.items.map((item, i) => {
      if (item.kind !== 'atom') fail({ file: s.origin.file, line: item.line }, `${key}: item ${i + 1} is a list; a list of strings is expected`);
      return { text: item.text, line: item.line };
    });
  }

  /** The origin of a list item, recorded as `key[i]`. */
  item(key: string, i: number, line: number): XlOrigin {
    const origin = { file: this.where(key).file, line };
    this.origins.set(`${key}[${i}]`, origin);
    return origin;
  }
}

const XL_ACTIONS = ['destroy', 'restart', 'rename-restart', 'preserve', 'coredump-destroy', 'coredump-restart', 'soft-reset'];
const PVBOX_ACTIONS: readonly XlShutdownAction[] = ['destroy', 'restart', 'preserve'];

function shutdownAction<T extends string>(r: Reader, key: string, fallback: T, accepted: readonly string[]): T {
  const v = r.text(key);
  if (v === undefined) return fallback;
  if (accepted.includes(v)) return v as T;
  if (XL_ACTIONS.includes(v)) r.fail(key, `'${v}' is an xl action pvbox does not support (use ${accepted.join(', ')})`);
  r.fail(key, `${show(v)} is not an action (xl knows ${XL_ACTIONS.join(', ')})`);
}

/** libuuid's uuid_parse, which libxl_uuid_from_string calls: 8-4-4-4-12 hex digits. */
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * libxl takes any name; pvbox puts names in file and socket names (console-<domid>-<name>[@n])
 * and finds domains by name or id, so it takes what `pvbox run --name` takes.
 */
function checkName(r: Reader, name: string): void {
  if (/[\u0000-\u001f\u007f]/.test(name)) r.fail('name', `${show(name)} contains a control character`);
  if (name.includes('/')) r.fail('name', `${show(name)} contains '/' (pvbox uses names in file names)`);
  if (name === '.' || name === '..') r.fail('name', `${show(name)} cannot be a file name`);
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) r.fail('name', `${show(name)}: use letters, digits, '.', '_' and '-'`);
  if (name.length > 64) r.fail('name', `is ${name.length} characters long (at most 64)`);
  if (/^[0-9]+$/.test(name)) r.fail('name', `${show(name)} is all digits, which reads as a domain id`);
  if (name === 'Domain-0') r.fail('name', "'Domain-0' is the host's own domain");
}

/** bootloader='pygrub' or a path ending in /pygrub: pvbox's grub.cfg/extlinux reader stands in for it. */
function isPygrub(program: string): boolean { return program === 'pygrub' || program.endsWith('/pygrub'); }

/** One VFB_SPEC_STRING (xl_parse.c, the "vfb" loop), strict where xl ignores what it does not know. */
function parseVfbSpec(spec: string, where: XlOrigin, i: number, warnings: string[]): VfbSpec {
  const at = (what: string): never => fail(where, `vfb '${spec}': ${what}`);
  const values = new Map<string, string>();
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) at(`${show(part)} is not key=value`);
    values.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const flag = (key: string): boolean | undefined => {
    const v = values.get(key);
    if (v === undefined) return undefined;
    // xl reads these with atoi(); pvbox wants the number to be all there is.
    if (!/^-?[0-9]+$/.test(v)) at(`${key} ${show(v)} is not a number`);
    return Number(v) !== 0;
  };
  for (const key of values.keys()) {
    if (['vnc', 'vnclisten', 'vncdisplay', 'vncunused', 'vncpasswd', 'keymap', 'sdl', 'opengl', 'display', 'xauthority'].includes(key)) continue;
    // xm's 'type=vnc'/'type=sdl': xl's parser skips keys it does not know.
    if (key === 'type') { warnings.push(`${formatOrigin(where)}: vfb[${i}]: 'type' is ${XM_ONLY}`); continue; }
    at(`unknown key ${show(key)}`);
  }
  if (flag('sdl')) at('sdl=1: pvbox has no SDL window; use vnc=1');
  if (flag('opengl')) at('opengl=1: pvbox has no SDL/OpenGL display');
  for (const key of ['display', 'xauthority']) if (values.has(key)) warnings.push(`${formatOrigin(where)}: vfb[${i}]: '${key}' is for SDL displays, which pvbox does not have`);
  return vfbFromValues(values.get('vnc') === undefined ? undefined : flag('vnc'), values.get('vnclisten'), values.get('vncdisplay'), values.get('vncunused') === undefined ? undefined : flag('vncunused'),
    values.get('vncpasswd'), values.get('keymap'), at);
}

/** libxl__device_vfb_setdefault: vnc on, listening on 127.0.0.1, searching for a free display. */
function vfbFromValues(vnc: boolean | undefined, vnclisten: string | undefined, vncdisplayText: string | undefined, vncunused: boolean | undefined,
  vncpasswd: string | undefined, keymap: string | undefined, at: (what: string) => never): VfbSpec {
  const enabled = vnc ?? true;
  let vncdisplay: number | undefined;
  if (vncdisplayText !== undefined) {
    // The TCP port is 5900 + DISPLAYNUM.
    if (!/^[0-9]+$/.test(vncdisplayText) || Number(vncdisplayText) > 65535 - 5900) at(`vncdisplay ${show(vncdisplayText)} is not a display number (0-${65535 - 5900})`);
    vncdisplay = Number(vncdisplayText);
  }
  if (vnclisten === '') at('vnclisten is empty');
  if (keymap === '') at('keymap is empty');
  return {
    vnc: enabled,
    ...(enabled ? { vnclisten: vnclisten ?? '127.0.0.1' } : vnclisten !== undefined ? { vnclisten } : {}),
    ...(vncdisplay !== undefined ? { vncdisplay } : {}),
    vncunused: vncunused ?? enabled,
    ...(vncpasswd !== undefined ? { vncpasswd } : {}),
    ...(keymap !== undefined ? { keymap } : {}),
  };
}

/** Memory defaults of libxl__domain_build_info_setdefault when neither memory nor maxmem is set. */
export const LIBXL_DEFAULT_MEMORY_MIB = 32;
/** 1 TiB in MiB: larger values are mistakes (pvbox guests live in one host process). */
const MAX_MEMORY_MIB = 1 << 20;
/** Far beyond what pvbox runs; it keeps vcpus= from allocating per-vCPU state without bound. */
const MAX_VCPUS = 128;

/** The typed configuration from parsed settings (parse_config_data's order and defaults). */
export function buildXlConfig(file: string, settings: ReadonlyMap<string, XlSetting>, warnings: string[] = []): XlConfig {
  const r: Reader = new Reader(settings, warnings);

  for (const [key, s] of settings) {
    const rule = KEY_RULES.get(key);
    if (!rule) {
      const guess = closestKey(key);
      r.fail(key, `unknown key${guess ? ` (did you mean '${guess}'?)` : ''}`);
    }
    if (rule.kind === 'warn') r.warn(key, `ignored: ${rule.why}`);
    else if (rule.kind === 'refuse') r.fail(key, `unsupported key: ${rule.why}`);
    else if (rule.kind === 'unless-off') {
      const v = s.value;
      const off = v.kind === 'list' ? v.items.length === 0 : (rule.off ?? []).includes(v.text) || parseCLong(v.text)?.value === 0n;
      if (!off) r.fail(key, `unsupported key: ${rule.why}`);
    }
  }

  // Guest type: type=, or the deprecated builder= (xl_parse.c, "Deprecated since Xen 4.10").
  const type = r.text('type');
  if (type !== undefined && type !== 'pv') {
    if (type === 'hvm' || type === 'pvh') r.fail('type', `'${type}': pvbox runs PV guests only (type = "pv", the default)`);
    r.fail('type', `${show(type)} is not a guest type (pv, pvh or hvm)`);
  }
  const builder = r.text('builder');
  if (builder !== undefined) {
    if (builder === 'hvm') r.fail('builder', "'hvm': pvbox runs PV guests only (builder = \"generic\", or better type = \"pv\")");
    if (builder === 'linux') r.warn('builder', "'linux' is xm's name for the PV builder; xl refuses it, pvbox takes it as \"generic\"");
    else if (builder !== 'generic') r.fail('builder', `${show(builder)} is not a builder (generic or hvm)`);
  }

  const name = r.text('name');
  if (name === undefined) throw new ConfigError(`${file}: name: missing; every domain needs a name (name = "...")`);
  checkName(r, name);
  const uuidText = r.string('uuid');
  if (uuidText !== undefined && !UUID.test(uuidText)) r.fail('uuid', `${show(uuidText)} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);

  // Memory: libxl's defaults fill whichever of the two is missing (libxl_create.c, xl_parse.c).
  const memory = r.long('memory', 1, MAX_MEMORY_MIB, ' MiB');
  const maxmem = r.long('maxmem', 1, MAX_MEMORY_MIB, ' MiB');
  const memoryMiB = memory ?? maxmem ?? LIBXL_DEFAULT_MEMORY_MIB;
  const maxmemMiB = maxmem ?? memoryMiB;
  if (maxmemMiB < memoryMiB) r.fail('maxmem', `${maxmemMiB} MiB is less than memory (${memoryMiB} MiB at ${formatOrigin(r.where('memory'))}); maxmem must be at least memory`);

  // xl turns vcpus < 1 into 1 quietly; pvbox says so.
  const vcpus = r.long('vcpus', 1, MAX_VCPUS) ?? 1;
  const maxvcpus = r.long('maxvcpus', 1, MAX_VCPUS) ?? vcpus;
  if (maxvcpus < vcpus) r.fail('maxvcpus', `${maxvcpus} is less than vcpus (${vcpus} at ${formatOrigin(r.where('vcpus'))}); xl refuses this too`);

  const onPoweroff = shutdownAction<XlShutdownAction>(r, 'on_poweroff', 'destroy', PVBOX_ACTIONS);
  const onReboot = shutdownAction<XlShutdownAction>(r, 'on_reboot', 'restart', PVBOX_ACTIONS);
  const onWatchdog = shutdownAction<XlShutdownAction>(r, 'on_watchdog', 'destroy', PVBOX_ACTIONS);
  const onCrash = shutdownAction<XlShutdownAction>(r, 'on_crash', 'destroy', PVBOX_ACTIONS);
  const onSoftReset = shutdownAction<XlShutdownAction | 'soft-reset'>(r, 'on_soft_reset', 'soft-reset', [...PVBOX_ACTIONS, 'soft-reset']);

  const localtime = r.bool('localtime') ?? false;
  // A long in libxl; 100 years of seconds bounds it well short of overflow in pvbox's clock arithmetic.
  const rtcTimeoffset = r.long('rtc_timeoffset', -3_155_760_000, 3_155_760_000, ' seconds') ?? 0;

  // Kernel and command line (xl_parse.c parse_cmdline).
  const kernel = r.text('kernel');
  const ramdisk = r.text('ramdisk');
  const cmdlineKey = r.string('cmdline'), root = r.string('root'), extra = r.string('extra');
  let cmdline: string | undefined;
  if (cmdlineKey !== undefined) {
    cmdline = cmdlineKey;
    if (root !== undefined || extra !== undefined) r.warn('cmdline', 'root= and extra= are ignored in favour of cmdline= (as xl does)');
  } else if (root !== undefined) cmdline = extra !== undefined ? `root=${root} ${extra}` : `root=${root}`;
  else cmdline = extra;

  // Boot from the guest's disk: bootloader=pygrub, or firmware=pvgrub64 (XENFIRMWAREDIR/pvgrub64.bin).
  let bootloader: XlBootloader | undefined;
  const args = bootloaderArgs(r);
  const program = r.text('bootloader');
  if (program !== undefined) {
    if (!isPygrub(program)) r.fail('bootloader', `${show(program)} is not supported: pvbox reads grub.cfg/extlinux.conf itself in place of pygrub (bootloader = "pygrub")`);
    bootloader = { program, args, key: 'bootloader' };
  } else if (r.has('bootloader_args')) r.warn('bootloader_args', 'ignored: no bootloader is set');
  const firmware = r.text('firmware');
  if (firmware !== undefined) {
    if (kernel !== undefined) r.fail('firmware', `both kernel (${formatOrigin(r.where('kernel'))}) and firmware are set (xl refuses this too)`);
    if (firmware === 'pvgrub32') r.fail('firmware', "'pvgrub32' boots 32-bit PV guests, which pvbox does not run");
    if (firmware !== 'pvgrub64') r.fail('firmware', `${show(firmware)}: only pvgrub64 is a firmware for PV guests`);
    if (bootloader) r.fail('firmware', `both bootloader (${formatOrigin(r.where('bootloader'))}) and firmware are set`);
    bootloader = { program: firmware, args: [], key: 'firmware' };
  }
  if (kernel === undefined && !bootloader) throw new ConfigError(`${file}: kernel: neither kernel nor bootloader is set (xl: "Neither kernel nor bootloader specified")`);

  const disks = r.strings('disk').map(({ text, line }, i) => {
    const where = r.item('disk', i, line);
    try { return parseDiskSpec(text); } catch (e) { if (e instanceof ConfigError) fail(where, e.message); throw e; }
  });
  const vdevs = new Map<string, number>();
  disks.forEach((d, i) => {
    const other = vdevs.get(d.vdev);
    if (other !== undefined) fail(r.origins.get(`disk[${i}]`)!, `disk: ${d.vdev} is used twice (also at line ${r.origins.get(`disk[${other}]`)!.line})`);
    vdevs.set(d.vdev, i);
  });
  if (bootloader && disks.length === 0) r.fail(bootloader.key, 'needs a disk to boot from (libxl: "cannot run bootloader with no boot disk")');

  const vifs = r.strings('vif').map(({ text, line }, i) => {
    const where = r.item('vif', i, line);
    try { return parseVifSpec(text, i); } catch (e) { if (e instanceof ConfigError) fail(where, e.message); throw e; }
  });
  for (const field of ['mac', 'vifname'] as const) {
    const seen = new Map<string, number>();
    vifs.forEach((v, i) => {
      const value = v[field];
      if (value === undefined) return;
      const other = seen.get(value);
      if (other !== undefined) fail(r.origins.get(`vif[${i}]`)!, `vif: ${field} ${value} is used twice (also at line ${r.origins.get(`vif[${other}]`)!.line})`);
      seen.set(value, i);
    });
  }

  const vfbs = r.strings('vfb').map(({ text, line }, i) => parseVfbSpec(text, r.item('vfb', i, line), i, warnings));
  topLevelVfb(r, vfbs);

  return {
    file, name, ...(uuidText !== undefined ? { uuid: uuidText.toLowerCase() } : {}), type: 'pv', memoryMiB, maxmemMiB, vcpus, maxvcpus,
    ...(kernel !== undefined ? { kernel } : {}), ...(ramdisk !== undefined ? { ramdisk } : {}), ...(cmdline !== undefined ? { cmdline } : {}),
    ...(bootloader ? { bootloader } : {}),
    disks, vifs, vfbs, onPoweroff, onReboot, onCrash, onWatchdog, onSoftReset, localtime, rtcTimeoffset, origins: r.origins, warnings,
  };
}

/** bootloader_args: a list, or (deprecated) one string split at blanks as xl splits it. */
function bootloaderArgs(r: Reader): string[] {
  const s = r.setting('bootloader_args');
  if (!s) return [];
  if (s.value.kind === 'atom') {
    r.warn('bootloader_args', 'a string is deprecated; xl wants a list of arguments');
    return s.value.text.split(/[ \t\n]+/).filter((a) => a !== '');
  }
  return r.strings('bootloader_args').map((a) => a.text);
}

/**
 * The PV framebuffer from top-level vnc= settings, as xl builds one for a PV guest without vfb=
 * (parse_config_data: "If we've already got vfb=[] for PV guest then ignore top level VNC config").
 */
function topLevelVfb(r: Reader, vfbs: VfbSpec[]): void {
  const keys = ['vnc', 'vnclisten', 'vncpasswd', 'vncdisplay', 'vncunused', 'sdl', 'opengl', 'display', 'xauthority', 'keymap'].filter((k) => r.has(k));
  if (keys.length === 0) return;
  if (vfbs.length > 0) { for (const k of keys) r.warn(k, 'ignored because vfb is set (as xl does)'); return; }
  const vnc = r.bool('vnc') ?? false;
  if (!vnc) { for (const k of keys.filter((k) => k !== 'vnc')) r.warn(k, 'ignored: vnc is not on and there is no vfb (as xl does)'); return; }
  if (r.bool('sdl')) r.fail('sdl', 'pvbox has no SDL window; use vnc = 1');
  if (r.bool('opengl')) r.fail('opengl', 'pvbox has no SDL/OpenGL display');
  for (const k of ['display', 'xauthority']) if (r.has(k)) r.warn(k, 'is for SDL displays, which pvbox does not have');
  const display = r.long('vncdisplay', 0, 65535 - 5900);
  vfbs.push(vfbFromValues(true, r.text('vnclisten'), display === undefined ? undefined : String(display), r.bool('vncunused'), r.string('vncpasswd'), r.text('keymap'),
    (what) => r.fail('vnc', what)));
  r.origins.set('vfb[0]', r.where('vnc'));
}

/** Parse and check an xl.cfg held in memory, then the `key=value` overrides of `xl create cfg key=value…`. */
export function parseXlConfig(file: string, data: Uint8Array | string, overrides: readonly string[] = []): XlConfig {
  const warnings: string[] = [];
  const settings = parseXlSettings(file, data, overrides, warnings);
  return buildXlConfig(file, settings, warnings);
}

/** Read, parse and check an xl.cfg file. Reads at most MAX_CONFIG_BYTES + 1 bytes whatever the file is. */
export function readXlConfigFile(path: string, overrides: readonly string[] = []): XlConfig {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch (e) { throw new ConfigError(`${path}: cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}`); }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new ConfigError(`${path}: is a directory, not an xl.cfg file`);
    if (st.isFile() && st.size > MAX_CONFIG_BYTES) throw new ConfigError(`${path}: ${st.size} bytes, too large for an xl.cfg file (at most ${MAX_CONFIG_BYTES >> 20} MiB)`);
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) break;
    }
    return parseXlConfig(path, buf.subarray(0, n), overrides);
  } finally {
    closeSync(fd);
  }
}
