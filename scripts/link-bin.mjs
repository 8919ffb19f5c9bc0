// npm links dependencies' bins, never the project's own: make node_modules/.bin/waygate work in a checkout.
import { chmodSync, existsSync, lstatSync, mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const binDir = fileURLToPath(new URL('../node_modules/.bin/', import.meta.url));
const link = `${binDir}waygate`;
if (!existsSync(fileURLToPath(new URL('../node_modules/', import.meta.url)))) process.exit(0); // installed as a dependency: npm links it
mkdirSync(binDir, { recursive: true });
try {
  if (lstatSync(link)) unlinkSync(link);
} catch {
  // no previous link
}
symlinkSync('../../bin/waygate.js', link);
chmodSync(fileURLToPath(new URL('../bin/waygate.js', import.meta.url)), 0o755);
