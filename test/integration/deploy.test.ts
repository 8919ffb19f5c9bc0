import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseDuration } from '../../src/config/duration.ts';
import { ensureBuilt } from '../support/gateway.ts';

/**
 * The deployment files in deploy/ cannot be run here (no Docker engine, no cluster), so this reads
 * them the way Compose and Kubernetes would and checks that they agree with each other, with the
 * Dockerfile and with the gateway configs they carry; each of those configs must pass `waygate validate`.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const BIN = join(ROOT, 'bin', 'waygate.js');

// Loosely typed parsed YAML: the checks below assert the shapes they rely on.
type Yaml = any;

interface Doc {
  readonly file: string; // relative to the repository, for messages
  readonly value: Yaml;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFiles(full));
    else if (/\.ya?ml$/.test(entry.name)) out.push(full);
  }
  return out.sort();
}

/** Every document of every YAML file in deploy/, failing on any syntax error. */
function loadDocuments(): Doc[] {
  const docs: Doc[] = [];
  for (const path of yamlFiles(DEPLOY)) {
    const file = relative(ROOT, path);
    const parsed = parseAllDocuments(readFileSync(path, 'utf8'));
    for (const doc of Array.isArray(parsed) ? parsed : [parsed]) {
      assert.deepEqual(doc.errors.map((error) => error.message), [], `${file}: YAML errors`);
      assert.deepEqual(doc.warnings.map((warning) => warning.message), [], `${file}: YAML warnings`);
      const value: unknown = doc.toJS();
      if (value !== null && value !== undefined) docs.push({ file, value });
    }
  }
  return docs;
}

/** Milliseconds of a config duration, with the gateway's own default when the key is absent. */
function durationMs(value: unknown, fallback: string, what: string): number {
  const ms = parseDuration(value ?? fallback);
  assert.ok(ms !== undefined, `${what}: ${JSON.stringify(value)} is not a duration`);
  return ms;
}

/** The values the deployment files must agree with, read from a gateway config (documented defaults). */
function gatewaySettings(config: Yaml, what: string) {
  assert.equal(typeof config, 'object', `${what}: not a mapping`);
  return {
    publicPort: config.server?.port ?? 8080,
    adminHost: config.admin?.host ?? '127.0.0.1',
    adminPort: config.admin?.port ?? 9901,
    drainDelayMs: durationMs(config.shutdown?.drainDelay, '5s', `${what} shutdown.drainDelay`),
    shutdownTimeoutMs: durationMs(config.shutdown?.timeout, '30s', `${what} shutdown.timeout`),
  };
}

/** A container port given as a number or as the name of one of the container's ports. */
function resolvePort(container: Yaml, port: unknown, what: string): number {
  if (typeof port === 'number') return port;
  const named = (container.ports ?? []).find((p: Yaml) => p.name === port);
  assert.ok(named, `${what}: port ${JSON.stringify(port)} is neither a number nor a named port of container ${container.name}`);
  return named.containerPort;
}

/** Seconds a preStop hook takes, for the shapes used here: exec sleep N, sh -c "sleep N", or sleep.seconds. */
function preStopSeconds(container: Yaml): number {
  const hook = container.lifecycle?.preStop;
  if (hook === undefined) return 0;
  if (typeof hook.sleep?.seconds === 'number') return hook.sleep.seconds;
  const command: unknown[] = hook.exec?.command ?? [];
  const line = command.length >= 3 && /(^|\/)sh$/.test(String(command[0])) && command[1] === '-c' ? String(command[2]).trim().split(/\s+/) : command.map(String);
  if (line.length === 2 && /(^|\/)sleep$/.test(line[0]!) && /^\d+(\.\d+)?$/.test(line[1]!)) return Number(line[1]);
  assert.fail(`cannot tell how long the preStop hook ${JSON.stringify(hook)} takes; use exec ["sleep", "N"] or sleep.seconds`);
}

/** A compose service's volumes as { source, target }, short ("SRC:DST[:ro]") or long form. */
function mounts(service: Yaml): Array<{ source: string; target: string; bind: boolean }> {
  return (service.volumes ?? []).map((volume: Yaml) => {
    if (typeof volume === 'string') {
      const [source = '', target = ''] = volume.split(':');
      return { source, target, bind: /^[./~]/.test(source) };
    }
    return { source: String(volume.source ?? ''), target: String(volume.target ?? ''), bind: volume.type === 'bind' };
  });
}

function isSubset(labels: Record<string, string> | undefined, of: Record<string, string> | undefined): boolean {
  return labels !== undefined && Object.keys(labels).length > 0 && Object.entries(labels).every(([key, value]) => of?.[key] === value);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function validate(file: string, cwd: string): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, 'validate', '--config', file], { cwd, env: { ...process.env, WAYGATE_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`waygate validate ${file} did not exit; stdout=${stdout} stderr=${stderr}`));
    }, 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

// Loaded on first use, inside a test, so a syntax error is reported as that test's failure.
let loaded: Doc[] | undefined;
function documents(): Doc[] {
  loaded ??= loadDocuments();
  return loaded;
}
const kubernetesDocs = (): Doc[] => documents().filter((doc) => doc.file.startsWith(join('deploy', 'kubernetes')));
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

function one(kind: string): Doc {
  const found = kubernetesDocs().filter((doc) => doc.value.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind} in deploy/kubernetes (found ${found.length})`);
  return found[0]!;
}

/** The Deployment, its gateway container, and the ConfigMap entry its --config argument points at. */
function deploymentView() {
  const deployment = one('Deployment');
  const pod = deployment.value.spec.template.spec;
  const containers: Yaml[] = pod.containers;
  const container = containers.find((c) => c.name === 'waygate') ?? containers[0];
  assert.ok(container, `${deployment.file}: no container`);
  const args: string[] = container.args ?? [];
  assert.equal(args[0], 'start', `${deployment.file}: args must start the gateway (${JSON.stringify(args)})`);
  const configIndex = args.indexOf('--config');
  assert.ok(configIndex > 0 && args[configIndex + 1], `${deployment.file}: args must name --config FILE`);
  const configPath = args[configIndex + 1]!;
  const mount = (container.volumeMounts ?? []).find((m: Yaml) => posix.dirname(configPath) === m.mountPath.replace(/\/$/, ''));
  assert.ok(mount, `${deployment.file}: no volumeMount at ${posix.dirname(configPath)} (the directory of --config ${configPath})`);
  assert.equal(mount.subPath, undefined, `${deployment.file}: the config is mounted with subPath, so ConfigMap edits never reach the pod`);
  const volume = (pod.volumes ?? []).find((v: Yaml) => v.name === mount.name);
  assert.ok(volume?.configMap?.name, `${deployment.file}: volume ${mount.name} is not a ConfigMap`);
  const configMap = one('ConfigMap');
  assert.equal(configMap.value.metadata.name, volume.configMap.name, `${deployment.file} mounts ConfigMap ${volume.configMap.name}, ${configMap.file} is ${configMap.value.metadata.name}`);
  const key = posix.basename(configPath);
  const text: unknown = configMap.value.data?.[key];
  assert.equal(typeof text, 'string', `${configMap.file}: no data key ${key} (the file --config ${configPath} reads)`);
  const gatewayConfig: Yaml = parse(text as string);
  return { deployment, pod, container, configMap, configText: text as string, settings: gatewaySettings(gatewayConfig, `${configMap.file} ${key}`) };
}

/** The compose service built from the repository, and the gateway config mounted into it. */
function composeView() {
  const composeDoc = documents().find((doc) => /^docker-compose\.ya?ml$/.test(basename(doc.file)));
  assert.ok(composeDoc, 'deploy/docker-compose.yml exists');
  const services: Record<string, Yaml> = composeDoc.value.services;
  const builtEntries = Object.entries(services).filter(([, service]) => service.build !== undefined);
  assert.equal(builtEntries.length, 1, `${composeDoc.file}: exactly one service is built from the repository`);
  const [gatewayName, gateway] = builtEntries[0]!;
  const composeDir = join(ROOT, dirname(composeDoc.file));
  // `docker compose -f deploy/docker-compose.yml` resolves relative paths against the compose file's directory.
  const fromCompose = (path: string) => resolve(composeDir, path);
  const defaultCmd = /^CMD\s+(\[.*\])\s*$/m.exec(dockerfile);
  assert.ok(defaultCmd, 'Dockerfile has an exec-form CMD');
  const command: string[] = gateway.command ?? JSON.parse(defaultCmd[1]!);
  const configPath = command[command.indexOf('--config') + 1];
  assert.ok(command.includes('--config') && configPath, `${composeDoc.file}: cannot tell which config the gateway starts with`);
  const configMount = mounts(gateway).find((volume) => volume.bind && volume.target === configPath);
  assert.ok(configMount, `${composeDoc.file}: nothing is mounted at ${configPath}, the config the image starts with`);
  const configFile = fromCompose(configMount.source);
  return { services, gatewayName, gateway, composeDir, fromCompose, configFile, settings: gatewaySettings(parse(readFileSync(configFile, 'utf8')), relative(ROOT, configFile)) };
}

describe('deploy/: every YAML file', () => {
  test('parses, and every Kubernetes document names its apiVersion, kind and metadata.name', () => {
    const docs = documents();
    const k8s = kubernetesDocs();
    assert.ok(docs.length >= 5, `found ${docs.length} documents in deploy/`);
    assert.ok(k8s.length >= 3, 'deploy/kubernetes holds the ConfigMap, Deployment and Service');
    for (const doc of k8s) {
      assert.equal(typeof doc.value.apiVersion, 'string', `${doc.file}: apiVersion`);
      assert.equal(typeof doc.value.kind, 'string', `${doc.file}: kind`);
      assert.equal(typeof doc.value.metadata?.name, 'string', `${doc.file}: metadata.name`);
    }
  });
});

describe('deploy/kubernetes', () => {
  test('the ConfigMap the Deployment mounts holds the gateway config its --config argument reads', () => {
    const { container, configMap } = deploymentView();
    assert.equal(container.command, undefined, 'command would replace the image ENTRYPOINT (node bin/waygate.js); set args only');
    assert.equal(configMap.value.kind, 'ConfigMap');
  });

  test('the gateway config listens on 0.0.0.0 for admin, so the kubelet can probe it', () => {
    const { settings } = deploymentView();
    assert.equal(settings.adminHost, '0.0.0.0', 'admin.host must be 0.0.0.0: probes come in on the pod IP, not loopback');
  });

  test('probes: /health/live and /health/ready on the admin port, which the container exposes', () => {
    const { container, settings, deployment } = deploymentView();
    const exposed: number[] = (container.ports ?? []).map((p: Yaml) => p.containerPort);
    assert.ok(exposed.includes(settings.adminPort), `${deployment.file}: containerPorts ${JSON.stringify(exposed)} must include admin.port ${settings.adminPort}`);
    assert.ok(exposed.includes(settings.publicPort), `${deployment.file}: containerPorts ${JSON.stringify(exposed)} must include server.port ${settings.publicPort}`);
    for (const [probe, path] of [['livenessProbe', '/health/live'], ['readinessProbe', '/health/ready']] as const) {
      const get = container[probe]?.httpGet;
      assert.ok(get, `${deployment.file}: ${probe} must be an httpGet probe`);
      assert.equal(get.path, path, `${deployment.file}: ${probe} path`);
      assert.equal(resolvePort(container, get.port, probe), settings.adminPort, `${deployment.file}: ${probe} must use admin.port ${settings.adminPort}`);
    }
  });

  test('terminationGracePeriodSeconds covers preStop + drainDelay + shutdown.timeout', () => {
    const { pod, container, settings, deployment } = deploymentView();
    const grace: number = pod.terminationGracePeriodSeconds ?? 30; // Kubernetes' default
    const needed = preStopSeconds(container) + (settings.drainDelayMs + settings.shutdownTimeoutMs) / 1000;
    assert.ok(grace >= needed, `${deployment.file}: terminationGracePeriodSeconds ${grace} < preStop + drainDelay + timeout = ${needed}`);
  });

  test('the pod runs as a provable non-root user with a read-only root filesystem and resource bounds', () => {
    const { pod, container, deployment } = deploymentView();
    const security = { ...pod.securityContext, ...container.securityContext };
    assert.equal(security.runAsNonRoot, true, `${deployment.file}: runAsNonRoot`);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true, `${deployment.file}: readOnlyRootFilesystem`);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false, `${deployment.file}: allowPrivilegeEscalation`);
    // With a non-numeric image USER (the Dockerfile's `USER node`), the kubelet refuses to start a
    // runAsNonRoot container unless runAsUser gives the uid.
    const imageUser = /^USER\s+(\S+)\s*$/m.exec(dockerfile)?.[1];
    if (imageUser === undefined || !/^\d+$/.test(imageUser)) {
      assert.ok(Number.isInteger(security.runAsUser) && security.runAsUser > 0, `${deployment.file}: image USER is ${JSON.stringify(imageUser)}, so runAsUser must be a non-zero uid`);
    }
    assert.ok(container.resources?.requests?.cpu && container.resources?.requests?.memory, `${deployment.file}: resources.requests`);
    assert.ok(container.resources?.limits?.memory, `${deployment.file}: resources.limits.memory`);
  });

  test('the Deployment selects its own pods', () => {
    const { deployment } = deploymentView();
    assert.ok(isSubset(deployment.value.spec.selector?.matchLabels, deployment.value.spec.template.metadata?.labels), `${deployment.file}: selector.matchLabels must match the pod template labels`);
  });

  test('the Service is a ClusterIP on 80 that targets server.port of the gateway pods, and not the admin port', () => {
    const { container, deployment, settings } = deploymentView();
    const service = one('Service');
    assert.equal(service.value.spec.type ?? 'ClusterIP', 'ClusterIP', `${service.file}: type`);
    assert.ok(isSubset(service.value.spec.selector, deployment.value.spec.template.metadata?.labels), `${service.file}: selector must match the Deployment's pod labels`);
    const ports: Yaml[] = service.value.spec.ports ?? [];
    const http = ports.find((p) => p.port === 80);
    assert.ok(http, `${service.file}: no port 80`);
    assert.equal(resolvePort(container, http.targetPort ?? http.port, `${service.file} targetPort`), settings.publicPort, `${service.file}: port 80 must target server.port ${settings.publicPort}`);
    for (const port of ports) {
      assert.notEqual(resolvePort(container, port.targetPort ?? port.port, `${service.file} targetPort`), settings.adminPort, `${service.file}: exposes the admin port`);
    }
  });
});

describe('deploy/docker-compose.yml', () => {
  test('the gateway is built from the repository Dockerfile', () => {
    const { gateway, fromCompose } = composeView();
    const build = typeof gateway.build === 'string' ? { context: gateway.build } : gateway.build;
    const context = fromCompose(build.context ?? '.');
    assert.equal(context, resolve(ROOT), 'build context is the repository root');
    const file = join(context, build.dockerfile ?? 'Dockerfile');
    assert.ok(existsSync(file) && statSync(file).isFile(), `${file} exists`);
    assert.equal(file, join(ROOT, 'Dockerfile'));
  });

  test('every published port is bound to 127.0.0.1', () => {
    const { services } = composeView();
    let published = 0;
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) {
        published++;
        if (typeof port === 'object') assert.equal(port.host_ip, '127.0.0.1', `service ${name}: ${JSON.stringify(port)}`);
        else assert.match(String(port), /^127\.0\.0\.1:\d+:\d+(\/tcp)?$/, `service ${name}: port ${port} must be published as 127.0.0.1:HOST:CONTAINER`);
      }
    }
    assert.ok(published > 0);
  });

  test('every bind-mounted file exists; the gateway config is mounted where the image reads it', () => {
    const { services, fromCompose, configFile } = composeView();
    assert.ok(existsSync(configFile), `${configFile} exists`);
    assert.equal(relative(ROOT, configFile), join('deploy', 'gateway-compose.yaml'));
    for (const [name, service] of Object.entries(services)) {
      for (const { source, bind } of mounts(service)) {
        if (bind) assert.ok(existsSync(fromCompose(source)), `service ${name}: bind mount ${source} does not exist`);
      }
    }
  });

  test('the gateway config: admin on 0.0.0.0, both ports published, Consul by its service name, stop grace covers the drain', () => {
    const { services, gateway, gatewayName, configFile, settings } = composeView();
    const config = parse(readFileSync(configFile, 'utf8'));
    assert.equal(settings.adminHost, '0.0.0.0', 'admin.host must be 0.0.0.0 inside a container');
    const containerPorts = (gateway.ports ?? []).map((port: Yaml) => Number(typeof port === 'object' ? port.target : String(port).split(':').at(-1)!.split('/')[0]));
    assert.ok(containerPorts.includes(settings.publicPort), `server.port ${settings.publicPort} is published`);
    assert.ok(containerPorts.includes(settings.adminPort), `admin.port ${settings.adminPort} is published`);
    const consulHost = new URL(config.registry?.consul?.address).hostname;
    assert.ok(services[consulHost], `registry.consul.address names ${consulHost}, which is not a compose service`);
    assert.match(String(services[consulHost].image), /^hashicorp\/consul:1\.20(\.|$)/);
    assert.ok(services[consulHost].command?.includes('-dev') && services[consulHost].command?.includes('-client=0.0.0.0'), 'consul runs as agent -dev -client=0.0.0.0');
    const grace = durationMs(gateway.stop_grace_period, '10s', `service ${gatewayName} stop_grace_period`);
    assert.ok(grace >= settings.drainDelayMs + settings.shutdownTimeoutMs, `stop_grace_period ${grace} ms < drainDelay + timeout`);
  });

  test('every routed service is defined in Consul, at a compose service, with an HTTP check', () => {
    const { services, configFile, fromCompose } = composeView();
    const config = parse(readFileSync(configFile, 'utf8'));
    const consulName = new URL(config.registry.consul.address).hostname;
    const definitions: Yaml[] = [];
    for (const { source, target, bind } of mounts(services[consulName])) {
      if (bind && target.startsWith('/consul/config/') && source.endsWith('.json')) {
        definitions.push(...(JSON.parse(readFileSync(fromCompose(source), 'utf8')).services ?? []));
      }
    }
    for (const route of config.routes) {
      const definition = definitions.find((d) => d.name === route.service);
      assert.ok(definition, `route ${route.name}: service ${route.service} is not defined in any services file mounted into /consul/config`);
      assert.ok(services[definition.address], `service ${definition.name}: address ${definition.address} is not a compose service`);
      const checks: Yaml[] = definition.checks ?? (definition.check ? [definition.check] : []);
      assert.ok(checks.some((check) => typeof check.http === 'string' && services[new URL(check.http).hostname]), `service ${definition.name}: needs an HTTP check against a compose service`);
    }
  });
});

describe('every gateway config in deploy/ passes `waygate validate`', () => {
  let dir: string;
  before(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'waygate-deploy-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the ConfigMap gateway.yaml', async () => {
    const { configText } = deploymentView();
    const file = join(dir, 'configmap-gateway.yaml');
    writeFileSync(file, configText);
    const result = await validate(file, dir);
    assert.equal(result.stdout, 'ok\n', result.stderr);
    assert.equal(result.code, 0);
  });

  test('deploy/gateway-compose.yaml', async () => {
    const { configFile } = composeView();
    const result = await validate(configFile, dir);
    assert.equal(result.stdout, 'ok\n', result.stderr);
    assert.equal(result.code, 0);
  });
});
