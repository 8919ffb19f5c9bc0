import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A throwaway CA made with openssl in `dir`, and certificates it signs (files named after each certificate). */
export class TestCa {
  readonly ca: string;

  constructor(private readonly dir: string, subject = 'waygate test CA') {
    this.run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${subject}`);
    this.ca = join(dir, 'ca.pem');
  }

  /** `<name>.pem` and `<name>.key`, with these X.509 extensions (e.g. subjectAltName, extendedKeyUsage lines). */
  sign(name: string, extensions: string): { cert: string; key: string } {
    this.run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(this.dir, `${name}.ext`), extensions);
    this.run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
    return { cert: join(this.dir, `${name}.pem`), key: join(this.dir, `${name}.key`) };
  }

  private run(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }
}
