import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ACCESS_LOG = fileURLToPath(new URL('../../src/observability/access-log.ts', import.meta.url));

/** Runs an AccessLog on stdout in a child process (as a worker does) and returns what it printed. */
function printed(sharedStdout: boolean, paths: string[]): string[] {
  const script = `
    import { AccessLog } from ${JSON.stringify(ACCESS_LOG)};
    const log = new AccessLog({ enabled: true, path: 'stdout' }, { sharedStdout: ${sharedStdout} });
    for (const path of ${JSON.stringify(paths)}) log.write({ requestId: 'r', clientIp: '127.0.0.1', method: 'GET', path, status: 200, durationMs: 1, route: 'x', service: 's', instance: null, attempts: 1, bytesSent: 2 });
    await log.close();
  `;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  return child.stdout.split('\n').filter((line) => line !== '');
}

describe('access log on a stdout shared by worker processes', () => {
  it('every line fits one atomic pipe write (4 KiB): a longer path is shortened, a normal one kept', () => {
    const long = `/${'a'.repeat(6000)}`;
    const lines = printed(true, ['/short', long]);
    assert.equal(lines.length, 2);
    for (const line of lines) assert.ok(Buffer.byteLength(line) + 1 <= 4096, `${Buffer.byteLength(line)} bytes`);
    assert.equal(JSON.parse(lines[0]!).path, '/short');
    const shortened = JSON.parse(lines[1]!).path as string;
    assert.ok(shortened.endsWith('…') && long.startsWith(shortened.slice(0, -1)));
  });

  it('a single process keeps the whole path', () => {
    const long = `/${'a'.repeat(6000)}`;
    assert.equal(JSON.parse(printed(false, [long])[0]!).path, long);
  });
});
