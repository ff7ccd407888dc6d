// Assembles the default guest initramfs: busybox, Debian's xenstore-utils with their libraries, the kernel's Xen frontend modules, /init; newc cpio + gzip.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CpioWriter } from './cpio.js';
import { run } from './deb.js';
import { depmodFiles, selectModules, type ModuleSelection } from './kmod.js';
import type { Userland } from './userland.js';

/** Frontend drivers a Xen PV guest needs (loaded by modalias at boot; built-ins are skipped). */
export const XEN_FRONTEND_MODULES = ['xen-blkfront', 'xen-netfront', 'xen-fbfront', 'xen-kbdfront', 'xenfs', 'xen-privcmd'] as const;
/** Further small modules worth having in a PV guest: event channel / grant devices and a filesystem for disks. */
export const EXTRA_MODULES = ['xen-evtchn', 'xen-gntdev', 'xen-gntalloc', 'ext4'] as const;

/** Console the readiness line and the shell use; cttyhack resolves /dev/console to the active tty (hvc0 under pvbox). */
export const READY_PREFIX = 'PVBOX-READY';

export const INIT_SCRIPT = `#!/bin/busybox sh
# /init of the pvbox default guest initramfs (written by pvbox's src/images/initramfs.ts).
export PATH=/sbin:/bin HOME=/root TERM=linux
umask 022
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || mdev -s
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
hostname pvbox
ip link set lo up 2>/dev/null

# Xen: xenfs on /proc/xen, then frontend drivers by modalias. xenbus devices
# can appear asynchronously, so look again after a short moment (and keep
# looking, briefly, while new ones show up).
if [ -d /sys/bus/xen ]; then
    modprobe -q xenfs 2>/dev/null
    [ -d /proc/xen ] && mount -t xenfs xenfs /proc/xen 2>/dev/null
    # libxenstore (xenstore-ls & co.) opens /dev/xen/xenbus, the misc device
    # of the kernel's xenbus_dev_frontend that devtmpfs creates (falling back
    # to /proc/xen/xenbus from xenfs); make the node if /dev is not devtmpfs.
    if [ ! -e /dev/xen/xenbus ]; then
        minor=$(awk '$2 == "xen/xenbus" { print $1 }' /proc/misc)
        [ -n "$minor" ] && mkdir -p /dev/xen && mknod -m 0600 /dev/xen/xenbus c 10 "$minor"
    fi
    xen_load() {
        n=0
        for d in /sys/bus/xen/devices/*; do
            [ -r "$d/modalias" ] || continue
            n=$((n + 1))
            [ -e "$d/driver" ] || modprobe -q "$(cat "$d/modalias")" 2>/dev/null
        done
    }
    xen_load
    i=0
    while [ $i -lt 10 ]; do
        prev=$n
        sleep 0.1
        xen_load
        [ "$n" -eq "$prev" ] && break
        i=$((i + 1))
    done
    # Give bound disks up to 2 s to connect to their backend and show up.
    for d in /sys/bus/xen/devices/vbd-*; do
        [ -e "$d/driver" ] || continue
        i=0
        while [ ! -d "$d/block" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    done
fi

# root= on the command line: mount that disk and hand PID 1 to its init, as
# Debian's initramfs-tools does (scripts/local: wait for the device, mount it
# read-only unless "rw" is given, so the system's own boot scripts check it
# and remount it per fstab; init:
# move /dev /proc /sys /run into it, then run-init). The kernel does not pass
# root=, ro/rw, rootfstype=, rootflags=, rootdelay= or init= to /init, so they
# are read from /proc/cmdline. Without root= nothing here runs.
root= rootfstype= rootflags= rootdelay=30 rootmode=ro rootinit=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root=\${arg#root=} ;;
        rootfstype=*) rootfstype=\${arg#rootfstype=} ;;
        rootflags=*) rootflags=\${arg#rootflags=} ;;
        rootdelay=*) rootdelay=\${arg#rootdelay=} ;;
        init=*) rootinit=\${arg#init=} ;;
        ro) rootmode=ro ;;
        rw) rootmode=rw ;;
    esac
done
mount_root() {
    case "$root" in
        LABEL=*|UUID=*) dev= ;;
        /dev/*) dev=$root ;;
        *) echo "pvbox-init: root=$root: expected /dev/NAME, LABEL=... or UUID=..."; return 1 ;;
    esac
    case "$rootdelay" in ''|*[!0-9]*) rootdelay=30 ;; esac
    i=0
    while :; do
        # findfs reads the labels and UUIDs of the block devices there are now.
        case "$root" in LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;; esac
        [ -n "$dev" ] && [ -b "$dev" ] && break
        if [ $i -ge $((rootdelay * 10)) ]; then
            echo "pvbox-init: root device $root did not appear within \${rootdelay} s (block devices: $(ls /sys/block | tr '\\n' ' ')); give pvbox run a --disk with that vdev, or wait longer with rootdelay=SECONDS"
            return 1
        fi
        [ $i -eq 20 ] && echo "pvbox-init: waiting up to \${rootdelay} s for root device $root"
        sleep 0.1
        i=$((i + 1))
    done
    # ext4 is the disk filesystem this initramfs carries; with rootfstype= the
    # module of that name, if there is one. mount without -t tries every
    # filesystem in /proc/filesystems.
    modprobe -q "\${rootfstype:-ext4}" 2>/dev/null
    mkdir -p /root-mount
    if ! mount \${rootfstype:+-t "$rootfstype"} -o "$rootmode\${rootflags:+,$rootflags}" "$dev" /root-mount; then
        echo "pvbox-init: cannot mount $dev ($root) on /root-mount\${rootfstype:+ as $rootfstype}"
        return 1
    fi
    if [ ! -x "/root-mount$rootinit" ] && [ ! -L "/root-mount$rootinit" ]; then
        echo "pvbox-init: $dev has no $rootinit (give another with init=PATH)"
        umount /root-mount
        return 1
    fi
    return 0
}
if [ -n "$root" ]; then
    if mount_root; then
        umount /tmp 2>/dev/null
        for m in /dev /proc /sys /run; do
            mkdir -p "/root-mount$m" 2>/dev/null
            mount -o move "$m" "/root-mount$m"
        done
        # busybox switch_root deletes the initramfs contents (freeing their
        # memory) and execs init as PID 1; arguments the kernel passed to
        # /init (e.g. "single", systemd.* options) go on to the real init.
        exec switch_root -c /dev/console /root-mount "$rootinit" "$@"
    fi
    echo "pvbox-init: root=$root not mounted; starting the initramfs shell instead"
fi

read up idle < /proc/uptime
echo "${READY_PREFIX} $up"

# Interactive shell on the console (cttyhack finds the real tty, e.g. hvc0,
# so job control and ^C work). When it exits, the guest powers off.
# As PID 1 this script also plays busybox init's part for the kernel's orderly
# poweroff/reboot (Xen's control/shutdown): busybox poweroff sends SIGUSR2 to
# PID 1, halt SIGUSR1, reboot SIGTERM. The shell runs in the background so the
# traps run at once (a trap waits for a foreground command to finish).
cd /root
export PS1='# '
trap 'sync; poweroff -f' USR1 USR2
trap 'sync; reboot -f' TERM
setsid cttyhack sh &
shell=$!
while kill -0 $shell 2>/dev/null; do wait $shell; done
sync
poweroff -f
`;

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n';
const HOSTS = '127.0.0.1\tlocalhost pvbox\n::1\tlocalhost\n';

/** Applet install paths from `busybox --list-full` (usr/ folded into /bin and /sbin). */
export async function busyboxApplets(busybox: string): Promise<string[]> {
  let lines: string[];
  try {
    lines = (await run(busybox, ['--list-full'])).stdout.split('\n');
  } catch {
    lines = (await run(busybox, ['--list'])).stdout.split('\n').map((n) => `bin/${n}`);
  }
  const out = new Set<string>();
  for (let l of lines) {
    l = l.trim().replace(/^\/+/, '').replace(/^usr\//, '');
    const m = /^(bin|sbin)\/([^/]+)$/.exec(l);
    if (!m || m[2] === 'busybox') continue;
    out.add(l);
  }
  return [...out].sort();
}

export interface InitramfsBuild {
  /** gzip-compressed newc cpio. */
  gz: Buffer;
  /** Uncompressed size, for reporting. */
  cpioBytes: number;
  modules: ModuleSelection;
}

/**
 * Builds the initramfs from an extracted kernel package's module tree
 * (`modulesDir` = .../lib/modules/<kver>) and a static busybox binary.
 */
export async function buildInitramfs(opts: { modulesDir: string; kernelVersion: string; busybox: string; wanted?: readonly string[]; userland?: Userland }): Promise<InitramfsBuild> {
  const kver = opts.kernelVersion;
  const modDir = opts.modulesDir;
  const sel = await selectModules(modDir, opts.wanted ?? [...XEN_FRONTEND_MODULES, ...EXTRA_MODULES]);
  const w = new CpioWriter(0);

  for (const d of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'mnt', 'var', 'lib', 'usr']) w.addDirectory(d, 0o755);
  w.addDirectory('root', 0o700);
  w.addDirectory('tmp', 0o1777);
  w.addSymlink('usr/bin', '../bin');
  w.addSymlink('usr/sbin', '../sbin');
  w.addSymlink('usr/lib', '../lib');
  w.addSymlink('var/run', '../run');
  w.addCharDevice('dev/console', 5, 1, 0o600);
  w.addCharDevice('dev/hvc0', 229, 0, 0o620);
  w.addCharDevice('dev/null', 1, 3, 0o666);

  // Debian programs and their libraries first: a real program wins over a busybox applet of the same name.
  for (const e of opts.userland?.entries ?? []) {
    if (e.kind === 'file') w.addFile(e.path, e.data, e.perm);
    else w.addSymlink(e.path, e.target);
  }
  w.addFile('bin/busybox', await readFile(opts.busybox), 0o755);
  for (const applet of await busyboxApplets(opts.busybox)) if (!w.has(applet)) w.addSymlink(applet, '/bin/busybox');
  w.addFile('init', INIT_SCRIPT, 0o755);
  w.addFile('etc/passwd', PASSWD, 0o644);
  w.addFile('etc/group', GROUP, 0o644);
  w.addFile('etc/hosts', HOSTS, 0o644);

  const base = `lib/modules/${kver}`;
  w.addDirectory(base, 0o755);
  for (const m of sel.modules) w.addFile(`${base}/${m.path}`, m.image, 0o644);
  const files = depmodFiles(sel);
  w.addFile(`${base}/modules.dep`, files.dep);
  w.addFile(`${base}/modules.alias`, files.alias);
  w.addFile(`${base}/modules.softdep`, files.softdep);
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    const data = await readFile(join(modDir, f)).catch(() => undefined);
    if (!data) continue;
    if (f === 'modules.order') {
      // Only the modules we ship, in the kernel's order.
      const keep = new Set(sel.modules.map((m) => m.path));
      const lines = data.toString('utf8').split('\n').map((l) => l.trim().replace(/\.ko\.(xz|gz|zst)$/, '.ko'));
      w.addFile(`${base}/${f}`, lines.filter((l) => keep.has(l)).map((l) => l + '\n').join(''));
    } else {
      w.addFile(`${base}/${f}`, data);
    }
  }
  const cpio = w.finish();
  return { gz: gzipSync(cpio), cpioBytes: cpio.length, modules: sel };
}
