/** Config problems: one per offending value, printed as `FILE:LINE:COL <path>: <reason>`. */
import type { Segment } from './positions.ts';

export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  reason: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col} ${p.path}: ${p.reason}`;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Records a problem at a data path. `target: 'key'` places it on the mapping key (unknown keys);
 * `at` places it on another node than the one the path names (a missing key: on its parent).
 */
export type Report = (path: readonly Segment[], reason: string, target?: 'key' | 'value', at?: readonly Segment[]) => void;

/** In file order; Array.prototype.sort is stable, so problems on one node keep discovery order. */
export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col);
}

/** Drops repeats: two passes may find the same fault (the schema and a cross-field rule). */
export function dedupeProblems(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = formatProblem(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
