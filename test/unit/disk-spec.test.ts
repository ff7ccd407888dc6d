// src/backends/vbd/disk-spec.ts: xl disk specifications as docs/misc/xl-disk-configuration.txt and libxlu_disk_l.l read them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDiskSpec, vdevToDevid } from '../../src/backends/vbd/disk-spec.js';
import { ConfigError } from '../../src/errors.js';

describe('xl disk specs', () => {
  const cases: [string, { target: string; vdev: string; readonly: boolean; format: string }][] = [
    ['format=raw, vdev=xvda, access=rw, target=/img', { target: '/img', vdev: 'xvda', readonly: false, format: 'raw' }],
    ['target=/img, vdev=xvdb, access=ro', { target: '/img', vdev: 'xvdb', readonly: true, format: 'raw' }],
    ['vdev=xvda, target=/dir,with,commas', { target: '/dir,with,commas', vdev: 'xvda', readonly: false, format: 'raw' }],
    ['file:/img,xvda,w', { target: '/img', vdev: 'xvda', readonly: false, format: 'raw' }],
    ['phy:/dev/vg/x,xvda,r', { target: '/dev/vg/x', vdev: 'xvda', readonly: true, format: 'raw' }],
    ['tap:qcow2:/a.qcow2,xvdc,w', { target: '/a.qcow2', vdev: 'xvdc', readonly: false, format: 'qcow2' }],
    // Positional without a prefix: target, format, vdev, access (Debian's xlexample.pvlinux).
    ['/dev/vg/guest-volume,raw,xvda,rw', { target: '/dev/vg/guest-volume', vdev: 'xvda', readonly: false, format: 'raw' }],
    ['/a.qcow2,qcow2,xvda1,r', { target: '/a.qcow2', vdev: 'xvda1', readonly: true, format: 'qcow2' }],
    ['/img,,xvdd', { target: '/img', vdev: 'xvdd', readonly: false, format: 'raw' }],
  ];
  for (const [spec, want] of cases) {
    it(spec, () => {
      const d = parseDiskSpec(spec);
      assert.deepEqual({ target: d.target, vdev: d.vdev, readonly: d.readonly, format: d.format }, want);
      assert.equal(d.devid, vdevToDevid(want.vdev));
    });
  }

  it('vdev numbering: xvdX → 202:(X<<4), partitions add their number', () => {
    assert.equal(vdevToDevid('xvda'), 51712);
    assert.equal(vdevToDevid('xvdb'), 51728);
    assert.equal(vdevToDevid('xvda1'), 51713);
    assert.equal(vdevToDevid('xvdp15'), 51712 + 15 * 16 + 15);
    for (const bad of ['sda', 'xvdq', 'xvda0', 'xvda16', 'hda', '']) assert.equal(vdevToDevid(bad), undefined, bad);
  });

  it('bad specs: one ConfigError naming the problem', () => {
    for (const [spec, msg] of [
      ['vdev=xvda', /no target/],
      ['target=/x', /no vdev/],
      ['target=/x, vdev=sda', /vdev 'sda'/],
      ['target=/x, vdev=xvda, access=maybe', /access 'maybe'/],
      ['target=/x, vdev=xvda, format=vhd', /format 'vhd' is not supported/],
      ['/x,floppy,xvda', /vdev 'floppy'/],
      ['target=/x, vdev=xvda, colour=blue', /unknown key 'colour'/],
      ['/x,raw,xvda,rw,extra', /unexpected 'extra'/],
    ] as const) {
      assert.throws(() => parseDiskSpec(spec), (e: Error) => e instanceof ConfigError && msg.test(e.message) && !e.message.includes('\n'), spec);
    }
  });
});
