// The CPUID policy's XSAVE view (src/hypervisor/cpuid.ts): leaf 1 offers XSAVE/AVX whenever leaf 0xD says the host can
// save that state, and leaf 0xD.0 EBX follows the guest's XCR0 as Xen's guest_cpuid answers it (xstate_uncompressed_size),
// since Linux turns XSAVE off when that size disagrees with its own (fpu__init_system_xstate).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CpuidEntry } from '../../src/kvm/kvm.js';
import { buildCpuidPolicy, cpuidLookup, xstateSize } from '../../src/hypervisor/cpuid.js';

const entry = (fn: number, index: number, eax: number, ebx = 0, ecx = 0, edx = 0, flags = 0): CpuidEntry => ({ function: fn, index, flags, eax, ebx, ecx, edx });
// A PVM host's KVM_GET_SUPPORTED_CPUID: a bare leaf 1 (no XSAVE, no AVX) but leaf 0xD with x87|SSE|AVX|PKRU.
const pvmHost: CpuidEntry[] = [
  entry(1, 0, 0xa00f11, 0x800, 0x81202000, 0x078bfbff),
  entry(0xd, 0, 0x207, 0x988, 0x988, 0, 1),
  entry(0xd, 1, 0, 0, 0, 0, 1),
  entry(0xd, 2, 256, 576, 0, 0, 1),
  entry(0xd, 9, 8, 2432, 0, 0, 1),
];

describe('CPUID XSAVE policy', () => {
  it('offers XSAVE and AVX in leaf 1 when the host can save AVX state, with OSXSAVE once CR4 has it', () => {
    const pol = buildCpuidPolicy(pvmHost, 2_000_000);
    const [, , ecx] = cpuidLookup(pol, 1, 0, true);
    assert.equal((ecx >>> 26) & 1, 1, 'XSAVE');
    assert.equal((ecx >>> 27) & 1, 1, 'OSXSAVE');
    assert.equal((ecx >>> 28) & 1, 1, 'AVX');
    assert.equal((cpuidLookup(pol, 1, 0, false)[2] >>> 27) & 1, 0, 'no OSXSAVE without CR4.OSXSAVE');
  });
  it('leaves XSAVE out when leaf 0xD does not offer x87 and SSE state', () => {
    const pol = buildCpuidPolicy([entry(1, 0, 0xa00f11, 0x800, 0x81202000, 0x078bfbff)], 2_000_000);
    assert.equal((cpuidLookup(pol, 1, 0, true)[2] >>> 26) & 1, 0);
  });
  it('answers leaf 0xD.0 EBX for the XCR0 the guest loaded', () => {
    const pol = buildCpuidPolicy(pvmHost, 2_000_000);
    assert.equal(xstateSize(pol, 1n), 576);
    assert.equal(cpuidLookup(pol, 0xd, 0, true, 3n)[1], 576);
    assert.equal(cpuidLookup(pol, 0xd, 0, true, 7n)[1], 832); // Linux: "context size is 832 bytes"
    assert.equal(cpuidLookup(pol, 0xd, 0, true, 0x207n)[1], 2440);
    assert.equal(cpuidLookup(pol, 0xd, 0, true, 7n)[0], 0x207, 'EAX still lists every component the guest may enable');
  });
});
