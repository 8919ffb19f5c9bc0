import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, formatProblem, loadConfigFile, parseConfig } from './config/load.ts';
import { printRoutes } from './cli-routes.ts';
import { isWildcardHost } from './config/values.ts';
import { startFromConfig } from './main.ts';

const USAGE = {
  main: `waygate — an HTTP gateway with service discovery

Usage:
  waygate start [--config FILE]       run the gateway (default config: $WAYGATE_CONFIG or config/gateway.yaml)
  waygate validate --config FILE      check a config file; prints "ok" or every problem as FILE:LINE:COL path: reason
  waygate routes [--admin URL]        print the live routing table of a running gateway
  waygate <command> --help            help for one command
`,
  start: `Usage: waygate start [--config FILE]

Runs the gateway until SIGTERM or SIGINT, then drains gracefully.
  --config FILE   YAML config (default: $WAYGATE_CONFIG, else config/gateway.yaml)
  --help          show this help
`,
  validate: `Usage: waygate validate --config FILE

Checks a config file without starting anything. Exit 0 and "ok" when valid; exit 1 and one line per
problem ("FILE:LINE:COL field.path: reason") otherwise.
  --config FILE   YAML config to check (required)
  --help          show this help
`,
  routes: `Usage: waygate routes [--admin URL] [--config FILE]

Prints the live routing table of a running gateway: each route with its match and service, and each
instance with its health, breaker and ejection.
  --admin URL     admin listener (default: from --config, else http://127.0.0.1:9901)
  --config FILE   read the admin address and admin.token from this config
  --help          show this help
The admin token comes from WAYGATE_ADMIN_TOKEN, else the config's admin.token.
`,
};

/** Runs the CLI; returns the exit code (start never returns until the process is told to stop). */
export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE.main);
    return command === undefined ? 1 : 0;
  }
  if (command !== 'start' && command !== 'validate' && command !== 'routes') {
    process.stderr.write(`waygate: unknown command "${command}"\n\n${USAGE.main}`);
    return 1;
  }
  let values: { config?: string | undefined; help?: boolean | undefined; admin?: string | undefined };
  try {
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } };
    if (command === 'routes') options.admin = { type: 'string' };
    ({ values } = parseArgs({ args: [...rest], options, strict: true, allowPositionals: false }) as { values: typeof values });
  } catch (error) {
    process.stderr.write(`waygate ${command}: ${(error as Error).message}\n\n${USAGE[command]}`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(USAGE[command]);
    return 0;
  }
  if (command === 'routes') return routes(values, env);
  if (command === 'validate') {
    if (!values.config) {
      process.stderr.write(`waygate validate: --config FILE is required\n\n${USAGE.validate}`);
      return 1;
    }
    return validate(values.config, env);
  }
  const file = values.config ?? env.WAYGATE_CONFIG ?? 'config/gateway.yaml';
  try {
    const config = loadConfigFile(file, env);
    await startFromConfig(config, env, file);
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`waygate: invalid config\n${error.problems.map(formatProblem).join('\n')}\n`);
      return 1;
    }
    process.stderr.write(`waygate: failed to start: ${(error as Error).message}\n`);
    return 1;
  }
}

async function routes(values: { config?: string | undefined; admin?: string | undefined }, env: NodeJS.ProcessEnv): Promise<number> {
  let admin = values.admin;
  let token = env.WAYGATE_ADMIN_TOKEN || undefined;
  if (values.config) {
    try {
      const config = loadConfigFile(values.config, env);
      const host = isWildcardHost(config.admin.host) || config.admin.host === '' ? '127.0.0.1' : config.admin.host;
      admin ??= `http://${host.includes(':') ? `[${host}]` : host}:${config.admin.port}`;
      token ??= config.admin.token;
    } catch (error) {
      const message = error instanceof ConfigError ? error.problems.map(formatProblem).join('\n') : (error as Error).message;
      process.stderr.write(`waygate routes: cannot read --config:\n${message}\n`);
      return 1;
    }
  }
  return printRoutes(admin ?? 'http://127.0.0.1:9901', token, (text) => process.stdout.write(text), (text) => process.stderr.write(text));
}

function validate(file: string, env: NodeJS.ProcessEnv): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    process.stdout.write(`${file}:1:1 (file): cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
    return 1;
  }
  const result = parseConfig(text, { file, env });
  if (result.ok) {
    process.stdout.write('ok\n');
    return 0;
  }
  process.stdout.write(result.problems.map(formatProblem).join('\n') + '\n');
  return 1;
}
