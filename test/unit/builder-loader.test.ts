// Unit tests for kernel image loading (src/builder: bzimage, decompress, xz, lz4, elf, elfnotes), against synthetic ELFs, fixed vectors and, when cached, real Debian kernels.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ImageError } from '../../src/errors.js';
import { bzImagePayload, loadKernelFile, loadKernelImage, parseBzImageHeader } from '../../src/builder/bzimage.js';
import { decompressPayload, detectCompression } from '../../src/builder/decompress.js';
import { loadSegments, parseXenKernel, PF_R, PF_W, PF_X, type XenKernel } from '../../src/builder/elf.js';
import {
  XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HV_START_LOW,
  XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_INIT_P2M, XEN_ELFNOTE_L1_MFN_VALID, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_MOD_START_PFN,
  XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_PAE_MODE, XEN_ELFNOTE_SUPPORTED_FEATURES, XEN_ELFNOTE_SUSPEND_CANCEL,
  XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
} from '../../src/builder/elfnotes.js';
import { ARCHIVE_MAGICNUMBER, lz4DecompressBlock, lz4LegacyDecompress } from '../../src/builder/lz4.js';
import { bcjX86Decode, lzmaDecompress, xzDecompress } from '../../src/builder/xz.js';

// ---------------------------------------------------------------------------
// Test data generators (the vectors below were made from these with xz 5.4 and lz4 1.9:
// xzX86 = xz --check=crc32 --x86 --lzma2=preset=6,dict=1MiB < x86ish(6000);
// xzPeriodic = xz --check=crc64 --lzma2=preset=6,dict=1MiB < periodic(2500000) (two LZMA2 chunks);
// xzRandom = xz --check=sha256 < random(300) (an uncompressed LZMA2 chunk);
// xzDelta = xz --delta=dist=4 --lzma2 < x86ish(100); lzmaAlone = xz --format=lzma < x86ish(6000);
// lz4Legacy = lz4 -l -9 < periodic(20000); lz4Text = lz4 -l < LZ4_TEXT;
// zstdElfish = zstd -19 < ("\x7fELF" + x86ish(6000)), from a pipe as the kernel build does: no content size)

function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
}

/** Pseudo x86 code whose CALL/JMP targets repeat, the shape the BCJ filter exists for. */
function x86ish(n: number): Uint8Array {
  const r = prng(0x1234);
  const out = new Uint8Array(n);
  const targets = [0x400, 0x1230, 0x2000, 0x3ff0, 0x777];
  let p = 0;
  const put = (...b: number[]): void => { for (const x of b) if (p < n) out[p++] = x & 0xff; };
  while (p < n) {
    const k = r() % 6;
    if (k === 0) put(0x55, 0x48, 0x89, 0xe5);
    else if (k === 1 || k === 2) {
      const t = targets[r() % targets.length]!;
      const rel = (t - (p + 5)) | 0;
      put(k === 1 ? 0xe8 : 0xe9, rel, rel >> 8, rel >> 16, rel >> 24);
    } else if (k === 3) put(0xc3);
    else if (k === 4) put(0x0f, 0x1f, 0x44, 0x00, 0x00);
    else put(0x48, 0x8b, r() & 0xff, r() & 0x7);
  }
  return out;
}

/** A 997-byte random block repeated, with one byte flipped every 64 KiB. */
function periodic(n: number): Uint8Array {
  const r = prng(99);
  const block = new Uint8Array(997);
  for (let i = 0; i < block.length; i++) block[i] = r() & 0xff;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = block[i % 997]!;
  for (let i = 65536; i < n; i += 65536) out[i]! ^= 0x5a;
  return out;
}

function random(n: number): Uint8Array {
  const r = prng(7);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r() & 0xff;
  return out;
}

const LZ4_TEXT = 'pvbox pvbox pvbox! '.repeat(30) + 'the end';

const VECTORS = {
  xzX86:
    '/Td6WFoAAAFpIt42AgEEACEBEACLIW9J4BdvByVdACQi2EBmXDovJlYA2LZgkf9iuOi/sLy1+gXP1TU9bTxnLaKPH30p8mql' +
    'bqMw3pb2E3/sqkL+xh0AIaUT7vqpyD3GqzJrsBmsXLJW5lcxX9YHFTaxDR+3W6LZMSySrpVs4zzCJzG3dUiHqPjbgConzXyB' +
    'DRhsGfCPxn+j3PIC2JH7joqIL+bNpnhDhABFcOaE44gFdq/1vllTUqNwWcKU4jqFj7VBcBkxnsKVH+rYYUvzW4i9PtCdAslA' +
    'X6Y2pAdk5RyS6d+W1rlhF+0TBu9i/BgQsFh1q/giL8MxGLmhwXW7U4vqzic1hz6OM3cuQ9frLoZ8WWl6Gsel7Oxkubh2NKm+' +
    'xBA0Dqs0kcAddhwtcu7kAjsYKxIA/c1k5VbF2AyNndTKlJnkjF4XexFmScNAoxTGzDv3E1M9siHFRxcJjKFXRv5rwT6+iHCF' +
    '5NKi5JY/41t05BOpmXvQPMG+D8Ofj10N9UrS+WtL/mXCli05TVWQ7B/E/q23TeZEdMeQzi9h3cqC1O940HI0zYlWiCjWM4j/' +
    'i8rG+T7aRUddDhjA4xlgVX/ToOzz8wDlVddAydqobaryE3pSj5jX+rAQ8CNXyEdUu3D7fcOdN4SUU+vfct8vQF/Kfjodmbvb' +
    'ZeOnwxyqT/jYBhaLLMsVxq2icnLKTQTQkClLGTUBbEURsXctvfqMQ35+RfcyqF7xU15wsRvl764+G0S9RLpfZyS0ed4J5a5a' +
    'Bz4y+JRTLsOWouS5zyH/zDO/1Yhammsg75YStKIuEAHBVzd9Df3AqnSyisJP14VTivYVdbef4hUIdmTfIZMobOCZx/TXEIZE' +
    'dBJjmXOtNgYakFPan/zbUc2HgVruRTke+3AMKq0ky0iKbU/ZEg7/5vLxJPo8pi3pRMMb7S9HTshPQStVyOiGVVRBBt5yfvu6' +
    'cq0kPgVHNwRmSuLqRiDnYNjCk8X8UNh7xhyCE0P1bTmqwokbNVkLJGx3LgKY44hdDHBvd+ipKs1VTiVanW7D0ZSshl770MKr' +
    'lwr5c4mcgGmksfhR7vuTSuhynt+4/MzFMH8M/GmjF7U/DPE0hPz7S1a73x0HD7QLBOeASdWRDipvb3s0aDrjCXxKf/SxfRxJ' +
    'jD3MXFA39geW1pk+uGb+LCmVhTQBvpkV13KWkK07i0ld0kKgK2KdMANv+4/2dcuMMt8sh66xaFzCoQ18Pe47h8bfc8uOF1Un' +
    'lytzp8a6QHNemDqMnyTdFiOcYzt5ipr8lByMRz6Amj9MVwXUU7s/cvVzqpz2dpDIyMo7ifVA8p03yWu7LwG7AsiASi1jwvkO' +
    'SuKdMa1snbk+IzCse2irXeLaY3slRA3n3eEAJD465YmOey3yBGzPG8zPrwmhuUJtVktgdHlJSmx3DbGuXVwaTY3GYtAhk+jb' +
    'xawqZYgrID81nuWKjKozoYZJJ4N2VguT98G4edX1WxyDL6Ngmx8tpSrA5kdDMR2Zd8PnkigKza8VvYLzMw8ofMx9kUprvPya' +
    'F5ww31nA7Z08w0tNSZL51t/mSMZsE6zF2lfRZ97oR4Z1RyiBda/gge6V3s9FRQ52oHAa/LwxRAAd/7x3bKNjOLu4smOC4KNI' +
    'b7l/ZKVlsDVTD0nhzTNjcrNtOikuiubSEAyRwJ1WrIyqwOnGds5PUdT6QEQaJ00QcL4NY9dnJYN7oGdZB5brIwxOVBEw3O6j' +
    'E+cO7TSOQ5JAK20gDoFnTK6wvjsiHSmOSQ/DiltX2yqqp/EITKMZ0FtniysAqsbCqnWAc+RmHJpke/HDutCFxYD6MHgIA9Mr' +
    's/QUARiQCACvniEA2Ap3xzs7DOxY86UMBXN/qhXwMhKHZ7FOy71i32cW4hPq7cqS5BQDo1Ga4Ri3pSJljYV6SfOzjW+8MD+S' +
    'OfFDpWuxh1kJ0jqaCam5vdh6QW6mIqJIeEKf9xaHPfdY8sWsOwWK875Sb150sNV7uUZnA47uBTsOEaWuVySN5woA2VlqFCGk' +
    'ESXPGaA3AUV9xUGhBE7DQaWH3qQND+LYPw0/KVReEF80oUpito3d0rwY3uenMx4xYeZY4oYl2/ELpf8OQCnVtCALj5qf2jke' +
    'vFzxNEVF5Im/Wksyrd1onTAGUpbEm1GPXRbGeLQIsGBmSFdMwGBrNzj2Fp5JVUsaDcHzuqV/OSghJbASb6xGpGZieY5vOpfx' +
    'B7T9vrpl+Z1KS39KS8zVo8F5VN9tXbIWVBmyDNvlXkFTWnGGBzIFd12WqRJj6ZBBrBTUd7w7xB90YxI+YnFlxoD8+jedwz1U' +
    'GP3cEicu664UuV/ezVolz3YTm1a4f9CckMMO+KmBCyqeX9jx1/aHlzW5uB5lPxYppsICjxl7DWi6jYOvPn1p5lsbb5vBxmAK' +
    '0XvCER0JFYb9R9Cu4KIk4xdO4z34fGUPSJnDbsC5+PMzoC3gHqll3uY6l9eR6+iXc++uUI4sK35fA9KpAAAAAE57s5cAAb0O' +
    '8C4AAFoXhG4+MA2LAgAAAAABWVo=',
  xzPeriodic:
    '/Td6WFoAAATm1rRGAgAhARAAAACocI6G///wBg5dAGK6UuPEGqSj0YVii8Da89kjMpjyHeUV6rr7kkh1cUNqmwBW9SrOzi5s' +
    'wXRQCUtlZrziiwzxjPCUpNBRfAbegKP8U3s2TTsdZOxSJOV7E83CQq76Ko+Y+ZsNfryhoKl1wt6BUmItLdx64Dizd0JU+SrW' +
    'F2Qcp3gzCQodlmDW5YpSlTWe7jYh4/9WH3RdZie/63l2OYV4vz6NzpQKNpKKJAQ9Mi/tt7iDnGyoWj3ljR3kHix7JaLAXSCk' +
    'dWU3UB5ExMJBcHHh3Rp1HQnn7R7UgcSH9pgD5p7EizY2siMs6cC+X8JZrOORPxCaP3NO0VGn7HX7T4982lWT3ah8F5UdvlCq' +
    'rs4o20H/1ZFvKHnk3DVAmrjXJT6jHykhRpEfP6mMSBsy9UhJGgsiCJFEHzlWKnm+QR0kQuhImykZdMkBjz8pjxB62BOoGRKX' +
    'rROrKPH4t2Kbux7U+4cBxXXuVImVjQhMFfCcYVMJnPnQTnRlif1QZe4TvRi/pqu7ocIZ4riHTK6xlm1kzvOI+3YY7QyE2mrq' +
    'AYmuacWc6gcPBgmrZ7d/CtTh0KTfLj+D0OXsFwFJilbBxHPVJeC3YPPN5Lph5KKh2kR5qTFvdoUuh79elXi4oJYhJUP8gShy' +
    'UmE0hzzhn89TJy0Q0w3bWHu0vviCtavKi+GPv2qhOC4zbqFXUGe8w9zENtXXXAJDUz84Sx7JJeGkinp/CwZ3/7ax4SBy4dmP' +
    'Ccc1x5JgyzpImmdP0aOuXOCLdovVfM4cAKgurL4tLpv/QtGTKdekDx8HukqMqmC6y2Z/H73bmGf5MMdHdyj7sPONowQcvPaq' +
    'e2hYWhX7+R8357OJpIvF32w6bfaeVYwu5UOMuVsGaGkvqBJWRJ5Lzf/l1d+ap4qK7kz5tidAQpBQ1eo1gFPG/2Yi+JDLzZLa' +
    '7ZCRPUJHrJHaaM3YggSgB0U1gSyWfqvE+FJPBefQ42qZJBvnp21ms9xt3FywfeAAGGDFoZpr7dID5MMfw8li0xWaXZU0H8zh' +
    'A2RaMYXDeVOl76U4nr+eMVViUPQ3CsMVJXnYqjic4R6Id/Q/J9xouZ0PeiXKSPdD5IWaxZMGwPylIdRchqQH6IJchzH84qwS' +
    'HJsSVvUko/3k3XIfBumdVHOBqMIw1aWrPY68x7o+9bu59zcntHn7W95NxAgxRWq2wjwiyb2OzKsmeJ5rECbUW/qov61RXAnK' +
    'MXhXwYNjcg5J8ALI+wOWYqzF4aqyvekkEzm7hhjSD2iVZupzOTE3E55274lh120hTAbC0mCORwGIiN2OdYJ6IYzzwt5MuHPC' +
    'xvgbcqWmj/DjT0QCbtSzvX0RUqYfVQRmT3jcEYcVI+0iThLKZCWh4Ufx49BgSq8jGaKddKtm5M2a3MRTdyj5fDoreag9S9o1' +
    '8C3pFBdwokqrZ7vw5+eOEGTCtLLDZXfdjAAuWvA63Eu+G9f/YcbeokNPg78vkjc1QOWUr7uULSEYOO/iXAHCCGVpomoXjz7w' +
    '60iFbZGA0mCQ4zi9XTXIgvqxWOXAkAp0EoPDN3ieqGxcnMwwtzgVLeUfwZn4r+BE4ppUryXcamVHEZqsvGp3zp5s2fcy/CXE' +
    'JpubojIoBR9W88Mhew+co2CtGsWsTWU8yZswoyO89MNS2wH2xjH9BI9LLd6Q8UK9DLb9jgM6RlBP57o+A0BeKp0nkz75YF2G' +
    'S2nEk0lrNmsY8p3UHrnVPJ0a7xOsLuD+e3YYbf8fP17S4FeeBMbOMIqxTpleZY128fBVdtxAYERIjKfDYnBbeLtHkcLREvZd' +
    'CZtfS4ck6EzHfUHWLYXD9hv5hzmRYLqrdDNP44acixmHiWpT6ANO/wrLxVzxdRdSamt3heTVfFTDjLp8fikU9LNab+vkS9TJ' +
    'd0TRnMCjCSszPa4d/1hNpASXzDyedVNnseEaK+yWZE+dJb9EIvyNn3QyYMIErVNpI0pvV0JLyqalx8nAC0lOyiFtdOzN1hM6' +
    'dHg/yiQ6JKfTDknRJ3TgeMUQIokFGAFBZJfnB62Ly/rCbeOkasBHSlUObdQEUVpNBrzMKCD3ptwGstSWjMdtx9NWDnkqhiWu' +
    'AF8AED7kp51fmDWpCXtxYo+IEa2eeoR3Ehybk/B/Xr38UzkO1fGjuxhDEXrOySwtgcdoG3unJ+wsg6B1VsBqVzzlshkTeWsA' +
    'n/6zJYrUDMDoBSZC/ELoxiH2BjAcNbKb8AAAAG/DWW8nYBO5AAGPDaDLmAFB5i3KscRn+wIAAAAABFla',
  xzRandom:
    '/Td6WFoAAArh+wyhAgAhARYAAAB0L+WjAQEr5wdDRf+UulevCv3kqP5FNe3aPCswcFPYnEWUV/qhNZeqcd9Wyeilh2bqTIz/' +
    'jTPWgKZ5X8pv1C2ibf9eQ5vfbSW7EGJ3C2ocHmxoPf8njcQ+WHPO05e9KlESZjkFDXPay3FIWMYUIzYZhEOoWjMMEIvkPj40' +
    'iPD3QCG1t/LJlbMo0xOnWGlBZ+6xPdn6dgiTKvmC1OwRXH/5aKuNUsYwIxHH/bDmmR2T5qRYmUwZt/D4MGHDmW5C47Dgw7ph' +
    'UIoBihPf75rfnBZopDMjeI5Ux7dy0imjXq3e4fIsdqn8CfFV7fb84m5JPMCIZdQSYz/de+v4UCpnvLs49op8kQVDEXhLaAfi' +
    'vEhWhw861x9rd3oZysjT4BFRSLiw04AdlDEeEv/QRajtzyJJpt4qAJhIR2h5kGqWSPMY50EHJQMuzaWABql+Cgk0jILVPs9a' +
    'AAHcAqwCAAA6KVDYtunfHAIAAAAAClla',
  xzDelta:
    '/Td6WFoAAATm1rRGAgEDAQMhARaXj3H84ABjAF1dACQi2EBkGBuL5QN/n1QkRDzbT5+QbZNKcerLF0diBxgbqLT6lDE+W6KN' +
    'uBQMEq0yHRdHt7D3rCy4R15loJYlTI9U9kq5s3OVISc6CwWsNBEqQDqpZBxu01UTtJ+AAAAAAADkWf5DFrerdQABeWTV0qSU' +
    'H7bzfQEAAAAABFla',
  lzmaAlone:
    'XQAAgAD//////////wAkIthAZlw8Ooj2pbAI8xwIqePxtJRql3RanDybmb0BgBBT2C8TcxLUiN8ytDo1gmN9goyUlnxaPvzt' +
    'hERNEJI37iRgxDL4bms1QssTB4ZwzihUCAuFN95KOiqM5j453uKCtmm8F0uj1NnujZqg7Aisl3CbTRONbwPMVFIjcXvITb/l' +
    'WIpqmUAycOBdlkBKKVNM6tsUqKfz4gBV+UdIit7gHQTLEU0EE0E8ko3Ua9MU584tXKsaF1HGc7pCUxAyTK9hTXYo+ONOn6i4' +
    'Gj96UCef2iFJochtP3DCwbK6kQLqWeyW7U9RK2KxlI2Bt0FsQZfSCm5al5RAzxM9ov3sK1QfR2mDCFZBUvne8FkZkKdH+Nt+' +
    'FZc/sBUazeGLYORoVyRm+cKA4rTS/0033hMCif4/hE2MDO2+PPUHB1ecek2FZCXpm1kQaZn275LlYAg0hFqymji+ubP1Ov/Y' +
    '/jpZqUdzAEGdIxTnEB78s8ZafZNAJ5NEiIKaVAx81MdibwIRuubtFZT7g6BEhvbr3E2bcIF8qYK9JJL2u7nKzB8q6n9/u3GB' +
    '8OeBJI8eLL4pHpx+A9nCKwbwalj1ZJBOuWy/yqYO7AECwC9N5JWrtnWdCoH4ktJHq+MxhIkTkENxX5RUE3ah7HCkxBcD6ja8' +
    'NfGSWuSjxQakpKJdqQV33WGGZxdDFIbJFxjg54lgsymG0IcnKKHuuNrcMSs46+7pMDSUD/Uv18iZn0mLGYhePIk7Qo9lZAVH' +
    'qGJMSzxF+yyjtLnMOdEaRzyYzz56v/7rACh8Enm0ky7IKVCo16jWT6dwrMkC1g5wxjoXhKgCn+eC4o4JS9H6f5Eyg0MaPPu7' +
    'WpcjGuOLTxU1AduSjITfhzLH/CJ8egy9W9dELmI1hsonJHnSUHyNP5efMsZLUC/l2LxLsMb0D1tjVotgWMfJ2CdAjmVtO+eD' +
    'atp2VQjDYrX401LwUeDxOBUVNVGBppgD+LVrDwZT2x2pG25lyX9LZyPUQ9CBamw6rytb2Bd5YPaCWbI5mP0+7DEL53nyPEUZ' +
    '3TwYWIpIcV22HSz6Bhc1/YTZJWHuvWImlCEfO5MnU+cqt+H9sOrVYr80a2GsDvuSmlqnqm98g64rJUhEAfTaB5hw/Hh881qL' +
    'AiiCsXKdWAv1FOZpEdOxdsFpiSkHSPBui+RG+P57fDRchJTjZ+Cgo85gy6LtWl0b6hgyCizCQf9GjNFiJWdF8NJN8oo06zEN' +
    'ZY2vFTF4Q3eHCADKKwye/d8Xk02lICcqAo+AR4zbs8S4Qer0q31tzulmOKg1qmP8D0BIh/FL1/Kt2aAOxnyFF4W5/z9hjehL' +
    'ktIhBoZQ0b/P1lY3KrlbiBBjD1S0XErWxLVtECfFDT09RWNOde8G7xOG9uiQFKkMjh9KHPglI/vmGaKmbQk29uPN91WcG1L2' +
    'RsskdepQqaY9vhN8M2yzlBjNfTnA3wo7RGVSkwN7yNq4FpDdQNcSJTfGAoi1bc3PPgeq53a82J2QG3zhKSWq/HLE1yVb0P1y' +
    'jH5v6X6NQ8eyOaQ1PQnk375/pe50948FewdQpSYQH/YwHCm5k2OkIUgamus6vbPc/ejlmHgyRC0guMnbSW5CmriK+LAfNTdI' +
    '4p12qrkXvgNHSCBEtjd5e6f+ga9PIDgkjH4u343HHCfF3nlkgvHiYUH3b+/NaqYcZJEWdeYx23fgPW3Oez1rsaPH/qHigKyA' +
    '9hpCHJmzgThOmWfF+xRVAe30oGh2sEDCRd4JiX53giJ7KbKY8RrHoo+GE2gmkQ7c0ewB4BtRBrGh1Esc7bC6KsCDvy3YQUvE' +
    '3Oi12Vld9cSz6lMIAY5dDXJg2sHbWpTwTJZFDZjzvzakZWpJedRkGuYJ/AakQ/CCji7QBXGFJQbdHgwOsPOlRyohTVvugA6o' +
    'Vg1ODTDqVuQIEVNopj2OupwA852mJah3gyNzpBZYmbXnSwR87PCW+Pvpq4QNLYtYXQOOTHZcfL97D3rXNRltYVX0bl3f9qn8' +
    'RWPQN0S0ph97CUnGFNCqx3wRYzBJefdpnUviHVnES6UVQvCfpJCQ1pXgLyrwA24Yt8EhV5ICRy1ra8HmMm0mqB/W8oFjbGMZ' +
    'ayB2hRrRYcr3DmUnQ2TYaCnnGjkYMecFqsI4BAclh9gOeThiyTQ9FyC7d4fTRrwAv2SjpPboYt2DgeXL7pY7GXpbT0AQATrI' +
    'CBmYjJjGxvOAVAE/JoZcflhjf42cm9/nLEVUiohvoz9NvtrmYEMj2cgb7OaPQ1V7khsEdZQMKMpulkp2ZR4X8aFI6AWevECp' +
    '8KiOAvFu5uFWkGcN5HQACZe6NzWY18gkl55UE4zqlXLlZmoovi2nNc+z8Z+dbw2Gm3CDJG7fndI36UkuZqe5QS3v6UTJMs0h' +
    'e/zAZg9MA4KqUfIj489irQQy67smBk1bpopUMS4vGpAYjIgtEEtqN2xadMMSE541fSU03CQWI+tByCSAcjDk1E8VCNilDSEs' +
    'bg17xKsxtif2XOeafdvB3s+KJxTuUORgHn3DMm4eZmxhNLri0lMkOt6j2qglefIDjOpmCpi7LahEGO7od/MhrrQHe0qX3gny' +
    'XQc+5lqhN4Qhunp4vFckYqSm+uEO4Lck+P0PoFVDoUO1uVGxtHjKiVjoz7+jCTNpGmmTWp1D0rHtt+AS0mzgQua8KMidmFLD' +
    'N3FWxU8YtERSbqE/0xD7wFOa6oWuqozsocXU8P3GpPO23+HXkx8A1i3HwBFbpxDbmpTHnk7GYZqPluUFaYUtXcYnIGbo0h+y' +
    'RHs1VqQ9yZdarquvh25NTD7ZNSYH7wu04jv7OXkytAdO13Sxr3YNAGZyTfea0ybK+bT+/IoqTnZE6mERKcimTqvovxln4+1J' +
    'Igrh2++QQZzqLKCw1syl5+0gIC0miV5NqWYjZLcygALeakZZeosmRuCfz1VU807z1DJyNttcq8hY2MebT7MaPigX+nq937tM' +
    'rEmI/tYdXRcLwkMduiCkuMrf/P7n3BSOlrwLB0Zs6czgtMmCwSulakmaJJZytDePQ3bJFfXmFXY2CZ9sbTcXC0Oxmrokevrs' +
    'Xv/WGjXnAx/MavwqetNMm+YI1HyIm8w9FCwtAWJZ++/bXVOiKEXf54+zjVgGVRkYsPoU4YmwFi21CtYXAVWgFYAmtjQjoLRh' +
    'B5uM/er0H40i/c2eK1paxi9bV0+aJ0CxL8mKAiIEJAv3Wl2hvgqX9v3KkqbcMAYfO1MZD5A9651tY6cvTNPvzF+E5+LCx75K' +
    'BFtrdgGiJHsAxGM3mcyVSDsqLwfjKHUp2K2k3H7oar/ce+3U5kxxXgYt/w0vNNiGhbCgrjD8Xt6G0LoXsLh5pdzN1N4GKDqf' +
    'gSx9vnp6uWQbTqbleltGNqPyxLvLmUVFpbCFd/NjykYIYCCBTqu+y88j8dQUh2cbTaFRNOfUVQpn/BPWuC7T9hiWO4fxyC5p' +
    'LADAIbw7j8hZevhqjbUymcVFUgLV8lYfMe31305Mhq8NIf7yWCC4Wk1joj+FqTg5g8/c3v7ozr6gcLwhPhz1blNHVkQCBdbx' +
    'wkqQSul9BdMxXyxv/ffamnAvqbFYf2K5DOOMu+QQI+C96/wuPGftpMmOaf9ewNHLZ9yCZJBhmZ9no7EAIFAA2JT+q32GoPCL' +
    'ropkM+wRHlP/yMrtlAoHU64YvdJBQAru6Ul9dX3iI3lUGFKofkuZ4zIkA4+U+k+EIFF1tB6b//x6tGs=',
  lz4Legacy:
    'AiFMGD0EAAD/////2cXptzx/rjPSDQ77+0VQES0PZb5CHd8+K6O/0YcE5AAKn+K+2P7D+CJlo8eY4WbWUD2p2CeRpbYT4ELJ' +
    'w1J3YOYgF2GaAvXGkNKXH6hQtlvMVH/3MjKSl9UHje97e5g28Pzy4DA0ITESTj+tXvE7cR2/vYOu5iSZ0uaJqjYc2+gczJnV' +
    'r4/IPsQbJtbZsFKxTP8WFNHiyyixpsMyMEgjIeLT/J8t+V09pY8hBaeioPZHPY+8iio9j49iwnafi4m8yNCImOj3eglI32D7' +
    'EG8FsfJxmj3AIQRdnvY1yCMvgo3uuD2aUPDyB2JEDGQg2egCsI9VWl5+Q/CEWhDLioMeQBJtzTOZBQXcPqukunJtjn34WhNR' +
    'eulCmIS68iRgP9kCxAPzbh8M6WoDiZOSfdVrs1aRiugv/9Jw/eAwBFTCEjlffz8Oe72uuRmNiR71i4oLx+6M1NKWwwjjJRQ8' +
    'Yq3UPw9cSni6NvIsdNJEONIwwdwojiqjF4DkZvlXApvpXFO0ojoWMOtVOo7CxKgEwmwP/95e6vmIiSOf4rTMphoK9FvgDBTd' +
    'XwmlsOEiwPWCXXYQdYzc7VhPcq3HNn7b8EYcCKtN3CKSb9kB4YvQYADHJUhrJiF+Q1qsLLJQV54U3BI19FX3heIij2Qzb1YZ' +
    '6O5kX1ehAoAvUDpSOOheeq3oufVzqLyOMBbh7heAIlvhqEC/dd487yWXRDGWKNmDglXpQVKLc1w11diGWcD6fDQANMH1MhJa' +
    'lKn+ENhD8zOQuSDi+EgYg1vVW+8bEhZ5hG1QWdeF8PgtyYs9kJsYEwQ3fmbRWIKiXIxfE9tQCqgQGry8d7jE+mmXAzECo0Iw' +
    'fXl2D6ZJCFB22u9EOBtrQ94wWOcTeU5aWBSSDktGhT1iwDOjzFiTObzXITbZ3iBf+DAxyc596RBwr3Z0Xh8Y2SLd8paQGWsI' +
    'uYI7s7YY/V5PK7ZEgnRcWnLuR8LiluaIR6cova9MNox2VXTu6Yas8kK5AugTr+ChKe1BmD+9SZqVWV5unTEtJZQ/0yw/aPrh' +
    'Wee1DU39mP6mynGlYv1B5nOHg0xp3AWrbjl2dg3qC1RRghXUK7NV8xCG1+1bViKMy1Oiwbe5mwHwjivm8UmpzxIXJZyUxT4O' +
    'AIWbYKddXw1HckztHNCEePo06JTQB1CA5CGtShHRkiJOvWwxVchOQyEz3buGYJgjRvsUxCZ5yWt1FSZXtYEsePwAcuOD7c5x' +
    'sHMIybNV9GwxA/h3gRYZhLINTeAUhOm4wiVEYGVJEBzqBdAIwj0aA1moDcXGKbJuUDruyhTbVcNBJqFh3wAeuVWLtaroxBmM' +
    'fqvlA///////////////////////////////////////////////////////////////////////////////////////////' +
    '////////bVAT4ELJww==',
  lz4Text:
    'AiFMGB4AAABncHZib3ggBgAYIQ0AAgwADxMA//8FcHRoZSBlbmQ=',
  zstdElfish:
    'KLUv/QRobVgAymrcFjMg6oZ0zStlIpeQK8ZAO2AenBtnskIWTz34A55tH2LjnOZ2wr2N7oClh+IKZfUnhBBCyA5kAV0BWwGr' +
    'kJyJ4a0N4KfVDWJjzggb3PRZmiA6Z1UHvuUJfEsD+JqfjPyUa7tty8b0M7Gy7J5zg0YT4Pt2PSRAtPlm16akNho/23RcSpWP' +
    'kbk1gm8ymWSTFennhbFDN8vgTNE2RbUMLGgIamvFXQ4Zg7GrWBwkgPht1CxKjM45/bM4msPdOaqbRF5LD5nfyyt80TBkhZZD' +
    'HptoF22l9vrWgXWGOaAMfS4Rtz5c6cyFQYSjhGUiDt967kN0oKRaSEs5FnxPMquqck8G9JLRCf0c0cHRrS1rfE616pggTPUo' +
    'GL5oKXzBOqNp8DVDa3SQiYdvCi8+fsaNx4rvntbSgVQ5LWRagKc2/3RWSzxyU6TS6MZbcuNklkTTOVxwXyvhe9YKGrXLPBrI' +
    'Vzp8Sz18VbQKB98YHlw8/3WQc7nhKmwlraXFdAa8OcXD3+e04fPJiC9Khq+1p+JzJirXRdzZlrVnpp5VS/iKMBFCL+bFN4fp' +
    'sauWOid6VstWrmvqTjdwAqlQrVLrfCLpeoYcBPK1wAkVceXDINdpqWRbu+7prs55TaXWpx6+Zt+Kr1LwRcXQIKsh+rLsCLrE' +
    'ogKxuhM8YXuZaFTUmiLnckSpxebWWsW5bYRvOqcC4pshjXLeoHBzi1Bb65XY6iAKVZ6eHxX8Qat5LsMcnIhE2qp4SzKj73pH' +
    '/zia54wKwnfveUqjpwawNZ3WXTF+Eaa1uvZ42DlnuDa82glfEwq+q+IhrVFagNcUGj0TTGSt6gFTQ9HwTQnxLSXh29ctfubR' +
    'YLEAj6JbpvLeA8yvDKTgbSB8C8HAVqxUxu0M20PDb17Cdy0BlPgKBt+ytc5oJL5wfU5yQ0mciO7o9fkB38JGMb5hABI7m2L4' +
    'ZjRMMA/fwXdg45NMRj7qAF3PYY2dunmlm9hM9VsXOPs5RAztccrBzmkkRDc7uXoFX7veMPdsh/dfIaSRWb4u+gt727Meoddd' +
    '8agffE1JgD2q8W7npzlmlBm/hvQyT2uUjO22R/nYfNraLcXbMnPnD/PA1zF8zzxzAgXIe3XOpwCfoinoHScVotVNOfPJtY3X' +
    '3TVcmpBet+Crloh9Ckhzc1LndTA9TBs8kZQs8KXrLAAUKVI/23rdwxft7HcriHYhwzd9EtcVOnSpulZsIHlJLivn4bG0+hii' +
    'FMS3wmApQJ1N1Qpt9EZWfy1x8Gz1Jy+N4FtmwteEg8J+kfBUb65m4bsGwPdE64pj8RcW6MpEfAN7Dy3s3Nf1BTWEJjLrwHMF' +
    'oA9P7D+31gJilx4wmer0HGfQteqWwlpnKv3V5oy0PuV21Am+Kgx8swkVvfrhy9eOjqP/ntVu3O7dZsG3r8s8+KJ08D0leCr9' +
    '9AGC0ki1Rbd2wJ82JnmTtlYt2bnK1Qv4Yshwl3tWD+VGVwvxNRnhC6k+B9bGnW0lk6r+vACaewr0RIfNB9vOs9qm0BFZaeoc' +
    'aUfbFcMVB6n6Q68dY+5nIL5WrUOnFlA2fPne95wfxAjSR35aUbm6qHUxaI3HY7iphu/5+KDPFym9kVNfkbpKhfYXyocloq3L' +
    'nEU8EYlPeA1HlClIwqPWEd+91mprIVQ52NO3wueSEL6BUvPTpF9CAWCVermYofNpCV9rdrrbqV8XWkmaBV8Zj5CDke+ll85j' +
    'ro5IvUQyNig8X/fYwDeXV/jGtXlQjD/j4AvA8T9AQaZF8A0l1ls6RnSLRpuYfXQfFWqFsCpPl3P4PrkhfCOsa/jaQTPsRV33' +
    'UN0HIHtJB3hppcSz2rOFq0LMSPim6BBfzay7zjt+dEoC3zYd+CiAfmgsi84nPD7ncg6+J0QttoBbAy2BU1u2VhlpMt/gq3bh' +
    'm9hnMi9Z/b56KeCIpsuLr5ijaKc3u+rsUwuizjTu2JueN8ExgtCoYsG42iKiSdIagiCERbRZ0ml3wqKWhC1TRUNJOrmBEWm8' +
    'WjCB1Azd8QzZM8Gw0vO0AFvOT0/NDyvpAoTdlGsuE5ebAxdx9ASI1cMhIArmHargPIjI/ImwCqGBbCe03hGAUr88RC8gQRe2' +
    'RgghWRbpmpfCAVXGYRZhAF+XfcGwdLsS+1X+nVJ5kv6GI4VLUGHOt+NS0SaDwSfUJ+CtnUg7wUSpJjQzbf2l1PfcB6/1q57w' +
    'F2dMNQJeWslMZxvtgnWUGw8rweSKrERzeYyOFM6A2OobGuwBEh1OdeO3R9NESkhxXwWmhdpEWQAYJRIkWwrTf1vfXmViQuAK' +
    'qO3yJBsD6qDyTLdGTBwtVwGBiljNFEjMEMCBCTZyVj5D3KmIgNgVy6hWI+tWngVQoqhwy/TgxrLsepAsrMdaFqpSedWA4zAX' +
    'bmbm2dCHhB4oEz79EK6z0Gl21Ayt+bYpPXh51y/PvqdxPa79HE3bm0/7dygNZDfrGxGZ3RUxLtroUS0A4sQvxszo9G5BZ0sj' +
    'Li1uvc/kHZET0N9elfcLELLjx3Md3VI3RREU0dGRKUmYhlUF8pDudj4wanfl0QCdj9Z41/heyiGQ2skR5xrIoStZYX+VVIsh' +
    '44MyvyXd5RmJoC9RIgiNyIgLfLjWV2HFpFZluBJxs3LneB6iWI0uyR9BiQCTs63pNK9cZ9bmMJhlxHG857SAnh+gMTlnBHz/' +
    'uqkyFzAtU+iaXlehhYBQVEiInfP6ANyNEzxxKyPScFFM/kOpTl2UetubIC12VrXBtKVlUZbkXhW4C3J+a4Gmo8E2fr7E33yO' +
    'bu2og9ThCpm0bI0DqDEuaiPOlDbSbpRg28XNsfBMSf5InMW/kbDspujs8l7o93o93mBzkbbjK4GtTuAtw4lx8wjbtx2SNaOz' +
    'd0ZSZIdB7iiRP49y6OitrYejOmJYpcu4H0zGigaHDnmM4HbqkJHoZ1F5HWm2nGF4DpTzC+/LMR24hhkPtJ/JVl9wJ7/6ufNK' +
    '2PvDSK5GBepGeRGfeeMHqUBWscr4Py8dLsdhOtBlOSw4axWZAj5mOL+IcrPKV3iI8FpeYgHWE4fFH2I2i3WyeXsiyHo3QIzu' +
    'UxAUFFScM48fkSzNyVruIJsI2fnkrnd1N9wCRELWUb0s75qjQ4y742zCi8qS7w5MRd7o+FWEX4X/EmoZG5CSnmdExW8vqAFm' +
    'YB/CX0Bu3hNpejdlF4dRuY+5aknj0VPnjWHEYxfBRDkR7xqU/rbmRI0RkliOeQFoAxwEp3wN4D3YHRt9ILXuNt44yeCBk9Nl' +
    'YqNZVhIPRgO1ApCajoT/As8020nJZ/q7ufcuyxaY8WlGKf7OMPxT8T0qylQoE+5D0dWiKoKWqgNl8obTgu7BQA0/4Hqc0gUB' +
    'ix8UsMO2UVA6beaa3LOYsk+K0FMTSCSI8zADgPp/VsBiMeFDhRZz/WisVrSDwuGaUh6CpCpnn1AgAbePH6xPcIvCrMdxeWIY' +
    'LsV/qHjjz1iQjqLQpk99pBDSoDOt/hN0ZiKv2Xz2JahGmB9VrzKCesB+HRJnDQBFMyFJce+A5Jmvh9CS6JyUF7x8teiiZwpp' +
    'udMObP7lFgYeMWnqHETtHS/b/9LEGcLXhOwux32oh0I9u5Se1rhpDjDHhSNsL9mjCcw7IZpvHkkXPijQgMaVB/sfYL4ABVDR' +
    '87xXFhgqt3pYL0rZaq0Yw5L1RgK43ugzpDRYLfIsr5jkH7HcGaguIBBPUPCLbdk80EEaTY2MfF5HR1DwnfyM6Pv453aHCc9h' +
    'i85ztO1An23Q1nflAcMbiKSknrwLjOyZ1BMC0W0FGED9fA==',
} as const;

const vec = (name: keyof typeof VECTORS): Uint8Array => new Uint8Array(Buffer.from(VECTORS[name], 'base64'));
const bytes = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts.map(bytes)));
const u32le = (v: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, true); return b; };

/** Assert that fn throws an ImageError whose message matches re. */
async function rejectsImage(fn: () => unknown, re: RegExp): Promise<void> {
  await assert.rejects(async () => { await fn(); }, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'one-line message');
    return true;
  });
}

// ---------------------------------------------------------------------------
// A tiny ELF64 builder

interface NoteSpec { name?: string; type: number; desc: Uint8Array }
interface SegSpec { paddr: bigint; vaddr: bigint; data: Uint8Array; memsz?: number; flags?: number; type?: number }
interface ElfSpec {
  entry?: bigint;
  segments: SegSpec[];
  notes?: NoteSpec[];
  /** where the notes go: a PT_NOTE segment (default), an SHT_NOTE section, or both */
  notesIn?: 'phdr' | 'shdr' | 'both';
  elfClass?: number;
  machine?: number;
}

const str = (s: string): Uint8Array => new Uint8Array(Buffer.from(s + '\0', 'latin1'));
const u64 = (v: bigint): Uint8Array => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return b; };
const u32 = (v: number): Uint8Array => u32le(v);
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function encodeNotes(notes: NoteSpec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const n of notes) {
    const name = str(n.name ?? 'Xen');
    const hdr = new Uint8Array(12);
    const dv = new DataView(hdr.buffer);
    dv.setUint32(0, name.length, true);
    dv.setUint32(4, n.desc.length, true);
    dv.setUint32(8, n.type, true);
    parts.push(hdr, name, new Uint8Array(align(name.length, 4) - name.length), n.desc, new Uint8Array(align(n.desc.length, 4) - n.desc.length));
  }
  return concat(...parts);
}

function buildElf(spec: ElfSpec): Uint8Array {
  const notesIn = spec.notesIn ?? 'phdr';
  const noteBlob = spec.notes ? encodeNotes(spec.notes) : new Uint8Array(0);
  const withNotePhdr = spec.notes !== undefined && notesIn !== 'shdr';
  const withShdr = spec.notes !== undefined && notesIn !== 'phdr';
  const phnum = spec.segments.length + (withNotePhdr ? 1 : 0);
  const noteOff = 64 + phnum * 56;
  let off = align(noteOff + noteBlob.length, 16);
  const segOffs = spec.segments.map((s) => { const o = off; off = align(off + s.data.length, 16); return o; });
  const shoff = withShdr ? off : 0;
  const size = off + (withShdr ? 2 * 64 : 0);
  const elf = new Uint8Array(size);
  const dv = new DataView(elf.buffer);
  elf.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass ?? 2, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, spec.machine ?? 62, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, spec.entry ?? 0xffffffff81000100n, true);
  dv.setBigUint64(32, 64n, true);
  dv.setBigUint64(40, BigInt(shoff), true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, phnum, true);
  dv.setUint16(58, 64, true);
  dv.setUint16(60, withShdr ? 2 : 0, true);
  spec.segments.forEach((s, i) => {
    const ph = 64 + i * 56;
    dv.setUint32(ph, s.type ?? 1, true); // PT_LOAD
    dv.setUint32(ph + 4, s.flags ?? (PF_R | PF_X), true);
    dv.setBigUint64(ph + 8, BigInt(segOffs[i]!), true);
    dv.setBigUint64(ph + 16, s.vaddr, true);
    dv.setBigUint64(ph + 24, s.paddr, true);
    dv.setBigUint64(ph + 32, BigInt(s.data.length), true);
    dv.setBigUint64(ph + 40, BigInt(s.memsz ?? s.data.length), true);
    dv.setBigUint64(ph + 48, 0x1000n, true);
    elf.set(s.data, segOffs[i]!);
  });
  if (withNotePhdr) {
    const ph = 64 + spec.segments.length * 56;
    dv.setUint32(ph, 4, true); // PT_NOTE
    dv.setUint32(ph + 4, PF_R, true);
    dv.setBigUint64(ph + 8, BigInt(noteOff), true);
    dv.setBigUint64(ph + 32, BigInt(noteBlob.length), true);
    dv.setBigUint64(ph + 40, BigInt(noteBlob.length), true);
    dv.setBigUint64(ph + 48, 4n, true);
  }
  elf.set(noteBlob, noteOff);
  if (withShdr) {
    const sh = shoff + 64; // section 1; section 0 stays SHN_UNDEF
    dv.setUint32(sh + 4, 7, true); // SHT_NOTE
    dv.setBigUint64(sh + 24, BigInt(noteOff), true);
    dv.setBigUint64(sh + 32, BigInt(noteBlob.length), true);
  }
  return elf;
}

const KERNEL_MAP = 0xffffffff80000000n;
const ENTRY = 0xffffffff81000100n;

/** The notes Linux 6.1's xen-head.S emits (minus PHYS32_ENTRY), with overrides by type. */
function linuxNotes(over: Partial<Record<number, Uint8Array | null>> = {}): NoteSpec[] {
  const base: Record<number, Uint8Array> = {
    [XEN_ELFNOTE_GUEST_OS]: str('linux'),
    [XEN_ELFNOTE_GUEST_VERSION]: str('2.6'),
    [XEN_ELFNOTE_XEN_VERSION]: str('xen-3.0'),
    [XEN_ELFNOTE_VIRT_BASE]: u64(KERNEL_MAP),
    [XEN_ELFNOTE_INIT_P2M]: u64(0x8000000000n),
    [XEN_ELFNOTE_ENTRY]: u64(ENTRY),
    [XEN_ELFNOTE_FEATURES]: str('!writable_page_tables|pae_pgdir_above_4gb'),
    [XEN_ELFNOTE_SUPPORTED_FEATURES]: u32(0x8801),
    [XEN_ELFNOTE_PAE_MODE]: str('yes'),
    [XEN_ELFNOTE_LOADER]: str('generic'),
    [XEN_ELFNOTE_L1_MFN_VALID]: concat(u64(1n), u64(1n)),
    [XEN_ELFNOTE_SUSPEND_CANCEL]: u32(1),
    [XEN_ELFNOTE_MOD_START_PFN]: u32(1),
    [XEN_ELFNOTE_HV_START_LOW]: u64(0xffff800000000000n),
    [XEN_ELFNOTE_PADDR_OFFSET]: u64(0n),
  };
  const notes: NoteSpec[] = [{ name: 'GNU', type: 3, desc: new Uint8Array(20).fill(0xab) }];
  for (const [type, desc] of Object.entries({ ...base, ...over })) {
    if (desc) notes.push({ type: Number(type), desc });
  }
  return notes;
}

function pattern(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  return Uint8Array.from({ length: n }, () => r() & 0xff);
}

const TEXT = pattern(0x3000, 1);
const DATA = pattern(0x100, 2);
const PERCPU = pattern(0x200, 3);

/** Like vmlinux: text, data + bss (after a hole), and a per-cpu segment with p_vaddr 0, placed by p_paddr. */
function linuxSegments(): SegSpec[] {
  return [
    { paddr: 0x1000000n, vaddr: 0xffffffff81000000n, data: TEXT, flags: PF_R | PF_X },
    { paddr: 0x1004000n, vaddr: 0xffffffff81004000n, data: DATA, memsz: 0x1000, flags: PF_R | PF_W },
    { paddr: 0x1005000n, vaddr: 0n, data: PERCPU, flags: PF_R | PF_W },
  ];
}

function linuxElf(over: Partial<Record<number, Uint8Array | null>> = {}, spec: Partial<ElfSpec> = {}): Uint8Array {
  return buildElf({ segments: linuxSegments(), notes: linuxNotes(over), ...spec });
}

// ---------------------------------------------------------------------------
// ELF + notes

test('parseXenKernel reads a Linux-like PV kernel', () => {
  const k = parseXenKernel(linuxElf({ [XEN_ELFNOTE_HYPERCALL_PAGE]: u64(0xffffffff81001000n) }));
  assert.equal(k.entry, ENTRY);
  assert.equal(k.pstart, 0x1000000n);
  assert.equal(k.pend, 0x1005200n);
  assert.equal(k.virtKstart, 0xffffffff81000000n);
  assert.equal(k.virtKend, 0xffffffff81005200n);
  assert.deepEqual(k.segments.map((s) => [s.paddr, s.vaddr, s.filesz, s.memsz]), [
    [0x1000000n, 0xffffffff81000000n, 0x3000, 0x3000],
    [0x1004000n, 0xffffffff81004000n, 0x100, 0x1000],
    [0x1005000n, 0n, 0x200, 0x200],
  ]);
  const n = k.notes;
  assert.equal(n.entry, ENTRY);
  assert.equal(n.virtBase, KERNEL_MAP);
  assert.equal(n.paddrOffset, 0n);
  assert.equal(n.hypercallPage, 0xffffffff81001000n);
  assert.equal(n.initP2m, 0x8000000000n);
  assert.equal(n.hvStartLow, 0xffff800000000000n);
  assert.deepEqual(n.features, ['!writable_page_tables', 'pae_pgdir_above_4gb']);
  assert.equal(n.supportedFeatures, 0x8801);
  assert.equal(n.fRequired, 1 << 0);
  assert.equal(n.fSupported, 0x8801 | (1 << 4));
  assert.deepEqual(n.l1MfnValid, [1n, 1n]);
  assert.equal(n.modStartPfn, true);
  assert.equal(n.suspendCancel, true);
  assert.equal(n.xenVersion, 'xen-3.0');
  assert.equal(n.guestOs, 'linux');
  assert.equal(n.loader, 'generic');
});

test('a kernel without XEN_ELFNOTE_HYPERCALL_PAGE (Linux >= 6.1.121) has none', () => {
  assert.equal(parseXenKernel(linuxElf()).notes.hypercallPage, undefined);
});

test('notes are found in SHT_NOTE sections when there is no PT_NOTE', () => {
  const k = parseXenKernel(linuxElf({}, { notesIn: 'shdr' }));
  assert.equal(k.notes.virtBase, KERNEL_MAP);
  assert.equal(k.entry, ENTRY);
});

test('ENTRY, VIRT_BASE and PADDR_OFFSET default as libelf does', () => {
  // no ENTRY: e_entry; no VIRT_BASE: 0; no PADDR_OFFSET (notes in use): 0
  const elf = buildElf({
    entry: 0x1000100n,
    segments: [{ paddr: 0x1000000n, vaddr: 0x1000000n, data: TEXT }],
    notes: linuxNotes({ [XEN_ELFNOTE_ENTRY]: null, [XEN_ELFNOTE_VIRT_BASE]: null, [XEN_ELFNOTE_PADDR_OFFSET]: null, [XEN_ELFNOTE_INIT_P2M]: null }),
  });
  const k = parseXenKernel(elf);
  assert.equal(k.entry, 0x1000100n);
  assert.equal(k.notes.virtBase, 0n);
  assert.equal(k.notes.paddrOffset, 0n);
  assert.equal(k.virtKstart, 0x1000000n);
  assert.equal(k.notes.initP2m, undefined);
});

test('numeric notes of 4 and 8 bytes, and strings without a NUL, are read', () => {
  const k = parseXenKernel(linuxElf({
    [XEN_ELFNOTE_ENTRY]: u32(0x81000200), // truncated to 32 bits, as elf_note_numeric reads it
    [XEN_ELFNOTE_VIRT_BASE]: u64(0x80000000n),
    [XEN_ELFNOTE_PADDR_OFFSET]: u64(0n),
    [XEN_ELFNOTE_INIT_P2M]: null,
    [XEN_ELFNOTE_GUEST_OS]: new Uint8Array(Buffer.from('linux')),
  }, { segments: [{ paddr: 0x1000000n, vaddr: 0x81000000n, data: TEXT }] }));
  assert.equal(k.entry, 0x81000200n);
  assert.equal(k.notes.guestOs, 'linux');
});

test('loadSegments places segments by p_paddr, zeroing bss and holes', () => {
  const k = parseXenKernel(linuxElf());
  const ram = new Uint8Array(0x1006000).fill(0xaa);
  const writes: number[] = [];
  loadSegments(k, (pa, data) => { writes.push(pa); ram.set(data, pa); }, (pa, len) => { ram.fill(0, pa, pa + len); });
  assert.deepEqual(writes, [0x1000000, 0x1004000, 0x1005000]);
  assert.deepEqual(ram.subarray(0x1000000, 0x1003000), TEXT);
  assert.ok(ram.subarray(0x1003000, 0x1004000).every((b) => b === 0), 'hole between segments is zeroed');
  assert.deepEqual(ram.subarray(0x1004000, 0x1004100), DATA);
  assert.ok(ram.subarray(0x1004100, 0x1005000).every((b) => b === 0), 'bss is zeroed');
  assert.deepEqual(ram.subarray(0x1005000, 0x1005200), PERCPU, 'per-cpu segment (p_vaddr 0) lands at its p_paddr');
  assert.ok(ram.subarray(0x1005200).every((b) => b === 0xaa), 'nothing written past pend');
  assert.ok(ram.subarray(0, 0x1000000).every((b) => b === 0xaa), 'nothing written below pstart');
});

test('malformed ELF kernels are refused with a message naming the problem', async () => {
  const good = linuxElf();
  await rejectsImage(() => parseXenKernel(good.subarray(0, 40)), /not an ELF image: only 40 bytes/);
  await rejectsImage(() => parseXenKernel(concat(new Uint8Array([0x7f, 0x45, 0x4c, 0x47]), good.subarray(4))), /not an ELF image/);
  await rejectsImage(() => parseXenKernel(linuxElf({}, { elfClass: 1 })), /not 64-bit/);
  await rejectsImage(() => parseXenKernel(linuxElf({}, { machine: 3 })), /not x86-64 \(e_machine 3\)/);
  const manyPhdrs = good.slice();
  new DataView(manyPhdrs.buffer).setUint16(56, 0x1000, true);
  await rejectsImage(() => parseXenKernel(manyPhdrs), /program headers .* run past the end/);
  await rejectsImage(() => parseXenKernel(good.subarray(0, good.length - 0x100)), /PT_LOAD segment \d .* runs past the end/);
  const bigFilesz = good.slice();
  new DataView(bigFilesz.buffer).setBigUint64(64 + 32, 0x10000n, true);
  await rejectsImage(() => parseXenKernel(bigFilesz), /PT_LOAD segment 0/);
  await rejectsImage(() => parseXenKernel(buildElf({ segments: [], notes: linuxNotes() })), /no loadable/);
});

test('a kernel without Xen notes is not a Xen PV kernel', async () => {
  await rejectsImage(() => parseXenKernel(buildElf({ segments: linuxSegments() })), /^not a Xen PV kernel: no Xen ELF notes$/);
  await rejectsImage(() => parseXenKernel(buildElf({ segments: linuxSegments(), notes: [{ name: 'GNU', type: 3, desc: new Uint8Array(20) }] })),
    /not a Xen PV kernel: no Xen ELF notes/);
  // a PT_NOTE with p_offset 0 is skipped (broken binutils), as libelf does
  const zeroOff = linuxElf();
  new DataView(zeroOff.buffer).setBigUint64(64 + 3 * 56 + 8, 0n, true);
  await rejectsImage(() => parseXenKernel(zeroOff), /no Xen ELF notes/);
});

test('inconsistent Xen notes are refused (elf_xen_note_check, elf_xen_addr_calc_check)', async () => {
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_ENTRY]: u64(0xffffffff90000000n) })), /entry point 0xffffffff90000000 lies outside the image/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_ENTRY]: u64(0xffffffff81005200n) })), /entry point .* outside/);
  // PADDR_OFFSET above pstart puts the image below VIRT_BASE
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_PADDR_OFFSET]: u64(0x2000000n), [XEN_ELFNOTE_ENTRY]: u64(0xffffffff7f000100n) })),
    /VIRT_BASE 0xffffffff80000000 lies above the image start 0xffffffff7f000000/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_INIT_P2M]: u64(0xffffffff81002000n) })), /INIT_P2M .* inside the image/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_HYPERCALL_PAGE]: u64(0xffffffff82000000n) })), /HYPERCALL_PAGE .* outside the image/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_VIRT_BASE]: null })), /PADDR_OFFSET but not XEN_ELFNOTE_VIRT_BASE/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_FEATURES]: str('!dom0') })), /XENFEAT_dom0/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_FEATURES]: str('!frobnicate') })), /requires Xen feature "frobnicate"/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_XEN_VERSION]: str('xen-2.0') })), /"xen-2.0", not "xen-3.0"/);
  await rejectsImage(() => parseXenKernel(linuxElf({ [XEN_ELFNOTE_GUEST_OS]: str('freebsd'), [XEN_ELFNOTE_LOADER]: null })), /generic loader/);
  // unknown optional features are fine
  assert.deepEqual(parseXenKernel(linuxElf({ [XEN_ELFNOTE_FEATURES]: str('frobnicate|writable_page_tables') })).notes.fRequired, 0);
});

test('a note running past its segment is refused', async () => {
  const elf = linuxElf();
  // grow the last note's descsz beyond the PT_NOTE segment
  const dv = new DataView(elf.buffer);
  const noteOff = Number(dv.getBigUint64(64 + 3 * 56 + 8, true));
  const noteLen = Number(dv.getBigUint64(64 + 3 * 56 + 32, true));
  let p = noteOff;
  let last = p;
  while (p < noteOff + noteLen) {
    last = p;
    p += 12 + align(dv.getUint32(p, true), 4) + align(dv.getUint32(p + 4, true), 4);
  }
  dv.setUint32(last + 4, 64, true);
  await rejectsImage(() => parseXenKernel(elf), /note at offset \d+ in PT_NOTE segment 3 runs past its end/);
});

// ---------------------------------------------------------------------------
// bzImage

interface BzSpec { setupSects?: number; version?: number; payloadOffset?: number; payloadLength?: number; magic?: string; truncateTo?: number }

/** A bzImage shell: setup sectors with the header fields, then 0x80 bytes of decompressor, then the payload. */
function buildBzImage(payload: Uint8Array, spec: BzSpec = {}): Uint8Array {
  const setupSects = spec.setupSects ?? 31;
  const setupLen = ((setupSects || 4) + 1) * 512;
  const file = new Uint8Array(setupLen + 0x80 + payload.length + 0x40);
  const dv = new DataView(file.buffer);
  file[0x1f1] = setupSects;
  file.set(Buffer.from(spec.magic ?? 'HdrS', 'latin1'), 0x202);
  dv.setUint16(0x206, spec.version ?? 0x20f, true);
  dv.setUint32(0x248, spec.payloadOffset ?? 0x80, true);
  dv.setUint32(0x24c, spec.payloadLength ?? payload.length, true);
  file.set(payload, setupLen + 0x80);
  return spec.truncateTo !== undefined ? file.subarray(0, spec.truncateTo) : file;
}

/** The kernel's payload: compressed bytes followed by the u32 uncompressed size (size_append). */
const withTrailer = (compressed: Uint8Array, size: number): Uint8Array => concat(compressed, u32le(size));

/** A legacy LZ4 frame of literal-only blocks (valid LZ4: each block is one literals-only sequence). */
function lz4Literals(data: Uint8Array, blockSize = 1 << 20): Uint8Array {
  const parts: Uint8Array[] = [u32le(ARCHIVE_MAGICNUMBER)];
  for (let o = 0; o < data.length; o += blockSize) {
    const chunk = data.subarray(o, o + blockSize);
    const lenBytes: number[] = [];
    if (chunk.length >= 15) {
      let rest = chunk.length - 15;
      while (rest >= 255) { lenBytes.push(255); rest -= 255; }
      lenBytes.push(rest);
    }
    const block = concat(new Uint8Array([(Math.min(chunk.length, 15) << 4), ...lenBytes]), chunk);
    parts.push(u32le(block.length), block);
  }
  return concat(...parts);
}

test('bzImage header: payload located at (setup_sects + 1) * 512 + payload_offset', () => {
  const payload = withTrailer(gzipSync(linuxElf()), linuxElf().length);
  const h = parseBzImageHeader(buildBzImage(payload));
  assert.deepEqual(h, { setupSects: 31, version: 0x20f, payloadOffset: 0x80, payloadLength: payload.length, payloadStart: 32 * 512 + 0x80 });
  assert.deepEqual(bzImagePayload(buildBzImage(payload)), payload);
  // setup_sects 0 means 4
  assert.equal(parseBzImageHeader(buildBzImage(payload, { setupSects: 0 })).payloadStart, 5 * 512 + 0x80);
});

test('gzip and LZ4 bzImages of a synthetic kernel load', async () => {
  const elf = linuxElf();
  for (const payload of [withTrailer(gzipSync(elf), elf.length), withTrailer(lz4Literals(elf, 0x1000), elf.length)]) {
    const k = await loadKernelImage(buildBzImage(payload));
    assert.equal(k.entry, ENTRY);
    assert.deepEqual(k.elf, elf);
  }
  // a bare ELF and a gzip'd vmlinux are accepted too
  assert.equal((await loadKernelImage(elf)).entry, ENTRY);
  assert.equal((await loadKernelImage(gzipSync(elf))).entry, ENTRY);
});

test('malformed bzImages are refused naming the field', async () => {
  const payload = withTrailer(gzipSync(linuxElf()), linuxElf().length);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { magic: 'HdrT' })), /not a bzImage/);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { version: 0x207 })), /boot protocol version 2\.07 is older than 2\.08/);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { payloadOffset: 0x100000 })), /payload_offset 0x100000 .* points past the end/);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { payloadLength: payload.length + 0x1000 })), /payload_length 0x[0-9a-f]+ .* runs past the end/);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { payloadLength: 0 })), /payload_length is 0/);
  await rejectsImage(() => parseBzImageHeader(buildBzImage(payload, { truncateTo: 0x220 })), /truncated/);
  await rejectsImage(() => loadKernelImage(new Uint8Array(4096)), /neither a bzImage nor an ELF/);
});

test('payload compression is detected by magic; bzip2 and LZO are unsupported', async () => {
  assert.equal(detectCompression(vec('xzX86')), 'xz');
  assert.equal(detectCompression(vec('lz4Legacy')), 'lz4');
  assert.equal(detectCompression(vec('lzmaAlone')), 'lzma');
  assert.equal(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
  await rejectsImage(() => loadKernelImage(buildBzImage(withTrailer(new Uint8Array(Buffer.from('BZh91AY&SY')), 100))), /unsupported compression bzip2/);
  await rejectsImage(() => loadKernelImage(buildBzImage(withTrailer(new Uint8Array([0x89, 0x4c, 0x5a, 0x4f, 0, 0x0d]), 100))), /unsupported compression lzo/);
  await rejectsImage(() => loadKernelImage(buildBzImage(withTrailer(new Uint8Array(Buffer.from('hello world')), 100))), /unknown compression format .*68 65 6c 6c 6f 20/);
  await rejectsImage(() => decompressPayload(withTrailer(gzipSync(Buffer.from('hello')), 5)), /decompressed gzip kernel payload is not an ELF image/);
  await rejectsImage(() => decompressPayload(withTrailer(vec('xzX86'), 6000)), /decompressed xz kernel payload is not an ELF image/);
  await rejectsImage(() => decompressPayload(withTrailer(gzipSync(linuxElf()).subarray(0, 200), 1000)), /gzip payload is corrupt/);
});

test('zstd payloads decode, with the size trailer (bzImage) or without (a whole .zst file)', async () => {
  const expected = concat(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]), x86ish(6000));
  assert.deepEqual(await decompressPayload(withTrailer(vec('zstdElfish'), expected.length)), expected);
  assert.deepEqual(await decompressPayload(vec('zstdElfish'), { sizeTrailer: false }), expected);
  const bad = vec('zstdElfish').slice();
  bad[4] = 0xff; // reserved frame header bit
  await rejectsImage(() => decompressPayload(withTrailer(bad, expected.length)), /zstd payload is corrupt/);
});

test('loadKernelFile names the file in its errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pvbox-builder-'));
  try {
    const good = join(dir, 'vmlinux.gz');
    await writeFile(good, gzipSync(linuxElf()));
    assert.equal((await loadKernelFile(good)).entry, ENTRY);
    const bad = join(dir, 'vmlinuz-bad');
    await writeFile(bad, buildBzImage(new Uint8Array(64), { payloadOffset: 0x100000 }));
    await rejectsImage(() => loadKernelFile(bad), new RegExp(`^${bad}: bzImage payload_offset`));
    await rejectsImage(() => loadKernelFile(join(dir, 'missing')), /cannot read kernel .*missing/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// LZ4

test('LZ4 legacy frames decode (lz4 -l vectors, with and without the size trailer)', () => {
  assert.deepEqual(lz4LegacyDecompress(vec('lz4Legacy'), 0, 1 << 30), periodic(20000));
  assert.deepEqual(bytes(lz4LegacyDecompress(vec('lz4Text'), 0, 1 << 30)).toString('latin1'), LZ4_TEXT);
  assert.deepEqual(lz4LegacyDecompress(withTrailer(vec('lz4Legacy'), 20000), 20000, 1 << 30), periodic(20000));
  // a repeated magic between blocks is skipped (concatenated frames), as unlz4 does
  const two = concat(vec('lz4Text'), vec('lz4Text'));
  assert.equal(bytes(lz4LegacyDecompress(two, 0, 1 << 30)).toString('latin1'), LZ4_TEXT + LZ4_TEXT);
  // a zero block size ends the data
  assert.equal(bytes(lz4LegacyDecompress(concat(vec('lz4Text'), u32le(0), u32le(0xdeadbeef), u32le(0)), 0, 1 << 30)).toString('latin1'), LZ4_TEXT);
});

test('LZ4 block decoder on hand-made sequences', () => {
  const dst = new Uint8Array(64);
  // "abc" then match offset 3 length 9 (token 0x35), then 2 trailing literals
  const block = new Uint8Array([0x35, 0x61, 0x62, 0x63, 0x03, 0x00, 0x20, 0x78, 0x79]);
  const n = lz4DecompressBlock(block, 0, block.length, dst, 0, dst.length);
  assert.equal(bytes(dst.subarray(0, n)).toString('latin1'), 'abcabcabcabcxy');
  // run-length: one literal, then offset 1, length 4+15+255+10 (extension bytes)
  const rle = new Uint8Array([0x1f, 0x7a, 0x01, 0x00, 0xff, 0x0a, 0x00]);
  const m = lz4DecompressBlock(rle, 0, rle.length, new Uint8Array(400), 0, 400);
  assert.equal(m, 1 + 4 + 15 + 255 + 10);
});

test('corrupt LZ4 data is an ImageError, never an overrun or a hang', async () => {
  const lz = (b: Uint8Array, limit = 64): number => lz4DecompressBlock(b, 0, b.length, new Uint8Array(limit), 0, limit);
  await rejectsImage(() => lz(new Uint8Array([0x14, 0x61, 0x00, 0x00])), /match offset 0 reaches before/);
  await rejectsImage(() => lz(new Uint8Array([0x14, 0x61, 0x05, 0x00])), /match offset 5 reaches before/);
  await rejectsImage(() => lz(new Uint8Array([0x50, 0x61, 0x62])), /5 literals run past the block/);
  await rejectsImage(() => lz(new Uint8Array([0x1f, 0x61, 0x01, 0x00, 0xff, 0xff])), /match length runs past the block/);
  await rejectsImage(() => lz(new Uint8Array([0x1f, 0x61, 0x01, 0x00, 0xff, 0x00]), 100), /overflows the 100-byte output limit/);
  await rejectsImage(() => lz(new Uint8Array([0x10, 0x61, 0x01])), /match offset runs past the block/);
  await rejectsImage(() => lz(new Uint8Array([])), /ends inside a sequence/);
  const frame = vec('lz4Legacy');
  await rejectsImage(() => lz4LegacyDecompress(frame.subarray(0, frame.length - 10), 0, 1 << 30), /compressed size \d+ runs past the end/);
  await rejectsImage(() => lz4LegacyDecompress(withTrailer(frame, 12345), 0, 1 << 30), /size trailer says 12345/);
  await rejectsImage(() => lz4LegacyDecompress(concat(u32le(0x184c2103), frame.subarray(4)), 0, 1 << 30), /legacy frame magic/);
  await rejectsImage(() => lz4LegacyDecompress(concat(frame, new Uint8Array([1, 2])), 0, 1 << 30), /2 stray bytes/);
  // an over-long block is cut off at the output limit, not written past it
  await rejectsImage(() => lz4LegacyDecompress(withTrailer(frame, 20000), 0, 10000), /output limit/);
  // random damage: only ImageErrors, and every run ends
  const r = prng(42);
  for (let i = 0; i < 300; i++) {
    const bad = frame.slice();
    for (let k = 0; k < 3; k++) bad[4 + (r() % (bad.length - 4))] = r() & 0xff;
    try { lz4LegacyDecompress(bad, 0, 1 << 24); } catch (e) { assert.ok(e instanceof ImageError, String(e)); }
  }
});

// ---------------------------------------------------------------------------
// XZ / LZMA

test('XZ: x86 BCJ + LZMA2 + CRC32 (the kernel\'s format) decodes', () => {
  const r = xzDecompress(vec('xzX86'));
  assert.deepEqual(r.data, x86ish(6000));
  assert.equal(r.end, vec('xzX86').length);
});

test('XZ: multi-chunk LZMA2 with CRC64, uncompressed chunk with SHA-256', () => {
  assert.deepEqual(xzDecompress(vec('xzPeriodic')).data, periodic(2500000));
  assert.deepEqual(xzDecompress(vec('xzRandom')).data, random(300));
  // a wrong size hint only changes the first allocation
  assert.deepEqual(xzDecompress(vec('xzPeriodic'), 1000).data, periodic(2500000));
});

test('XZ: bytes after the stream (the bzImage size trailer) are ignored', () => {
  const r = xzDecompress(withTrailer(vec('xzX86'), 6000), 6000);
  assert.deepEqual(r.data, x86ish(6000));
  assert.equal(r.end, vec('xzX86').length);
});

test('LZMA (lzma_alone, end marker) decodes', () => {
  assert.deepEqual(lzmaDecompress(vec('lzmaAlone')), x86ish(6000));
  assert.deepEqual(lzmaDecompress(withTrailer(vec('lzmaAlone'), 6000), 6000), x86ish(6000));
  assert.deepEqual(lzmaDecompress(vec('lzmaAlone'), 100), x86ish(6000), 'a small hint grows');
});

test('BCJ x86 turns absolute CALL targets back into relative ones', () => {
  const buf = new Uint8Array([0x90, 0xe8, 0x00, 0x10, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90]);
  bcjX86Decode(buf, 0, buf.length);
  // at offset 1: rel = 0x1000 - (1 + 5)
  assert.deepEqual([...buf.subarray(1, 6)], [0xe8, 0xfa, 0x0f, 0x00, 0x00]);
});

test('corrupt or unsupported XZ is an ImageError', async () => {
  const xz = vec('xzX86');
  await rejectsImage(() => xzDecompress(vec('xzDelta')), /unsupported XZ filter 0x3/);
  await rejectsImage(() => xzDecompress(xz.subarray(0, 500)), /XZ payload is corrupt/);
  await rejectsImage(() => xzDecompress(xz.subarray(0, xz.length - 8)), /XZ payload is corrupt/);
  const flipped = xz.slice();
  flipped[700]! ^= 0x10;
  await rejectsImage(() => xzDecompress(flipped), /XZ payload is corrupt/);
  const badMagic = xz.slice();
  badMagic[1] = 0;
  await rejectsImage(() => xzDecompress(badMagic), /bad stream header magic/);
  await rejectsImage(() => xzDecompress(xz, 0, 4000), /more than/);
  await rejectsImage(() => lzmaDecompress(vec('lzmaAlone').subarray(0, 1000)), /LZMA payload is corrupt/);
  const r = prng(9);
  for (let i = 0; i < 150; i++) {
    const bad = xz.slice();
    bad[12 + (r() % (bad.length - 12))] = r() & 0xff;
    try { xzDecompress(bad); } catch (e) { assert.ok(e instanceof ImageError, String(e)); }
  }
});

// ---------------------------------------------------------------------------
// Real Debian kernels, when the image cache has them (never downloaded here)

async function findKernels(dir: string, depth = 4): Promise<string[]> {
  let entries: string[];
  try { entries = await readdir(dir); } catch { return []; }
  const found: string[] = [];
  for (const e of entries) {
    if (e === 'tmp') continue;
    const p = join(dir, e);
    const s = await stat(p).catch(() => undefined);
    if (s?.isDirectory() && depth > 0) found.push(...await findKernels(p, depth - 1));
    else if (s?.isFile() && /^vmlinuz-/.test(e)) found.push(p);
  }
  return found;
}

test('real Debian kernels from the cache load with the expected notes', async (t) => {
  const cache = process.env.PVBOX_CACHE ? resolve(process.env.PVBOX_CACHE) : join(homedir(), '.cache', 'pvbox');
  const kernels = await findKernels(cache);
  if (kernels.length === 0) {
    t.skip(`no cached kernel (vmlinuz-*) under ${cache}; run pvbox once or set PVBOX_CACHE`);
    return;
  }
  for (const path of kernels) {
    const t0 = performance.now();
    const k: XenKernel = await loadKernelFile(path);
    const ms = performance.now() - t0;
    t.diagnostic(`${path}: ${(k.elf.length / 2 ** 20).toFixed(1)} MiB ELF in ${ms.toFixed(0)} ms; entry 0x${k.entry.toString(16)}; ` +
      `HYPERCALL_PAGE ${k.notes.hypercallPage === undefined ? 'absent' : `0x${k.notes.hypercallPage.toString(16)}`}`);
    assert.equal(k.notes.virtBase, 0xffffffff80000000n);
    assert.equal(k.virtKstart, 0xffffffff81000000n);
    assert.ok(k.entry >= k.virtKstart && k.entry < k.virtKend);
    assert.equal(k.entry >> 28n, 0xffffffff8n, 'entry in the kernel map (startup_xen)');
    assert.equal(k.notes.initP2m, 0x8000000000n);
    assert.ok(k.notes.features.some((f) => f.replace(/^!/, '') === 'writable_page_tables'));
    assert.equal(k.notes.modStartPfn, true);
    assert.equal(k.notes.guestOs, 'linux');
  }
});
