// qcow2 images, versions 2 and 3 (QEMU docs/interop/qcow2.txt; block/qcow2.c qcow2_do_open, qcow2-cluster.c, qcow2-refcount.c): reads, writes with cluster allocation, backing chains, compressed and zero clusters, discard.
import { dirname, isAbsolute, resolve } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { constants as zlibConstants, inflateRaw } from 'node:zlib';
import { ImageError } from '../../errors.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate } from '../../kvm/libc.js';
import { type BlockImage, type VirtualDisk, openChainMember } from './image.js';
import { type ImageFile, type ImageLabel, Mutex, readFully, writeFully } from './image-file.js';

// Header layout (qcow2.txt "Header"), big-endian.
const HDR_VERSION = 4, HDR_BACKING_FILE_OFFSET = 8, HDR_BACKING_FILE_SIZE = 16, HDR_CLUSTER_BITS = 20, HDR_SIZE = 24,
  HDR_CRYPT_METHOD = 32, HDR_L1_SIZE = 36, HDR_L1_TABLE_OFFSET = 40, HDR_REFCOUNT_TABLE_OFFSET = 48,
  HDR_REFCOUNT_TABLE_CLUSTERS = 56, HDR_NB_SNAPSHOTS = 60, HDR_SNAPSHOTS_OFFSET = 64,
  HDR_INCOMPATIBLE_FEATURES = 72, HDR_AUTOCLEAR_FEATURES = 88, HDR_REFCOUNT_ORDER = 96, HDR_HEADER_LENGTH = 100,
  HDR_COMPRESSION_TYPE = 104;
const V2_HEADER_LENGTH = 72, V3_MIN_HEADER_LENGTH = 104;
// Incompatible feature bits.
const INCOMPAT_DIRTY = 1n, INCOMPAT_CORRUPT = 2n, INCOMPAT_DATA_FILE = 4n, INCOMPAT_COMPRESSION = 8n, INCOMPAT_EXTL2 = 16n;
// Header extension types.
const EXT_END = 0, EXT_BACKING_FORMAT = 0xe2792aca, EXT_CRYPTO = 0x0537be77, EXT_DATA_FILE = 0x44415441;
// QEMU's limits (block/qcow2.h): cluster sizes 512 B … 2 MiB, L1 ≤ 32 MiB, refcount table ≤ 8 MiB, backing name ≤ 1023 bytes.
const MIN_CLUSTER_BITS = 9, MAX_CLUSTER_BITS = 21, QCOW_MAX_L1_SIZE = 0x2000000, QCOW_MAX_REFTABLE_SIZE = 0x800000, MAX_BACKING_NAME = 1023;
// Entry flags, split into the high and low 32-bit words of a 64-bit table entry.
const OFLAG_COPIED_HI = 0x80000000, OFLAG_COMPRESSED_HI = 0x40000000, OFLAG_ZERO_LO = 1;
/** Bits 9..55 of an L1/L2/refcount-table entry: the host offset. */
const OFFSET_HI_MASK = 0x00ffffff, OFFSET_LO_MASK = 0xfffffe00;
const TWO32 = 0x1_0000_0000;

/** Memory bounds for the caches: L2 tables and refcount blocks (clean entries are evicted past these). */
const L2_CACHE_BYTES = 4 << 20, REFBLOCK_CACHE_BYTES = 1 << 20, COMPRESSED_CACHE_CLUSTERS = 4;
/** Dirty metadata is written back (in the safe order) once this many bytes of tables are dirty, or this many frees are pending. */
const MAX_DIRTY_BYTES = 8 << 20, MAX_PENDING_FREES = 4096;

function entryHi(t: DataView, i: number): number { return t.getUint32(i * 8); }
function entryLo(t: DataView, i: number): number { return t.getUint32(i * 8 + 4); }
/** The host offset of a standard L1/L2/reftable entry (bits 9..55). */
function entryOffset(t: DataView, i: number): number { return (entryHi(t, i) & OFFSET_HI_MASK) * TWO32 + ((entryLo(t, i) & OFFSET_LO_MASK) >>> 0); }
function setEntry(t: DataView, i: number, offset: number, flagsHi = 0, flagsLo = 0): void {
  t.setUint32(i * 8, (Math.floor(offset / TWO32) | flagsHi) >>> 0);
  t.setUint32(i * 8 + 4, ((offset % TWO32) | flagsLo) >>> 0);
}
function view(a: Uint8Array): DataView { return new DataView(a.buffer, a.byteOffset, a.byteLength); }

/** Where a guest cluster's data lives (qcow2-cluster.c qcow2_get_cluster_type). */
type Mapping =
  | { kind: 'unallocated' }
  /** Reads as zeros; `host` is a preallocated cluster (QCOW2_CLUSTER_ZERO_ALLOC) or 0. */
  | { kind: 'zero'; host: number }
  | { kind: 'normal'; host: number; copied: boolean }
  | { kind: 'compressed'; hi: number; lo: number };

/** A run of clusters whose refcount drops by one once the metadata that stopped using them is on disk. */
interface PendingFree { cluster: number; count: number }

export class Qcow2Image implements BlockImage, VirtualDisk {
  readonly format = 'qcow2' as const;
  readonly isBlockDevice = false;
  readonly sizeBytes: number;
  readonly canDiscard: boolean;
  readonly discardGranularity: number;

  private readonly clusterSize: number;
  private readonly l2Entries: number;
  /** refcount_bits = 1 << refcount_order; refcount entries per refcount block. */
  private readonly refcountBits: number;
  private readonly refblockEntries: number;
  private readonly l1: Uint8Array;
  private readonly l1View: DataView;
  private readonly l1DirtySectors = new Set<number>();
  private reftable: Uint8Array;
  private reftableView: DataView;
  private reftableOffset: number;
  private reftableDirty = false;
  /** A grown refcount table waits here until the header points to it; then its old clusters are freed. */
  private reftableMoved: { oldOffset: number; oldClusters: number } | undefined;

  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly l2Loading = new Map<number, Promise<Uint8Array>>();
  private readonly l2Dirty = new Set<number>();
  private readonly refblockCache = new Map<number, Uint8Array>();
  private readonly refblockDirty = new Set<number>();
  private readonly compressedCache = new Map<string, Uint8Array>();
  private pendingFrees: PendingFree[] = [];
  /** Clusters at or past this index have never been used in this file (high-water mark, in clusters). */
  private fileEndCluster: number;
  private freeClusterHint = 0;
  /** Serialises everything that changes metadata: allocating writes, discards, write-back (QEMU's s->lock for allocation). */
  private readonly metadataLock = new Mutex();
  /** Reads and in-place writes in flight; a cluster is reused only after those that could still see it have finished. */
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly readonly: boolean,
    private readonly label: ImageLabel,
    readonly virtualSize: number,
    private readonly version: number,
    private readonly clusterBits: number,
    refcountOrder: number,
    private readonly l1Offset: number,
    reftableOffset: number,
    fileSize: number,
    private readonly backing: (BlockImage & VirtualDisk) | undefined,
    l1: Uint8Array,
    reftable: Uint8Array,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.l2Entries = this.clusterSize / 8;
    this.refcountBits = 2 ** refcountOrder;
    this.refblockEntries = (this.clusterSize * 8) / this.refcountBits;
    this.sizeBytes = Math.floor(virtualSize / 512) * 512;
    this.discardGranularity = this.clusterSize;
    // A v2 image has no zero flag: dropping a cluster would make the backing file's data reappear (QEMU's qcow2_cluster_discard does exactly that; pvbox promises zeros, so it does not offer discard there).
    this.canDiscard = !readonly && (version >= 3 || backing === undefined);
    this.l1 = l1;
    this.l1View = view(l1);
    this.reftable = reftable;
    this.reftableView = view(reftable);
    this.reftableOffset = reftableOffset;
    this.fileEndCluster = Math.ceil(fileSize / this.clusterSize);
  }

  /** Parses and checks the header (the file is untrusted: every offset is bounds-checked before use), loads L1 and the refcount table, opens the backing chain. */
  static async open(path: string, file: ImageFile, readonly: boolean, label: ImageLabel, chain: string[]): Promise<Qcow2Image> {
    const bad = (why: string) => new ImageError(`${label} is not a valid qcow2 image: ${why}`);
    const fileSize = file.size;
    if (fileSize < V2_HEADER_LENGTH) throw bad(`the file is too short for a header (${fileSize} bytes)`);
    const fixed = new Uint8Array(V3_MIN_HEADER_LENGTH + 8);
    await readFully(file.fh, fixed, 0);
    const h = view(fixed);
    const u64 = (off: number) => h.getBigUint64(off);
    const version = h.getUint32(HDR_VERSION);
    if (version !== 2 && version !== 3) throw new ImageError(`${label}: qcow2 version ${version} is not supported (2 and 3 are)`);
    const clusterBits = h.getUint32(HDR_CLUSTER_BITS);
    if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) throw bad(`cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
    const clusterSize = 2 ** clusterBits;
    let headerLength = V2_HEADER_LENGTH, refcountOrder = 4, incompatible = 0n, autoclear = 0n, compressionType = 0;
    if (version === 3) {
      if (fileSize < V3_MIN_HEADER_LENGTH) throw bad(`the file is too short for a version 3 header (${fileSize} bytes)`);
      headerLength = h.getUint32(HDR_HEADER_LENGTH);
      if (headerLength < V3_MIN_HEADER_LENGTH) throw bad(`header_length ${headerLength} is shorter than ${V3_MIN_HEADER_LENGTH}`);
      if (headerLength > clusterSize) throw bad(`header_length ${headerLength} exceeds the cluster size`);
      incompatible = u64(HDR_INCOMPATIBLE_FEATURES);
      autoclear = u64(HDR_AUTOCLEAR_FEATURES);
      refcountOrder = h.getUint32(HDR_REFCOUNT_ORDER);
      if (refcountOrder > 6) throw bad(`refcount_order ${refcountOrder} is larger than 6`);
      if (headerLength > HDR_COMPRESSION_TYPE) compressionType = fixed[HDR_COMPRESSION_TYPE]!;
    }
    // Incompatible features (qcow2.txt bits 0-4): refuse what pvbox cannot honour.
    if (incompatible & INCOMPAT_DATA_FILE) throw new ImageError(`${label}: qcow2 images with an external data file are not supported`);
    if (incompatible & INCOMPAT_EXTL2) throw new ImageError(`${label}: qcow2 images with extended L2 entries (subclusters) are not supported`);
    if (incompatible & INCOMPAT_COMPRESSION || compressionType !== 0) {
      throw new ImageError(`${label}: qcow2 compression type ${compressionType === 1 ? 'zstd' : compressionType} is not supported (zlib is; convert with 'qemu-img convert -O qcow2')`);
    }
    const unknown = incompatible & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2);
    if (unknown) throw new ImageError(`${label}: qcow2 has unknown incompatible features 0x${unknown.toString(16)}`);
    // Corrupt: QEMU allows reading only (qcow2_do_open). Dirty: the refcounts may be stale (lazy_refcounts); QEMU repairs them on a read-write open; pvbox does not repair, so it reads only.
    if (incompatible & INCOMPAT_CORRUPT && !readonly) throw new ImageError(`${label}: qcow2 image is marked corrupt; repair it with 'qemu-img check -r all' or open it read-only`);
    if (incompatible & INCOMPAT_DIRTY && !readonly) throw new ImageError(`${label}: qcow2 image was not closed cleanly (dirty, lazy refcounts); repair it with 'qemu-img check -r all' or open it read-only`);
    if (h.getUint32(HDR_CRYPT_METHOD) !== 0) throw new ImageError(`${label}: encrypted qcow2 images are not supported`);

    const size = u64(HDR_SIZE);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`virtual size ${size} is too large`);
    const virtualSize = Number(size);
    if (virtualSize < 512) throw new ImageError(`${label}: the virtual disk is smaller than one 512-byte sector (${virtualSize} bytes)`);

    const checkTable = (what: string, offsetBig: bigint, bytes: number): number => {
      if (offsetBig % BigInt(clusterSize) !== 0n) throw bad(`${what} offset 0x${offsetBig.toString(16)} is not cluster-aligned`);
      if (offsetBig === 0n && bytes > 0) throw bad(`${what} is at offset 0 (over the header)`);
      if (offsetBig + BigInt(bytes) > BigInt(fileSize)) throw bad(`${what} lies past the end of the file`);
      return Number(offsetBig);
    };
    const l1Size = h.getUint32(HDR_L1_SIZE);
    if (l1Size * 8 > QCOW_MAX_L1_SIZE) throw bad(`L1 table too large (${l1Size} entries)`);
    const l2Entries = clusterSize / 8;
    const needed = Math.ceil(virtualSize / (clusterSize * l2Entries));
    if (l1Size < needed) throw bad(`L1 table too small for the virtual size (${l1Size} < ${needed} entries)`);
    const l1Offset = checkTable('L1 table', u64(HDR_L1_TABLE_OFFSET), l1Size * 8);
    const reftableClusters = h.getUint32(HDR_REFCOUNT_TABLE_CLUSTERS);
    if (reftableClusters === 0) throw bad('refcount table is empty');
    if (reftableClusters * clusterSize > QCOW_MAX_REFTABLE_SIZE) throw bad(`refcount table too large (${reftableClusters} clusters)`);
    const reftableOffset = checkTable('refcount table', u64(HDR_REFCOUNT_TABLE_OFFSET), reftableClusters * clusterSize);
    const nbSnapshots = h.getUint32(HDR_NB_SNAPSHOTS);
    if (nbSnapshots > 0) {
      if (u64(HDR_SNAPSHOTS_OFFSET) % BigInt(clusterSize) !== 0n) throw bad('snapshot table offset is not cluster-aligned');
      // Writes would have to copy L2 tables shared with snapshots (the COPIED flag protocol for L1 entries); pvbox serves such images read-only.
      if (!readonly) throw new ImageError(`${label}: qcow2 image has ${nbSnapshots} internal snapshot(s); pvbox opens such images read-only only`);
    }

    // The header cluster: extensions and the backing file name must lie inside it (qcow2_read_extensions reads up to the cluster end).
    const headerBytes = Math.min(clusterSize, fileSize);
    const header = new Uint8Array(headerBytes);
    await readFully(file.fh, header, 0);
    const hv = view(header);
    const backingOffset = u64(HDR_BACKING_FILE_OFFSET);
    const backingSize = h.getUint32(HDR_BACKING_FILE_SIZE);
    let backingName: string | undefined;
    if (backingOffset !== 0n && backingSize > 0) {
      if (backingSize > MAX_BACKING_NAME) throw bad(`backing file name too long (${backingSize} bytes)`);
      if (backingOffset + BigInt(backingSize) > BigInt(headerBytes)) throw bad('backing file name lies outside the header cluster');
      backingName = Buffer.from(header.subarray(Number(backingOffset), Number(backingOffset) + backingSize)).toString('utf8');
      if (backingName.includes('\0')) throw bad('backing file name contains a NUL byte');
    }
    let backingFormat: string | undefined;
    const extEnd = backingOffset !== 0n && backingOffset < BigInt(headerBytes) ? Number(backingOffset) : headerBytes;
    for (let off = headerLength; off + 8 <= extEnd;) {
      const type = hv.getUint32(off), len = hv.getUint32(off + 4);
      if (type === EXT_END) break;
      if (off + 8 + len > extEnd) throw bad(`header extension 0x${type.toString(16)} runs past the header`);
      const data = header.subarray(off + 8, off + 8 + len);
      if (type === EXT_BACKING_FORMAT) backingFormat = Buffer.from(data).toString('utf8');
      else if (type === EXT_CRYPTO) throw new ImageError(`${label}: encrypted qcow2 images are not supported`);
      else if (type === EXT_DATA_FILE) throw new ImageError(`${label}: qcow2 images with an external data file are not supported`);
      off += 8 + Math.ceil(len / 8) * 8;
    }

    const l1 = new Uint8Array(l1Size * 8);
    await readFully(file.fh, l1, l1Offset);
    const reftable = new Uint8Array(reftableClusters * clusterSize);
    await readFully(file.fh, reftable, reftableOffset);

    let backing: (BlockImage & VirtualDisk) | undefined;
    if (backingName !== undefined) {
      const backingPath = isAbsolute(backingName) ? backingName : resolve(dirname(path), backingName);
      if (backingFormat !== undefined && backingFormat !== 'raw' && backingFormat !== 'qcow2') throw new ImageError(`${label}: backing file format '${backingFormat}' is not supported (raw and qcow2 are)`);
      backing = await openChainMember(backingPath, true, (backingFormat as 'raw' | 'qcow2' | undefined) ?? 'auto', 'backing', chain, `disk image ${backingPath} (backing file of ${path})`);
    }
    try {
      const image = new Qcow2Image(path, file.fh, readonly, label, virtualSize, version, clusterBits, refcountOrder, l1Offset, reftableOffset, fileSize, backing, l1, reftable);
      if (!readonly && autoclear !== 0n) {
        // Autoclear features (persistent bitmaps…) describe data pvbox does not keep up to date: clear them before the first write, as QEMU does for features it does not know (qcow2_update_header).
        await writeFully(file.fh, new Uint8Array(8), HDR_AUTOCLEAR_FEATURES);
        await file.fh.datasync();
      }
      return image;
    } catch (err) {
      await backing?.close();
      throw err;
    }
  }

  // ---- reads -------------------------------------------------------------------------------

  private corrupt(why: string): ImageError { return new ImageError(`${this.label} is corrupt: ${why}`); }

  private check(offset: number, len: number, what: string): void {
    if (this.closed) throw new ImageError(`${this.label} is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || len < 0 || offset + len > this.sizeBytes) {
      throw new ImageError(`${this.label}: ${what} of ${len} bytes at ${offset} is outside the disk (${this.sizeBytes} bytes)`);
    }
  }

  /** Runs fn as an I/O that may use clusters by their current mapping (see `inflight`). */
  private async tracked<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.inflight.add(p);
    try {
      return await p;
    } finally {
      this.inflight.delete(p);
    }
  }

  /** Waits until every I/O that started before now has finished (so none still uses a cluster we are about to free). */
  private async quiesce(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private async getL2(l2Offset: number): Promise<Uint8Array> {
    const hit = this.l2Cache.get(l2Offset);
    if (hit) {
      this.l2Cache.delete(l2Offset);
      this.l2Cache.set(l2Offset, hit); // most recently used last
      return hit;
    }
    let loading = this.l2Loading.get(l2Offset);
    if (!loading) {
      loading = (async () => {
        const table = new Uint8Array(this.clusterSize);
        await readFully(this.fh, table, l2Offset);
        return table;
      })();
      this.l2Loading.set(l2Offset, loading);
      try {
        const table = await loading;
        this.l2Cache.set(l2Offset, table);
        this.evictClean(this.l2Cache, this.l2Dirty, L2_CACHE_BYTES);
      } finally {
        this.l2Loading.delete(l2Offset);
      }
    }
    return loading;
  }

  private evictClean(cache: Map<number, Uint8Array>, dirty: Set<number>, maxBytes: number): void {
    const max = Math.max(4, Math.floor(maxBytes / this.clusterSize));
    for (const key of cache.keys()) {
      if (cache.size <= max) break;
      if (!dirty.has(key)) cache.delete(key);
    }
  }

  /** Every cluster the image references lies in the part of the file in use: a hostile offset must not make pvbox write far past the end (a huge sparse file). */
  private checkInFile(off: number, what: string): void {
    if (off >= this.fileEndCluster * this.clusterSize) throw this.corrupt(`${what} offset 0x${off.toString(16)} lies past the end of the file`);
  }

  /** The L2 table offset of L1 entry `l1Index`, checked; 0 if there is none. */
  private l2OffsetOf(l1Index: number): number {
    const off = entryOffset(this.l1View, l1Index);
    if (off % this.clusterSize !== 0) throw this.corrupt(`L2 table offset 0x${off.toString(16)} is not cluster-aligned (L1 index ${l1Index})`);
    this.checkInFile(off, 'L2 table');
    return off;
  }

  private async lookup(guestOffset: number): Promise<Mapping> {
    const cluster = Math.floor(guestOffset / this.clusterSize);
    const l1Index = Math.floor(cluster / this.l2Entries), l2Index = cluster % this.l2Entries;
    const l2Offset = this.l2OffsetOf(l1Index);
    if (l2Offset === 0) return { kind: 'unallocated' };
    return this.classify(view(await this.getL2(l2Offset)), l2Index);
  }

  private classify(t: DataView, i: number): Mapping {
    const hi = entryHi(t, i), lo = entryLo(t, i);
    if (hi & OFLAG_COMPRESSED_HI) return { kind: 'compressed', hi, lo };
    const host = entryOffset(t, i);
    if (host % this.clusterSize !== 0) throw this.corrupt(`cluster offset 0x${host.toString(16)} is not cluster-aligned`);
    if (host !== 0) this.checkInFile(host, 'data cluster');
    if (lo & OFLAG_ZERO_LO) return { kind: 'zero', host };
    if (host === 0) return { kind: 'unallocated' };
    return { kind: 'normal', host, copied: (hi & OFLAG_COPIED_HI) !== 0 };
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.check(offset, buf.length, 'read');
    await this.tracked(() => this.readMapped(offset, buf));
  }

  async readVirtual(offset: number, buf: Uint8Array): Promise<void> {
    const inside = Math.max(0, Math.min(buf.length, this.virtualSize - offset));
    if (inside > 0) await this.tracked(() => this.readMapped(offset, buf.subarray(0, inside)));
    buf.fill(0, inside);
  }

  /** Reads a range inside the virtual size, cluster by cluster; host-contiguous clusters become one read. */
  private async readMapped(offset: number, buf: Uint8Array): Promise<void> {
    const jobs: Promise<void>[] = [];
    let run: { host: number; start: number; len: number } | undefined;
    const flushRun = () => {
      if (run) jobs.push(readFully(this.fh, buf.subarray(run.start, run.start + run.len), run.host));
      run = undefined;
    };
    for (let done = 0; done < buf.length;) {
      const pos = offset + done;
      const inCluster = pos % this.clusterSize;
      const len = Math.min(buf.length - done, this.clusterSize - inCluster);
      const m = await this.lookup(pos);
      const part = buf.subarray(done, done + len);
      if (m.kind === 'normal') {
        const host = m.host + inCluster;
        if (run && run.host + run.len === host) run.len += len;
        else { flushRun(); run = { host, start: done, len }; }
      } else {
        flushRun();
        if (m.kind === 'zero') part.fill(0);
        else if (m.kind === 'unallocated') {
          if (this.backing) jobs.push(this.backing.readVirtual(pos, part));
          else part.fill(0);
        } else {
          jobs.push(this.readCompressed(m.hi, m.lo).then((data) => part.set(data.subarray(inCluster, inCluster + len))));
        }
      }
      done += len;
    }
    flushRun();
    await Promise.all(jobs);
  }

  /** The (host offset, byte length) of a compressed cluster's data (qcow2.txt "Compressed Clusters Descriptor"; qcow2_parse_compressed_l2_entry). */
  private compressedExtent(hi: number, lo: number): { offset: number; length: number } {
    const entry = (BigInt(hi) << 32n) | BigInt(lo);
    const csizeShift = BigInt(62 - (this.clusterBits - 8));
    const offset = Number(entry & ((1n << csizeShift) - 1n));
    const sectors = Number((entry >> csizeShift) & ((1n << BigInt(this.clusterBits - 8)) - 1n)) + 1;
    const length = sectors * 512 - (offset % 512);
    if (offset + length > Number.MAX_SAFE_INTEGER || offset < this.clusterSize) throw this.corrupt(`compressed cluster at 0x${offset.toString(16)} is out of range`);
    return { offset, length };
  }

  private async readCompressed(hi: number, lo: number): Promise<Uint8Array> {
    const key = `${hi}:${lo}`;
    const hit = this.compressedCache.get(key);
    if (hit) return hit;
    const { offset, length } = this.compressedExtent(hi, lo);
    const input = new Uint8Array(length);
    await readFully(this.fh, input, offset);
    // Raw deflate (window -12 in QEMU's qcow2_compress); the stream may end before its last sector does, and decompression stops at one cluster (qcow2_decompress).
    const out = await new Promise<Buffer>((res, rej) => inflateRaw(input, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: this.clusterSize }, (err, data) => (err ? rej(err) : res(data))))
      .catch(() => { throw this.corrupt(`compressed cluster at 0x${offset.toString(16)} does not decompress`); });
    if (out.length !== this.clusterSize) throw this.corrupt(`compressed cluster at 0x${offset.toString(16)} decompresses to ${out.length} bytes, not ${this.clusterSize}`);
    const data = new Uint8Array(out.buffer, out.byteOffset, out.length);
    this.compressedCache.set(key, data);
    for (const k of this.compressedCache.keys()) {
      if (this.compressedCache.size <= COMPRESSED_CACHE_CLUSTERS) break;
      this.compressedCache.delete(k);
    }
    return data;
  }

  // ---- writes ------------------------------------------------------------------------------

  async write(offset: number, buf: Uint8Array): Promise<void> {
    this.check(offset, buf.length, 'write');
    if (this.readonly) throw new ImageError(`${this.label} is read-only`);
    // Fast path: every cluster already belongs to this image alone; data goes straight to it, concurrently with other such writes.
    if (await this.tracked(() => this.writeInPlace(offset, buf))) return;
    await this.metadataLock.run(() => this.writeAllocating(offset, buf));
  }

  /** Writes buf if every cluster it touches is a normal cluster with refcount 1 (COPIED); otherwise writes nothing and returns false. */
  private async writeInPlace(offset: number, buf: Uint8Array): Promise<boolean> {
    const pieces: { host: number; start: number; len: number }[] = [];
    for (let done = 0; done < buf.length;) {
      const pos = offset + done;
      const inCluster = pos % this.clusterSize;
      const len = Math.min(buf.length - done, this.clusterSize - inCluster);
      const m = await this.lookup(pos);
      if (m.kind !== 'normal' || !m.copied) return false;
      const last = pieces[pieces.length - 1];
      if (last && last.host + last.len === m.host + inCluster) last.len += len;
      else pieces.push({ host: m.host + inCluster, start: done, len });
      done += len;
    }
    await Promise.all(pieces.map((p) => writeFully(this.fh, buf.subarray(p.start, p.start + p.len), p.host)));
    return true;
  }

  /**
   * Under metadataLock: clusters this image owns are written in place; each run of other clusters
   * (unallocated, zero, compressed, shared) gets newly allocated clusters, filled with the old
   * contents around the written part (copy-on-write from the backing file, a compressed cluster or
   * zeros), written, and only then linked into L2 (qcow2-cluster.c qcow2_alloc_cluster_link_l2).
   */
  private async writeAllocating(offset: number, buf: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const firstCluster = Math.floor(offset / cs), endCluster = Math.ceil((offset + buf.length) / cs);
    const inPlace: Promise<void>[] = [];
    for (let c = firstCluster; c < endCluster;) {
      const m = await this.lookup(c * cs);
      if (m.kind === 'normal' && m.copied) {
        const from = Math.max(offset, c * cs), to = Math.min(offset + buf.length, (c + 1) * cs);
        inPlace.push(writeFully(this.fh, buf.subarray(from - offset, to - offset), m.host + (from - c * cs)));
        c++;
        continue;
      }
      let runEnd = c + 1;
      while (runEnd < endCluster) {
        const next = await this.lookup(runEnd * cs);
        if (next.kind === 'normal' && next.copied) break;
        runEnd++;
      }
      await this.writeNewClusters(c, runEnd, offset, buf);
      c = runEnd;
    }
    await Promise.all(inPlace);
    if (this.tooMuchDirty()) await this.writeBackMetadata();
  }

  private async writeNewClusters(firstCluster: number, endCluster: number, offset: number, buf: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const runStart = firstCluster * cs, runLen = (endCluster - firstCluster) * cs;
    const data = new Uint8Array(runLen);
    const from = Math.max(offset, runStart), to = Math.min(offset + buf.length, runStart + runLen);
    // Copy-on-write: the head and tail of the run keep what a read returns there now.
    if (from > runStart) await this.readVirtual(runStart, data.subarray(0, from - runStart));
    if (to < runStart + runLen) await this.readVirtual(to, data.subarray(to - runStart));
    data.set(buf.subarray(from - offset, to - offset), from - runStart);
    // L2 tables first, so that a new table does not land between the data clusters.
    for (let c = firstCluster; c < endCluster; c++) await this.l2ForWrite(Math.floor(c / this.l2Entries));
    const host = await this.allocClusters(endCluster - firstCluster);
    await writeFully(this.fh, data, host);
    for (let c = firstCluster; c < endCluster; c++) {
      const l1Index = Math.floor(c / this.l2Entries);
      const table = await this.l2ForWrite(l1Index);
      const t = view(table), i = c % this.l2Entries;
      this.releaseOld(this.classify(t, i));
      setEntry(t, i, host + (c - firstCluster) * cs, OFLAG_COPIED_HI);
      this.markL2Dirty(this.l2OffsetOf(l1Index), table);
    }
  }

  private tooMuchDirty(): boolean {
    return (this.l2Dirty.size + this.refblockDirty.size) * this.clusterSize > Math.max(MAX_DIRTY_BYTES, 16 * this.clusterSize) || this.pendingFrees.length > MAX_PENDING_FREES;
  }

  /** Marks a table changed; it is (re)inserted in the cache because a clean one may have been evicted while we awaited it. Dirty tables are never evicted. */
  private markL2Dirty(off: number, table: Uint8Array): void {
    this.l2Cache.set(off, table);
    this.l2Dirty.add(off);
  }

  /** Queues the host storage an L2 entry used to reference for freeing (after the new metadata is on disk). */
  private releaseOld(m: Mapping): void {
    if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) this.queueFree(m.host / this.clusterSize, 1);
    else if (m.kind === 'compressed') {
      // qcow2_free_any_cluster: every cluster the compressed bytes touch loses one reference.
      const { offset, length } = this.compressedExtent(m.hi, m.lo);
      const start = Math.floor(offset / this.clusterSize);
      this.queueFree(start, Math.floor((offset + length - 1) / this.clusterSize) - start + 1);
    }
  }

  private queueFree(cluster: number, count: number): void {
    const last = this.pendingFrees[this.pendingFrees.length - 1];
    if (last && last.cluster + last.count === cluster) last.count += count;
    else this.pendingFrees.push({ cluster, count });
  }

  /** The L2 table for L1 entry l1Index, made writable: allocated (zeroed) if missing. */
  private async l2ForWrite(l1Index: number): Promise<Uint8Array> {
    const cur = this.l2OffsetOf(l1Index);
    if (cur !== 0) {
      if (!(entryHi(this.l1View, l1Index) & OFLAG_COPIED_HI)) {
        // Without snapshots an L2 table has one reference; the flag is only missing in an image qemu-img check would fix. Set it if the refcount agrees.
        if ((await this.getRefcount(cur / this.clusterSize)) !== 1) throw this.corrupt(`L2 table at 0x${cur.toString(16)} is shared`);
        setEntry(this.l1View, l1Index, cur, OFLAG_COPIED_HI);
        this.l1DirtySectors.add(Math.floor((l1Index * 8) / 512));
      }
      return this.getL2(cur);
    }
    const off = await this.allocClusters(1);
    const table = new Uint8Array(this.clusterSize);
    this.l2Cache.set(off, table);
    this.l2Dirty.add(off);
    setEntry(this.l1View, l1Index, off, OFLAG_COPIED_HI);
    this.l1DirtySectors.add(Math.floor((l1Index * 8) / 512));
    return table;
  }

  // ---- refcounts and allocation (qcow2-refcount.c) ----------------------------------------

  private get reftableEntries(): number { return this.reftable.length / 8; }

  private refblockOffsetOf(rtIndex: number): number {
    if (rtIndex >= this.reftableEntries) return 0;
    const off = entryOffset(this.reftableView, rtIndex);
    if (off % this.clusterSize !== 0) throw this.corrupt(`refcount block offset 0x${off.toString(16)} is not cluster-aligned`);
    this.checkInFile(off, 'refcount block');
    return off;
  }

  private async getRefblock(off: number): Promise<Uint8Array> {
    const hit = this.refblockCache.get(off);
    if (hit) {
      this.refblockCache.delete(off);
      this.refblockCache.set(off, hit);
      return hit;
    }
    const block = new Uint8Array(this.clusterSize);
    await readFully(this.fh, block, off);
    this.refblockCache.set(off, block);
    this.evictClean(this.refblockCache, this.refblockDirty, REFBLOCK_CACHE_BYTES);
    return block;
  }

  /** Refcount entries are refcount_bits wide, big-endian; narrower than a byte they are packed from the least significant bit (qcow2-refcount.c get_refcount_ro0…ro6). */
  private refcountIn(block: Uint8Array, i: number): number {
    const bits = this.refcountBits;
    if (bits < 8) return (block[Math.floor((i * bits) / 8)]! >> ((i * bits) % 8)) & ((1 << bits) - 1);
    const v = view(block), bytes = bits / 8;
    if (bytes === 1) return block[i]!;
    if (bytes === 2) return v.getUint16(i * 2);
    if (bytes === 4) return v.getUint32(i * 4);
    const big = v.getBigUint64(i * 8);
    return big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
  }

  private setRefcountIn(block: Uint8Array, i: number, value: number): void {
    const bits = this.refcountBits;
    if (bits < 8) {
      const byte = Math.floor((i * bits) / 8), shift = (i * bits) % 8, mask = ((1 << bits) - 1) << shift;
      block[byte] = (block[byte]! & ~mask) | ((value << shift) & mask);
      return;
    }
    const v = view(block);
    if (bits === 8) block[i] = value;
    else if (bits === 16) v.setUint16(i * 2, value);
    else if (bits === 32) v.setUint32(i * 4, value);
    else v.setBigUint64(i * 8, BigInt(value));
  }

  private async getRefcount(cluster: number): Promise<number> {
    const off = this.refblockOffsetOf(Math.floor(cluster / this.refblockEntries));
    if (off === 0) return 0;
    return this.refcountIn(await this.getRefblock(off), cluster % this.refblockEntries);
  }

  private async addRefcount(cluster: number, delta: number): Promise<void> {
    const rtIndex = Math.floor(cluster / this.refblockEntries);
    let off = this.refblockOffsetOf(rtIndex);
    if (off === 0) off = await this.createRefblock(rtIndex);
    const block = await this.getRefblock(off);
    const i = cluster % this.refblockEntries;
    const value = this.refcountIn(block, i) + delta;
    if (value < 0) throw this.corrupt(`refcount of cluster ${cluster} would drop below zero`);
    if (value >= 2 ** Math.min(this.refcountBits, 52)) throw this.corrupt(`refcount of cluster ${cluster} overflows`);
    this.setRefcountIn(block, i, value);
    this.refblockCache.set(off, block);
    this.refblockDirty.add(off);
    if (value === 0 && cluster < this.freeClusterHint) this.freeClusterHint = cluster;
  }

  /** A cluster can be allocated if its refcount is 0; cluster 0 (the header) never is. Past the high-water mark the file has never been used. */
  private async isFree(cluster: number): Promise<boolean> {
    if (cluster === 0) return false;
    if (cluster >= this.fileEndCluster) return true;
    return (await this.getRefcount(cluster)) === 0;
  }

  /**
   * Allocates `count` contiguous clusters (refcount 1) and returns the host offset of the first
   * (qcow2-refcount.c alloc_clusters_noref + update_refcount). Refcount blocks the range needs are
   * created first; if one of them lands inside the range, the search starts again.
   */
  private async allocClusters(count: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 64) throw this.corrupt('cannot find free clusters (refcount blocks keep colliding)');
      let start = Math.max(1, this.freeClusterHint), found = 0;
      while (found < count) {
        if (await this.isFree(start + found)) found++;
        else { start += found + 1; found = 0; }
        if (start + found > Number.MAX_SAFE_INTEGER / this.clusterSize / 2) throw new ImageError(`${this.label}: the image file is full`);
      }
      let created = false;
      for (let rt = Math.floor(start / this.refblockEntries); rt <= Math.floor((start + count - 1) / this.refblockEntries); rt++) {
        if (this.refblockOffsetOf(rt) === 0) { await this.createRefblock(rt); created = true; }
      }
      if (created) {
        let stillFree = true;
        for (let c = start; c < start + count && stillFree; c++) stillFree = await this.isFree(c);
        if (!stillFree) continue;
      }
      for (let c = start; c < start + count; c++) {
        if (c >= this.fileEndCluster && (await this.getRefcount(c)) !== 0) throw this.corrupt(`cluster ${c} past the end of the file has a refcount`);
        await this.addRefcount(c, 1);
      }
      this.freeClusterHint = start + count;
      this.fileEndCluster = Math.max(this.fileEndCluster, start + count);
      return start * this.clusterSize;
    }
  }

  /**
   * Creates the refcount block for refcount-table index rtIndex at the end of the file. If that
   * cluster is one the block covers, the block counts itself (as alloc_refcount_block prefers);
   * otherwise the block's own refcount goes where its cluster is counted.
   */
  private async createRefblock(rtIndex: number): Promise<number> {
    if (rtIndex >= this.reftableEntries) await this.growReftable(rtIndex + 1);
    const cluster = this.fileEndCluster++;
    const off = cluster * this.clusterSize;
    const block = new Uint8Array(this.clusterSize);
    this.refblockCache.set(off, block);
    this.refblockDirty.add(off);
    setEntry(this.reftableView, rtIndex, off);
    this.reftableDirty = true;
    if (Math.floor(cluster / this.refblockEntries) === rtIndex) this.setRefcountIn(block, cluster % this.refblockEntries, 1);
    else await this.addRefcount(cluster, 1);
    return off;
  }

  /**
   * Grows the refcount table (in memory) to at least `minEntries`, at a new place at the end of
   * the file. The header is switched to it at the next write-back, after the new table is on disk;
   * the old table's clusters are freed after that (qcow2-refcount.c alloc_refcount_block's
   * "new refcount table" steps, in the same order).
   */
  private async growReftable(minEntries: number): Promise<void> {
    const perCluster = this.clusterSize / 8;
    const newClusters = Math.ceil(Math.max(minEntries, this.reftableEntries * 2) / perCluster);
    if (newClusters * this.clusterSize > QCOW_MAX_REFTABLE_SIZE) throw new ImageError(`${this.label}: the refcount table would exceed QEMU's limit; the image is full`);
    const oldClusters = this.reftable.length / this.clusterSize;
    const grown = new Uint8Array(newClusters * this.clusterSize);
    grown.set(this.reftable);
    this.reftable = grown;
    this.reftableView = view(grown);
    const first = this.fileEndCluster;
    this.fileEndCluster += newClusters;
    if (!this.reftableMoved) this.reftableMoved = { oldOffset: this.reftableOffset, oldClusters };
    else this.queueFree(this.reftableOffset / this.clusterSize, oldClusters); // an intermediate table never reached the header
    this.reftableOffset = first * this.clusterSize;
    this.reftableDirty = true;
    for (let c = first; c < first + newClusters; c++) await this.addRefcount(c, 1);
  }

  // ---- write-back, flush, discard ---------------------------------------------------------

  /**
   * Writes dirty metadata in the order that keeps the image consistent after a crash at any point
   * (QEMU's cache dependencies: refcount blocks before the tables that use the clusters, L2 tables
   * before L1): refcount blocks, [fsync], refcount table (a moved one: table, fsync, header),
   * [fsync], L2 tables, [fsync], L1 entries, fsync; then the frees queued by overwrites and
   * discards are applied (after in-flight I/O that might still use those clusters has finished)
   * and their refcount blocks written. A crash can then only leak clusters, never share one.
   */
  private async writeBackMetadata(): Promise<void> {
    const anyLater = () => this.reftableDirty || this.l2Dirty.size > 0 || this.l1DirtySectors.size > 0;
    if (this.refblockDirty.size > 0) {
      await this.writeRefblocks();
      if (anyLater()) await this.fh.sync();
    }
    if (this.reftableDirty) {
      await writeFully(this.fh, this.reftable, this.reftableOffset);
      if (this.reftableMoved) {
        await this.fh.sync();
        const hdr = new Uint8Array(12);
        const hv = view(hdr);
        hv.setBigUint64(0, BigInt(this.reftableOffset));
        hv.setUint32(8, this.reftable.length / this.clusterSize);
        await writeFully(this.fh, hdr, HDR_REFCOUNT_TABLE_OFFSET); // refcount_table_offset and refcount_table_clusters together, one sector
        const { oldOffset, oldClusters } = this.reftableMoved;
        this.reftableMoved = undefined;
        this.queueFree(oldOffset / this.clusterSize, oldClusters);
      }
      this.reftableDirty = false;
      if (this.l2Dirty.size > 0 || this.l1DirtySectors.size > 0) await this.fh.sync();
    }
    if (this.l2Dirty.size > 0) {
      const dirty = [...this.l2Dirty];
      this.l2Dirty.clear();
      await Promise.all(dirty.map((off) => writeFully(this.fh, this.l2Cache.get(off)!, off)));
      if (this.l1DirtySectors.size > 0) await this.fh.sync();
    }
    if (this.l1DirtySectors.size > 0) {
      const sectors = [...this.l1DirtySectors];
      this.l1DirtySectors.clear();
      await Promise.all(sectors.map((s) => writeFully(this.fh, this.l1.subarray(s * 512, Math.min(this.l1.length, (s + 1) * 512)), this.l1Offset + s * 512)));
    }
    if (this.pendingFrees.length > 0) {
      await this.fh.sync();
      await this.quiesce();
      const frees = this.pendingFrees;
      this.pendingFrees = [];
      const emptied: PendingFree[] = [];
      for (const { cluster, count } of frees) {
        for (let c = cluster; c < cluster + count; c++) {
          await this.addRefcount(c, -1);
          if ((await this.getRefcount(c)) !== 0) continue;
          const last = emptied[emptied.length - 1];
          if (last && last.cluster + last.count === c) last.count++;
          else emptied.push({ cluster: c, count: 1 });
        }
      }
      // Decrements written after the tables that stopped using the clusters: a crash before this only leaks them.
      await this.writeRefblocks();
      // Give the storage of unused clusters back to the file system, as QEMU passes a guest discard down to the file (qcow2_process_discards).
      for (const { cluster, count } of emptied) {
        // SAFETY: integer arguments only; the clusters are unreferenced and cannot be reallocated while we hold metadataLock. Failure (no hole support) only costs space.
        fallocate(this.fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, cluster * this.clusterSize, count * this.clusterSize);
      }
    }
  }

  private async writeRefblocks(): Promise<void> {
    const dirty = [...this.refblockDirty];
    this.refblockDirty.clear();
    await Promise.all(dirty.map((off) => writeFully(this.fh, this.refblockCache.get(off)!, off)));
  }

  async flush(): Promise<void> {
    if (this.readonly || this.closed) return;
    await this.metadataLock.run(async () => {
      await this.writeBackMetadata();
      // fsync, not fdatasync: the file grows as clusters are allocated.
      await this.fh.sync();
    });
  }

  /**
   * Drops whole clusters (qcow2-cluster.c qcow2_cluster_discard, discard_in_l2_slice): v3 marks
   * them zero (so neither old data nor the backing file shows through), v2 without a backing file
   * unallocates them; their storage is freed. The partial clusters at the ends are zeroed instead,
   * so every discarded byte reads as zero afterwards.
   */
  async discard(offset: number, len: number): Promise<void> {
    this.check(offset, len, 'discard');
    if (!this.canDiscard) throw new ImageError(`${this.label}: discard is not supported (qcow2 version 2 with a backing file)`);
    if (len === 0) return;
    await this.metadataLock.run(async () => {
      const cs = this.clusterSize;
      const end = offset + len;
      const wholeStart = Math.ceil(offset / cs) * cs, wholeEnd = Math.floor(end / cs) * cs;
      if (wholeStart >= wholeEnd) return this.zeroRange(offset, end);
      await this.zeroRange(offset, wholeStart);
      await this.zeroRange(wholeEnd, end);
      for (let c = wholeStart / cs; c < wholeEnd / cs;) {
        const l1Index = Math.floor(c / this.l2Entries);
        const tableEnd = Math.min(wholeEnd / cs, (l1Index + 1) * this.l2Entries);
        if (this.l2OffsetOf(l1Index) === 0 && this.backing === undefined) { c = tableEnd; continue; } // nothing allocated, reads zeros already
        const table = await this.l2ForWrite(l1Index);
        const t = view(table);
        for (; c < tableEnd; c++) {
          const i = c % this.l2Entries;
          const m = this.classify(t, i);
          if (m.kind === 'zero' && m.host === 0) continue;
          if (m.kind === 'unallocated' && this.backing === undefined) continue;
          this.releaseOld(m);
          if (this.version >= 3) setEntry(t, i, 0, 0, OFLAG_ZERO_LO);
          else setEntry(t, i, 0);
        }
        this.markL2Dirty(this.l2OffsetOf(l1Index), table);
        if (this.tooMuchDirty()) await this.writeBackMetadata();
      }
    });
  }

  /** Under metadataLock: makes [from, to) (inside one cluster) read as zeros, skipping clusters that already do. */
  private async zeroRange(from: number, to: number): Promise<void> {
    if (to <= from) return;
    const m = await this.lookup(from);
    if (m.kind === 'zero' || (m.kind === 'unallocated' && this.backing === undefined)) return;
    await this.writeAllocating(from, new Uint8Array(to - from));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readonly) await this.flush();
    } finally {
      this.closed = true;
      await this.fh.close(); // releases the OFD locks
      await this.backing?.close();
    }
  }
}
