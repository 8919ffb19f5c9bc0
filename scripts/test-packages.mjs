// `npm test` runs this first: the Debian packages the suite drives for real, installed when missing
// (as root with apt-get, as on a fresh CI machine), else a clear message naming them. .ci/run installs the same list.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** What each package is for, and how to tell it is there. */
const PACKAGES = [
  { name: 'openssl', present: () => onPath('openssl'), why: 'the upstream-TLS tests make a throwaway CA and certificates with it' },
  { name: 'chromium', present: () => existsSync('/usr/bin/chromium'), why: 'the dashboard tests drive Debian\'s browser with playwright-core (they never download one)' },
  { name: 'etcd-server', present: () => onPath('etcd'), why: 'the etcd registry tests start a real etcd on loopback ports' },
];

function onPath(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

const missing = PACKAGES.filter((pkg) => !pkg.present());
if (missing.length === 0) process.exit(0);
const names = missing.map((pkg) => pkg.name);
const canInstall = process.getuid?.() === 0 && onPath('apt-get');
if (!canInstall) {
  process.stderr.write(`npm test needs these Debian packages: ${names.join(', ')}\n${missing.map((pkg) => `  ${pkg.name}: ${pkg.why}`).join('\n')}\n` +
    `install them with: sudo apt-get update && sudo apt-get install -y ${names.join(' ')}\n`);
  process.exit(1);
}
process.stdout.write(`installing ${names.join(', ')} (needed by the tests) ...\n`);
execFileSync('apt-get', ['update'], { stdio: 'inherit' });
execFileSync('apt-get', ['install', '-y', ...names], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
