// The TAP reader thread: waits in poll() on every armed vif queue's TAP fd and tells the domain thread, through the input ring (INPUT_NET, first byte the queue slot: tap.ts tapQueueSlot), that frames are waiting (QEMU's tap_send readiness, kept off the vCPU's thread).
//
// The domain thread's event loop does not run while the vCPU runs, so nothing there can wait on a
// file descriptor. This thread does, and sends one record per "readable" edge, not the frames: the
// domain thread then reads the frames itself straight into the netback, as many as the guest has rx
// buffers for, and re-arms the fd (TapReaderControl.arm) when the TAP is empty. While a vif is not
// armed its fd is left out of poll(), so a guest that posts no rx buffers costs no wake-ups and its
// frames queue in the host kernel (and are dropped there when its queue is full), as with netback.
import { workerData } from 'node:worker_threads';
import { INPUT_NET, InputRingWriter } from '../../vcpu/worker-protocol.js';
import { POLLERR, POLLHUP, POLLIN, poll, TAP_QUEUE_SLOTS, TapReaderState, tapFdSlot, tapStateSlot } from './tap.js';
import { readSync } from 'node:fs';

export interface TapThreadInit {
  /** Woken by the domain thread when it arms, adds or removes a vif, or stops the thread. */
  wakeFd: number;
  /** The control block (tap.ts tapControlBlock): stop flag, each vif queue's TapReaderState and TAP fd. */
  control: SharedArrayBuffer;
  input: SharedArrayBuffer;
}

/**
 * How long readable frames wait for an exit the guest makes anyway before this thread kicks the
 * vCPU out of KVM_RUN (a kick is an exit of its own, ~45 µs on PVM hosts). A guest receiving a
 * stream exits every ~100–200 µs, so most frames are taken without a kick; an idle guest gets its
 * frame at most this much later (a NIC's rx interrupt moderation, ethtool rx-usecs).
 */
const RX_COALESCE_MS = 0.1;

const init = workerData as TapThreadInit;
const ctl = new Int32Array(init.control);
const writer = new InputRingWriter(init.input);
const STOP = 0;
const POLL_TIMEOUT_MS = 1000;
const pollfds = Buffer.alloc(8 * (TAP_QUEUE_SLOTS + 1));
const drain = new Uint8Array(8);

// A vif removed while its fd is in poll(): the domain thread disarms it before closing the fd, so
// whatever poll() then reports for that number fails the ARMED → READABLE exchange below.
while (Atomics.load(ctl, STOP) === 0) {
  const order: number[] = [];
  pollfds.writeInt32LE(init.wakeFd, 0); pollfds.writeInt16LE(POLLIN, 4); pollfds.writeInt16LE(0, 6);
  for (let i = 0; i < TAP_QUEUE_SLOTS; i++) {
    const fd = Atomics.load(ctl, tapFdSlot(i));
    if (fd < 0 || Atomics.load(ctl, tapStateSlot(i)) !== TapReaderState.ARMED) continue;
    const o = 8 * (order.length + 1);
    pollfds.writeInt32LE(fd, o); pollfds.writeInt16LE(POLLIN, o + 4); pollfds.writeInt16LE(0, o + 6);
    order.push(i);
  }
  // SAFETY: pollfds holds order.length + 1 struct pollfd entries and outlives the call.
  const n = poll(pollfds, order.length + 1, POLL_TIMEOUT_MS) as number;
  if (n <= 0) continue; // timeout or EINTR: look at the flags again
  if (pollfds.readInt16LE(6) & POLLIN) { try { readSync(init.wakeFd, drain); } catch { /* EAGAIN: drained already */ } }
  for (const [k, i] of order.entries()) {
    if (!(pollfds.readInt16LE(8 * (k + 1) + 6) & (POLLIN | POLLERR | POLLHUP))) continue;
    const at = tapStateSlot(i);
    if (Atomics.compareExchange(ctl, at, TapReaderState.ARMED, TapReaderState.READABLE) !== TapReaderState.ARMED) continue;
    Atomics.wait(ctl, at, TapReaderState.READABLE, RX_COALESCE_MS);
    // Taken by the domain thread meanwhile (it set DISARMED): nothing to send.
    if (Atomics.compareExchange(ctl, at, TapReaderState.READABLE, TapReaderState.DISARMED) !== TapReaderState.READABLE) continue;
    if (!writer.push(INPUT_NET, Uint8Array.of(i))) {
      // The input ring is full (the domain is not reading it): leave the vif armed and look again shortly.
      Atomics.store(ctl, at, TapReaderState.ARMED);
      Atomics.wait(ctl, STOP, 0, 10);
    }
  }
}
