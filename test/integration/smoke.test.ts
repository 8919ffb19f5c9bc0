import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RunningGateway, startGateway } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

let upstreams: TestUpstream[];
let gw: RunningGateway;

before(async () => {
  upstreams = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream(name)));
  gw = await startGateway(`
registry:
  static:
    services:
      hello:
        instances: [${upstreams.map((u) => `"${u.url}"`).join(', ')}]
routes:
  - name: hello
    match: { pathPrefix: /hello }
    service: hello
    stripPrefix: true
`);
});

after(async () => {
  await gw.stop();
  await Promise.all(upstreams.map((u) => u.close()));
});

test('requests rotate over the three instances in order', async () => {
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const body = (await (await fetch(`${gw.url}/hello/x`)).json()) as { instance: string; url: string };
    assert.equal(body.url, '/x');
    seen.push(body.instance);
  }
  assert.deepEqual(seen.slice(3), seen.slice(0, 3));
  assert.deepEqual([...seen.slice(0, 3)].sort(), ['a', 'b', 'c']);
});
