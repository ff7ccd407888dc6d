// Kernel module subset selection: reads .modinfo from module ELF files and writes modules.dep/alias/softdep like depmod.

import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** Canonical module name: file basename without .ko[.xz|.gz|.zst], '-' → '_'. */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.slice(fileOrName.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|gz|zst))?$/, '').replace(/-/g, '_');
}

const MODULE_FILE = /\.ko(\.(xz|gz|zst))?$/;

/** Path of a module once stored uncompressed (drops .xz/.gz/.zst). */
export function uncompressedPath(rel: string): string {
  return rel.replace(/\.ko\.(xz|gz|zst)$/, '.ko');
}

export type Modinfo = Map<string, string[]>;

/** Parses the NUL-separated key=value strings of a .modinfo section. */
export function parseModinfoStrings(bytes: Uint8Array): Modinfo {
  const info: Modinfo = new Map();
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  for (const item of text.split('\0')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const key = item.slice(0, eq);
    const list = info.get(key);
    if (list) list.push(item.slice(eq + 1));
    else info.set(key, [item.slice(eq + 1)]);
  }
  return info;
}

interface SectionLocation {
  offset: number;
  size: number;
}

/** Finds the .modinfo section of a 64-bit little-endian ELF relocatable, reading through `read`. */
async function locateModinfo(read: (pos: number, len: number) => Promise<Buffer>): Promise<SectionLocation | undefined> {
  const eh = await read(0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (eh[4] !== 2 || eh[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const shoff = Number(eh.readBigUInt64LE(0x28));
  const shentsize = eh.readUInt16LE(0x3a);
  const shnum = eh.readUInt16LE(0x3c);
  const shstrndx = eh.readUInt16LE(0x3e);
  if (shentsize < 64 || shnum === 0 || shstrndx >= shnum) throw new Error('bad ELF section table');
  const sh = await read(shoff, shentsize * shnum);
  const sec = (i: number) => ({
    name: sh.readUInt32LE(i * shentsize),
    offset: Number(sh.readBigUInt64LE(i * shentsize + 24)),
    size: Number(sh.readBigUInt64LE(i * shentsize + 32)),
  });
  const strtab = sec(shstrndx);
  const names = await read(strtab.offset, strtab.size);
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    const end = names.indexOf(0, s.name);
    if (names.toString('latin1', s.name, end < 0 ? undefined : end) === '.modinfo') return { offset: s.offset, size: s.size };
  }
  return undefined;
}

/** Reads the .modinfo of an (uncompressed) module image in memory. */
export async function modinfoOfImage(image: Buffer): Promise<Modinfo> {
  const loc = await locateModinfo(async (pos, len) => image.subarray(pos, pos + len));
  return loc ? parseModinfoStrings(image.subarray(loc.offset, loc.offset + loc.size)) : new Map();
}

async function xzDecompress(data: Buffer): Promise<Buffer> {
  // Debian 12 ships uncompressed modules; later kernels' .ko.xz go through the builder's own XZ decoder.
  const { xzDecompress: decode } = await import('../builder/xz.js');
  return Buffer.from(decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).data);
}

/** Returns a module file's uncompressed contents (.ko, .ko.xz or .ko.gz). */
export async function readModuleImage(path: string): Promise<Buffer> {
  const raw = await readFile(path);
  if (path.endsWith('.xz')) return xzDecompress(raw);
  if (path.endsWith('.gz')) return gunzipSync(raw);
  if (path.endsWith('.zst')) throw new Error(`zstd-compressed modules are not supported: ${path}`);
  return raw;
}

/** Reads just the .modinfo of a module file; for uncompressed files only the needed bytes are read. */
export async function modinfoOfFile(path: string): Promise<Modinfo> {
  if (MODULE_FILE.test(path) && !path.endsWith('.ko')) return modinfoOfImage(await readModuleImage(path));
  const fh = await open(path, 'r');
  try {
    const loc = await locateModinfo(async (pos, len) => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    });
    if (!loc) return new Map();
    const buf = Buffer.alloc(loc.size);
    await fh.read(buf, 0, loc.size, loc.offset);
    return parseModinfoStrings(buf);
  } finally {
    await fh.close();
  }
}

/** Lists every module file under a /lib/modules/<ver> directory: module name → path relative to it. */
export async function indexModules(modDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const entries = await readdir(modDir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile() || !MODULE_FILE.test(e.name)) continue;
    const parent = (e as unknown as { parentPath?: string; path?: string }).parentPath ?? (e as unknown as { path: string }).path;
    const rel = join(parent, e.name).slice(modDir.length).replace(/^\/+/, '');
    const name = moduleName(e.name);
    // Prefer updates/ and extra/ over kernel/, as depmod's default search order does.
    if (!index.has(name) || !rel.startsWith('kernel/')) index.set(name, rel);
  }
  return index;
}

/** Built-in module names (from modules.builtin) and their aliases (from modules.builtin.modinfo). */
export async function readBuiltins(modDir: string): Promise<{ names: Set<string>; aliases: Map<string, string> }> {
  const names = new Set<string>();
  const aliases = new Map<string, string>();
  const list = await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '');
  for (const line of list.split('\n')) if (line.trim()) names.add(moduleName(line.trim()));
  const modinfo = await readFile(join(modDir, 'modules.builtin.modinfo')).catch(() => Buffer.alloc(0));
  for (const item of modinfo.toString('latin1').split('\0')) {
    const m = /^([^.=]+)\.([^=]+)=(.*)$/s.exec(item);
    if (!m) continue;
    names.add(m[1]!.replace(/-/g, '_'));
    if (m[2] === 'alias') aliases.set(m[3]!, m[1]!.replace(/-/g, '_'));
  }
  return { names, aliases };
}

/** fnmatch()-style glob ('*', '?', '[...]') as used by modules.alias patterns. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp('^' + re + '$', 's');
}

/** Does modules.alias pattern `pattern` match `name`? (Cheap literal-prefix check before compiling a glob.) */
export function aliasMatches(pattern: string, name: string): boolean {
  const g = pattern.search(/[*?[]/);
  if (g < 0) return pattern === name;
  if (!name.startsWith(pattern.slice(0, g))) return false;
  return globToRegExp(pattern).test(name);
}

export interface SelectedModule {
  name: string;
  /** Path relative to /lib/modules/<ver> in the source tree (possibly compressed). */
  sourcePath: string;
  /** Path relative to /lib/modules/<ver> in the initramfs (always uncompressed .ko). */
  path: string;
  image: Buffer;
  depends: string[];
  aliases: string[];
  softdepPre: string[];
  softdepPost: string[];
}

export interface ModuleSelection {
  /** Selected loadable modules in load order (dependencies first). */
  modules: SelectedModule[];
  /** Requested (or needed) names that are built into the kernel. */
  builtin: string[];
  /** Requested names that are neither modules nor built in (not configured). */
  absent: string[];
}

function parseSoftdep(values: string[]): { pre: string[]; post: string[] } {
  const pre: string[] = [];
  const post: string[] = [];
  for (const v of values) {
    let into: string[] | undefined;
    for (const tok of v.split(/\s+/).filter(Boolean)) {
      if (tok === 'pre:') into = pre;
      else if (tok === 'post:') into = post;
      else into?.push(tok);
    }
  }
  return { pre, post };
}

/**
 * Picks the requested modules plus everything they need (modinfo `depends`,
 * and the modules providing their `softdep pre:` names), skipping built-ins.
 * Module images are decompressed.
 */
export async function selectModules(modDir: string, wanted: readonly string[]): Promise<ModuleSelection> {
  const index = await indexModules(modDir);
  const builtins = await readBuiltins(modDir);
  const selected = new Map<string, SelectedModule>();
  const builtin = new Set<string>();
  const absent: string[] = [];
  let aliasIndex: Array<{ alias: string; name: string }> | undefined;

  /** Modules whose alias patterns match `alias` (scans every module's modinfo once, only if ever needed). */
  const resolveAlias = async (alias: string): Promise<string[]> => {
    if (!aliasIndex) {
      const found: Array<{ alias: string; name: string }> = [];
      const all = [...index];
      const worker = async () => {
        for (let item = all.pop(); item; item = all.pop()) {
          const info = await modinfoOfFile(join(modDir, item[1]));
          for (const a of info.get('alias') ?? []) found.push({ alias: a, name: item[0] });
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      aliasIndex = found;
    }
    return [...new Set(aliasIndex.filter((e) => aliasMatches(e.alias, alias)).map((e) => e.name))].sort();
  };

  const visiting = new Set<string>();
  const order: SelectedModule[] = [];
  const visit = async (name: string): Promise<void> => {
    if (selected.has(name) || visiting.has(name)) return;
    const rel = index.get(name);
    if (!rel) throw new Error(`module ${name} is needed but not found in ${modDir}`);
    visiting.add(name);
    const image = await readModuleImage(join(modDir, rel));
    const info = await modinfoOfImage(image);
    const depends = (info.get('depends') ?? []).flatMap((d) => d.split(',')).map((d) => d.trim().replace(/-/g, '_')).filter(Boolean);
    const soft = parseSoftdep(info.get('softdep') ?? []);
    const mod: SelectedModule = {
      name,
      sourcePath: rel,
      path: uncompressedPath(rel),
      image,
      depends,
      aliases: info.get('alias') ?? [],
      softdepPre: soft.pre,
      softdepPost: soft.post,
    };
    for (const d of depends) await visit(d);
    for (const s of soft.pre) {
      const n = s.replace(/-/g, '_');
      if (builtins.names.has(n) || builtins.aliases.has(s)) continue;
      if (index.has(n)) await visit(n);
      else for (const m of await resolveAlias(s)) await visit(m);
    }
    visiting.delete(name);
    selected.set(name, mod);
    order.push(mod);
  };

  for (const w of wanted) {
    const name = w.replace(/-/g, '_');
    if (builtins.names.has(name)) builtin.add(name);
    else if (index.has(name)) await visit(name);
    else absent.push(name);
  }
  return { modules: order, builtin: [...builtin].sort(), absent };
}

/** The transitive dependencies of `mod` in the order modules.dep lists them (last one is loaded first). */
function depLine(mod: SelectedModule, byName: Map<string, SelectedModule>): string[] {
  const post: string[] = [];
  const seen = new Set<string>([mod.name]);
  const walk = (m: SelectedModule) => {
    for (const d of m.depends) {
      if (seen.has(d)) continue;
      seen.add(d);
      const dm = byName.get(d);
      if (!dm) continue; // built in
      walk(dm);
      post.push(dm.path);
    }
  };
  walk(mod);
  return post.reverse();
}

/** Text of modules.dep, modules.alias and modules.softdep for a selection (kmod's plain-text formats). */
export function depmodFiles(sel: ModuleSelection): { dep: string; alias: string; softdep: string } {
  const byName = new Map(sel.modules.map((m) => [m.name, m]));
  const sorted = [...sel.modules].sort((a, b) => a.path.localeCompare(b.path));
  const dep = sorted.map((m) => `${m.path}:${depLine(m, byName).map((p) => ' ' + p).join('')}\n`).join('');
  const alias =
    '# Aliases extracted from modules themselves.\n' +
    sorted.flatMap((m) => m.aliases.map((a) => `alias ${a} ${m.name}\n`)).join('');
  const softdep =
    '# Soft dependencies extracted from modules themselves.\n' +
    sorted
      .filter((m) => m.softdepPre.length || m.softdepPost.length)
      .map((m) => `softdep ${m.name}${m.softdepPre.length ? ' pre: ' + m.softdepPre.join(' ') : ''}${m.softdepPost.length ? ' post: ' + m.softdepPost.join(' ') : ''}\n`)
      .join('');
  return { dep, alias, softdep };
}
