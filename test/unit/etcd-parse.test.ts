import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressOrigin, parseInstanceValue, prefixRangeEnd, splitKey } from '../../src/registry/etcd/parse.ts';

describe('etcd keys', () => {
  it('range_end of a prefix is the prefix with its last byte incremented', () => {
    assert.equal(prefixRangeEnd(Buffer.from('/services/')).toString(), '/services0');
    assert.deepEqual([...prefixRangeEnd(Buffer.from([0x61, 0xff]))], [0x62]);
    assert.deepEqual([...prefixRangeEnd(Buffer.from([0xff, 0xff]))], [0]);
  });

  it('splits <prefix><service>/<instance id>; the id may contain slashes', () => {
    assert.deepEqual(splitKey('/services/', '/services/hello/a'), { service: 'hello', id: 'a' });
    assert.deepEqual(splitKey('/services/', '/services/hello/10.0.0.7:80/x'), { service: 'hello', id: '10.0.0.7:80/x' });
    for (const bad of ['/services/hello', '/services/hello/', '/services//a', '/other/hello/a']) assert.equal(typeof splitKey('/services/', bad), 'string', bad);
  });
});

describe('etcd values', () => {
  it('grpc-go endpoint JSON: Addr as host:port or URL, Metadata weight and tags, other fields ignored', () => {
    assert.deepEqual(parseInstanceValue('a', '{"Addr":"127.0.0.1:9001"}'), { id: 'a', url: 'http://127.0.0.1:9001', weight: 1, tags: [] });
    assert.deepEqual(parseInstanceValue('a', '{"Addr":"https://api.example.com:8443","Metadata":{"weight":2,"tags":["v2","v2","eu"]},"ServerName":"x","Op":0}'), { id: 'a', url: 'https://api.example.com:8443', weight: 2, tags: ['v2', 'eu'] });
    assert.deepEqual(parseInstanceValue('a', '{"Addr":"[::1]:80","Metadata":null}'), { id: 'a', url: 'http://[::1]:80', weight: 1, tags: [] });
    assert.deepEqual(parseInstanceValue('a', ' {"Addr":"Host.Example:80","Metadata":{"other":true}} '), { id: 'a', url: 'http://host.example:80', weight: 1, tags: [] });
  });

  it('a plain URL string', () => {
    assert.deepEqual(parseInstanceValue('a', 'http://10.0.0.7:8080'), { id: 'a', url: 'http://10.0.0.7:8080', weight: 1, tags: [] });
    assert.deepEqual(parseInstanceValue('a', 'https://svc.internal'), { id: 'a', url: 'https://svc.internal', weight: 1, tags: [] });
    assert.deepEqual(parseInstanceValue('a', 'http://10.0.0.7:8080/\n'), { id: 'a', url: 'http://10.0.0.7:8080', weight: 1, tags: [] });
  });

  it('malformed values give a reason instead of an instance', () => {
    const cases = [
      '', '   ', '{"Addr":', '[1,2]', '"127.0.0.1:80"', '{}', '{"Addr":""}', '{"Addr":" "}', '{"Addr":8080}', '{"Addr":null}',
      '{"Addr":"127.0.0.1"}', '{"Addr":"127.0.0.1:0"}', '{"Addr":"127.0.0.1:70000"}', '{"Addr":"http://h:1/path"}', '{"Addr":"ftp://h:1"}',
      '{"Addr":"h:1","Metadata":[]}', '{"Addr":"h:1","Metadata":{"weight":"2"}}', '{"Addr":"h:1","Metadata":{"weight":0}}', '{"Addr":"h:1","Metadata":{"weight":1.5}}',
      '{"Addr":"h:1","Metadata":{"tags":"v2"}}', '{"Addr":"h:1","Metadata":{"tags":[1]}}', 'hello', 'http://user:pw@h:1', 'http://h:1/?q', 'h:1 extra',
    ];
    for (const value of cases) {
      const parsed = parseInstanceValue('a', value);
      assert.equal(typeof parsed, 'string', `${JSON.stringify(value)} gave ${JSON.stringify(parsed)}`);
    }
  });

  it('addressOrigin keeps the scheme and drops default ports', () => {
    assert.equal(addressOrigin('https://h:443'), 'https://h');
    assert.equal(addressOrigin('HTTP://H:80'), 'http://h');
    assert.equal(addressOrigin('h:80'), 'http://h:80');
  });
});
