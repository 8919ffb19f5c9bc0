/** How one metric family's samples from several processes become one (prom-client's aggregator names). */
export type Aggregation = 'sum' | 'max' | 'min' | 'first' | 'average' | 'omit';

interface Family {
  readonly header: string[];
  readonly aggregation: Aggregation;
  /** `name{labels}` → value so far, in first-seen order. */
  readonly samples: Map<string, number>;
  /** For 'average': how many processes gave each sample. */
  readonly counts: Map<string, number>;
}

/**
 * Merges Prometheus text expositions of several processes into one. A sample is `name{labels} value`
 * and belongs to the family of the `# TYPE` line above it; samples with the same name and labels are
 * combined by the family's aggregation. Plain string work, several times cheaper than prom-client's
 * AggregatorRegistry, which hashes every label set of every process (≈800 ms for 8 × 19,000 series).
 */
export function mergeExpositions(texts: readonly string[], aggregationOf: (family: string) => Aggregation): string {
  const families = new Map<string, Family>();
  for (const text of texts) {
    let family: Family | undefined;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        const [, kind, name] = line.split(' ', 3);
        if (name === undefined || (kind !== 'HELP' && kind !== 'TYPE')) continue;
        family = families.get(name);
        if (!family) {
          family = { header: [], aggregation: aggregationOf(name), samples: new Map(), counts: new Map() };
          families.set(name, family);
        }
        if (family.header.length < 2 && !family.header.some((seen) => seen.startsWith(`# ${kind} `))) family.header.push(line);
        continue;
      }
      if (!family || family.aggregation === 'omit') continue;
      const space = line.lastIndexOf(' ');
      if (space <= 0) continue;
      const key = line.slice(0, space);
      const value = parseSampleValue(line.slice(space + 1));
      const before = family.samples.get(key);
      family.counts.set(key, (family.counts.get(key) ?? 0) + 1);
      family.samples.set(key, before === undefined ? value : combine(family.aggregation, before, value));
    }
  }
  const out: string[] = [];
  for (const family of families.values()) {
    if (family.aggregation === 'omit') continue;
    out.push(...family.header);
    for (const [key, value] of family.samples) {
      const final = family.aggregation === 'average' ? value / (family.counts.get(key) ?? 1) : value;
      out.push(`${key} ${formatSampleValue(final)}`);
    }
    out.push('');
  }
  return out.join('\n');
}

function combine(aggregation: Aggregation, a: number, b: number): number {
  switch (aggregation) {
    case 'max':
      return Math.max(a, b);
    case 'min':
      return Math.min(a, b);
    case 'first':
      return a;
    default:
      return a + b; // sum, and average (divided at the end)
  }
}

/** The exposition format spells infinities +Inf and -Inf (as in a histogram's last bucket). */
function parseSampleValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

function formatSampleValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

const MONOTONIC_TYPES = new Set(['counter', 'histogram', 'summary']);

/**
 * Only the families that only ever grow (counters, histograms, summaries) of an exposition: what a
 * process that is gone has to go on contributing, or the sum would fall and Prometheus would read a
 * counter reset (and count everything again as new).
 */
export function monotonicFamilies(text: string): string {
  const out: string[] = [];
  let keep = false;
  let header: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# HELP ')) {
      header = [line];
      keep = false;
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      keep = MONOTONIC_TYPES.has(line.split(' ')[3] ?? '');
      if (keep) out.push(...header, line);
      header = [];
      continue;
    }
    if (keep && line !== '') out.push(line);
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}
