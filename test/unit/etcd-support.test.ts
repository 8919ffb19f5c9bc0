import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ETCD_MISSING, etcdBinary } from '../support/etcd.ts';

describe('etcd test support', () => {
  it('a missing etcd binary is an error that says how to install it (the etcd tests fail, never skip)', () => {
    assert.equal(ETCD_MISSING, 'etcd not found: apt-get install etcd-server');
    assert.throws(() => etcdBinary(['/nonexistent/etcd'], '/nonexistent'), { message: ETCD_MISSING });
  });

  it('finds the installed binary', () => {
    assert.match(etcdBinary(), /\/etcd$/);
  });
});
