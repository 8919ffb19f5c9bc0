import type { EnvReader } from './env.ts';
import type { Report } from './problems.ts';

/** What every resolver needs: where to report, the environment, and how to read a referenced file. */
export interface ResolveContext {
  readonly report: Report;
  readonly env: EnvReader;
  readonly readFile: (p: string) => string;
}
