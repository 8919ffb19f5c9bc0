/**
 * Config loader: YAML text -> validated, fully-defaulted GatewayConfig.
 *
 * Three passes, all of which report into one list so a user sees every problem at once:
 *  1. YAML syntax (positions from the `yaml` package),
 *  2. JSON schema on the raw document (schema.ts, built from the field table in fields.ts),
 *  3. resolution: defaults, env fallbacks and cross-field rules (resolve.ts).
 * Every problem is mapped back to the 1-based line:col of the offending YAML node (positions.ts).
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { EnvReader } from './env.ts';
import { formatPath, Locator, type Segment } from './positions.ts';
import { ConfigError, dedupeProblems, errorMessage, sortProblems, type ConfigProblem, type Report } from './problems.ts';
import { resolveConfig } from './resolve.ts';
import { validateRawConfig } from './schema.ts';
import { reportSchemaError } from './schema-problems.ts';
import type { GatewayConfig } from './types.ts';

// What importers have always taken from here.
export { ConfigError, formatProblem, type ConfigProblem } from './problems.ts';
export { DEFAULTS } from './defaults.ts';
export { formatPath } from './positions.ts';
export { normaliseOrigin } from './values.ts';

export interface ParseOptions {
  /** Name used in problem locations. */
  file: string;
  /** Source of CONSUL_* fallbacks; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Used for CONSUL_HTTP_TOKEN_FILE; defaults to fs.readFileSync(path, 'utf8'). */
  readFile?: (p: string) => string;
}

export type ParseResult = { ok: true; config: GatewayConfig } | { ok: false; problems: ConfigProblem[] };

export function parseConfig(text: string, options: ParseOptions): ParseResult {
  const { file } = options;
  const problems: ConfigProblem[] = [];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, merge: true, prettyErrors: true, logLevel: 'error' });
  const locator = new Locator(doc, lines);
  const fail = (): ParseResult => ({ ok: false, problems: sortProblems(problems) });

  for (const err of doc.errors) {
    const at = err.linePos?.[0] ?? { line: 1, col: 1 };
    problems.push({ file, line: at.line, col: at.col, path: '(yaml)', reason: `invalid YAML: ${yamlReason(err.message)}` });
  }
  // A duplicate key still leaves a usable tree; any other syntax error makes later passes guess.
  if (!doc.errors.every((e) => e.code === 'DUPLICATE_KEY')) return fail();

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    problems.push({ file, line: 1, col: 1, path: '(yaml)', reason: `invalid YAML: ${errorMessage(err)}` });
    return fail();
  }
  if (data === null || data === undefined) {
    problems.push({ file, line: 1, col: 1, path: '(root)', reason: 'config is empty' });
    return fail();
  }

  const report: Report = (path: readonly Segment[], reason, target = 'value', at) => {
    const { line, col } = locator.locate(at ?? path, target);
    problems.push({ file, line, col, path: formatPath(path), reason });
  };

  for (const err of validateRawConfig(data)) reportSchemaError(err, data, report);
  const config = resolveConfig(data, {
    report,
    env: new EnvReader(options.env ?? process.env, report),
    readFile: options.readFile ?? ((p) => readFileSync(p, 'utf8')),
  });

  if (problems.length > 0) return { ok: false, problems: sortProblems(dedupeProblems(problems)) };
  return { ok: true, config };
}

export function loadConfigFile(file: string, env?: NodeJS.ProcessEnv): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', reason: readFailure(err) }]);
  }
  const result = parseConfig(text, env === undefined ? { file } : { file, env });
  if (!result.ok) throw new ConfigError(result.problems);
  return result.config;
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'cannot read config: file not found';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot read config: permission denied';
  if (code === 'EISDIR') return 'cannot read config: is a directory';
  return `cannot read config: ${errorMessage(err)}`;
}

/** "Map keys must be unique at line 2, column 1:\n\n<frame>" -> "map keys must be unique". */
function yamlReason(message: string): string {
  const first = (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '').trim();
  return first.charAt(0).toLowerCase() + first.slice(1);
}
