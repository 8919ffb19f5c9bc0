import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

/** Holds /hold requests on instance "a" only, until released; everything else answers at once. */
const held: ServerResponse[] = [];

function handler(name: string) {
  return (request: IncomingMessage, response: ServerResponse) => {
    if (name === 'a' && request.url === '/hold') {
      held.push(response);
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
    response.end(JSON.stringify({ instance: name, url: request.url }));
  };
}

function releaseHeld(): void {
  for (const response of held.splice(0)) {
    response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'a' });
    response.end(JSON.stringify({ instance: 'a', url: '/hold' }));
  }
}

let upstreams: TestUpstream[];
let gw: RunningGateway;

before(async () => {
  upstreams = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream(name, { handler: handler(name) })));
  const [a, b, c] = upstreams.map((u) => `"${u.url}"`);
  gw = await startGateway(`
registry:
  static:
    services:
      plain: { instances: [${a}, ${b}, ${c}] }
      weighted: { instances: [{ url: ${a}, weight: 2 }, ${b}, { url: ${c}, weight: 3 }] }
      hashed: { instances: [${a}, ${b}, ${c}] }
      least: { instances: [${a}, ${b}, ${c}] }
routes:
  - { name: rr, match: { pathPrefix: /rr }, service: plain, stripPrefix: true, loadBalancer: round-robin }
  - { name: weighted, match: { pathPrefix: /weighted }, service: weighted, stripPrefix: true }
  - { name: hashed, match: { pathPrefix: /hashed }, service: hashed, stripPrefix: true, loadBalancer: consistent-hash, hashKey: "header:X-User-Id" }
  - { name: least, match: { pathPrefix: /least }, service: least, stripPrefix: true, loadBalancer: least-request, timeout: 20s }
`);
});

after(async () => {
  releaseHeld();
  await gw?.stop();
  await Promise.all((upstreams ?? []).map((u) => u.close()));
});

async function who(path: string, headers: Record<string, string> = {}): Promise<string> {
  const response = await fetch(`${gw.url}${path}`, { headers });
  assert.equal(response.status, 200, path);
  return ((await response.json()) as { instance: string }).instance;
}

function count(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of names) out[name] = (out[name] ?? 0) + 1;
  return out;
}

describe('round-robin', () => {
  test('rotates over the 3 instances in an exact cycle', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) seen.push(await who('/rr/x'));
    assert.deepEqual([...seen.slice(0, 3)].sort(), ['a', 'b', 'c']);
    for (let i = 3; i < seen.length; i++) assert.equal(seen[i], seen[i - 3], `pick ${i}: ${seen.join(',')}`);
  });

  test('concurrent requests are spread evenly too', async () => {
    const seen = await Promise.all(Array.from({ length: 30 }, () => who('/rr/y')));
    assert.deepEqual(count(seen), { a: 10, b: 10, c: 10 });
  });
});

describe('weights', () => {
  test('weights 2:1:3 are honoured exactly over whole cycles', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 24; i++) seen.push(await who('/weighted/x'));
    assert.deepEqual(count(seen), { a: 8, b: 4, c: 12 });
    // smooth weighted round-robin: every window of one cycle (6 picks) has the exact proportions
    for (let start = 0; start + 6 <= seen.length; start += 6) {
      assert.deepEqual(count(seen.slice(start, start + 6)), { a: 2, b: 1, c: 3 }, seen.join(','));
    }
  });
});

describe('consistent-hash on header:x-user-id', () => {
  test('the same user always lands on the same instance; different users spread', async () => {
    const home: Record<string, string> = {};
    for (let user = 0; user < 30; user++) {
      const id = `user-${user}`;
      home[id] = await who('/hashed/x', { 'x-user-id': id });
    }
    for (let round = 0; round < 3; round++) {
      for (const [id, instance] of Object.entries(home)) {
        assert.equal(await who(`/hashed/r${round}`, { 'x-user-id': id }), instance, id);
      }
    }
    const used = new Set(Object.values(home));
    assert.equal(used.size, 3, `30 users should reach all 3 instances: ${JSON.stringify(count(Object.values(home)))}`);
  });

  test('the header name is case-insensitive', async () => {
    const lower = await who('/hashed/x', { 'x-user-id': 'casey' });
    for (let i = 0; i < 5; i++) assert.equal(await who('/hashed/x', { 'X-USER-ID': 'casey' }), lower);
  });

  test('requests without the key are still spread', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 9; i++) seen.push(await who('/hashed/nokey'));
    assert.equal(new Set(seen).size, 3, seen.join(','));
  });

  test('when an instance dies, only its users move; everyone else stays put', async () => {
    const home: Record<string, string> = {};
    for (let user = 0; user < 30; user++) home[`u${user}`] = await who('/hashed/x', { 'x-user-id': `u${user}` });
    const victim = upstreams.find((u) => u.name === 'c')!;
    await victim.kill();
    try {
      for (const [id, instance] of Object.entries(home)) {
        const now = await who('/hashed/x', { 'x-user-id': id });
        if (instance === 'c') assert.notEqual(now, 'c');
        else assert.equal(now, instance, `${id} must not move`);
      }
    } finally {
      await victim.restore();
    }
  });
});

describe('least-request', () => {
  test('new requests go away from the instance holding slow requests', async () => {
    // Send /hold requests until one is held by "a" (those landing on b or c answer at once).
    // Once a holds one, least-request keeps every further request away from it.
    const parked: Array<Promise<{ status: number; body: string }>> = [];
    await waitFor('a request held by instance a', async () => {
      const pending = fetch(`${gw.url}/least/hold`).then(async (response) => ({ status: response.status, body: await response.text() }));
      const outcome = await Promise.race([
        pending.then(() => 'answered' as const),
        waitFor('a to hold it', () => held.length > 0, 2_000).then(() => 'held' as const, () => 'answered' as const),
      ]);
      if (outcome === 'held') parked.push(pending);
      return held.length > 0;
    }, 10_000, 0);
    assert.equal(held.length, 1);

    const seen: string[] = [];
    for (let i = 0; i < 30; i++) seen.push(await who('/least/fast'));
    const counts = count(seen);
    assert.equal(counts.a, undefined, `a holds a slow request and must get none: ${JSON.stringify(counts)}`);
    assert.ok((counts.b ?? 0) > 0 && (counts.c ?? 0) > 0, JSON.stringify(counts));

    releaseHeld();
    const answers = await Promise.all(parked);
    assert.deepEqual(answers.map((r) => r.status), [200]);
    assert.equal((JSON.parse(answers[0]!.body) as { instance: string }).instance, 'a');

    // once a is idle again it is back in the mix
    const after: string[] = [];
    for (let i = 0; i < 30; i++) after.push(await who('/least/fast'));
    assert.ok((count(after).a ?? 0) > 0, JSON.stringify(count(after)));
  });
});
