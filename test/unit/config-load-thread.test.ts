import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigLoadThread } from '../../src/config/load-thread.ts';
import { ConfigError, formatProblem, loadConfigFile } from '../../src/config/load.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-load-thread-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const VALID = `registry: { static: { services: { s: { instances: ["http://127.0.0.1:9"] } } } }
routes:
  - { name: r, match: { pathPrefix: /r }, service: s, timeout: 3s }
`;

describe('reading the config on a worker thread', () => {
  it('gives the same config as reading it here, and the same FILE:LINE:COL problems', async (t) => {
    const loader = new ConfigLoadThread();
    t.after(() => loader.close());
    const good = join(dir, 'good.yaml');
    writeFileSync(good, VALID);
    const loaded = await loader.load(good, {});
    assert.ok(loaded.ok);
    assert.deepEqual(loaded.config, loadConfigFile(good, {}));

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, VALID.replace('3s', 'soon'));
    const refused = await loader.load(bad, {});
    assert.ok(!refused.ok);
    let expected: string[] = [];
    try {
      loadConfigFile(bad, {});
    } catch (error) {
      expected = (error as ConfigError).problems.map(formatProblem);
    }
    assert.deepEqual(refused.errors, expected);
    assert.match(refused.errors[0]!, /bad\.yaml:3:\d+ routes\[0\]\.timeout: /);

    const missing = await loader.load(join(dir, 'missing.yaml'), {});
    assert.ok(!missing.ok);
    assert.match(missing.errors.join('\n'), /missing\.yaml/);
  });

  it('a thread that is gone is started again for the next load', async (t) => {
    const loader = new ConfigLoadThread();
    t.after(() => loader.close());
    const file = join(dir, 'again.yaml');
    writeFileSync(file, VALID);
    assert.ok((await loader.load(file, {})).ok);
    loader.close();
    assert.ok((await loader.load(file, {})).ok);
  });
});
