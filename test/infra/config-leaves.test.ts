import { parseEnvironmentConfig } from '../../lib/config';
import { exampleEnvironment, synthesizeApp } from '../support/app';

type Json = Record<string, unknown>;
type Path = (string | number)[];

/**
 * Leaves of the example config that change no template, each with why (read by the CLI, or a
 * synth-time guard). Every other leaf must change a synthesized template when it changes: a field
 * read by nothing would be a setting that silently does nothing.
 */
const NOT_IN_TEMPLATES: Record<string, string> = {
  production: 'synth-time guard only: refuses (as an error annotation) a restore test on the production instance; no resource depends on it',
  'network.availabilityZones.0': 'read by the VPC import only, paired with privateSubnetIds: resources are placed by subnet id, so zone names appear in no template',
  'network.availabilityZones.1': 'read by the VPC import only, paired with privateSubnetIds: resources are placed by subnet id, so zone names appear in no template',
  'recovery.readinessUrl': "read by the CLI only: `atmr-dr recover cutover` runs from the operator's machine (bin/cli/recover.ts); no deployed resource uses it",
  'recovery.rtoObjectiveSeconds': "read by the CLI only: `atmr-dr recover cutover` runs from the operator's machine (bin/cli/recover.ts); no deployed resource uses it",
};

function leaves(value: unknown, path: Path = []): Path[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => leaves(item, [...path, i]));
  if (value !== null && typeof value === 'object') return Object.entries(value as Json).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [path];
}

function setAt(root: Json, path: Path, value: unknown): Json {
  const copy = structuredClone(root);
  let node = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path[path.length - 1]] = value;
  return copy;
}

function getAt(root: Json, path: Path): unknown {
  return path.reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], root);
}

const ALTERNATIVES: Record<string, string> = {
  lambda: 'fargate',
  hourly: 'daily',
  'Europe/Paris': 'Europe/Berlin',
  'eu-west-3a': 'eu-west-3c',
  'subnet-0a1b2c3d4e5f60001': 'subnet-0a1b2c3d4e5f60003',
  'eu-west-3': 'eu-west-1',
  environment: 'tag',
  snapshot: 'pitr',
  'targetgroup/atmr-api/0011223344556677': 'targetgroup/atmr-api/0011223344556676',
  'app/atmr-api/0123456789abcdef': 'app/atmr-api/0123456789abcdee',
};

/** Discriminator leaves, and the whole object of another kind that replaces theirs. */
const DISCRIMINATED: Record<string, Json> = {
  // The example's database secret is RDS-managed (no host): the other kind names a secret the app owns.
  'recovery.endpoint.kind': { kind: 'secretHost', secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/example/database-AbCdEf' },
};

/**
 * Leaves that every ARN of the environment must agree with (the config refuses an ARN of another
 * account or region): the whole environment moves with them.
 */
const COUPLED: Record<string, (environment: Json) => Json> = {
  account: (environment) => JSON.parse(JSON.stringify(environment).replaceAll('111111111111', '111111111112')) as Json,
  region: (environment) => JSON.parse(JSON.stringify(environment).replaceAll('eu-west-3', 'eu-west-1')) as Json,
};

const ELB_ARN_PREFIX = 'arn:aws:elasticloadbalancing:eu-west-3:111111111111:';

/**
 * Leaves that name a resource another field names too (the API's target group, load balancer,
 * cluster, services and host): synth refuses one changed alone (lib/config.ts sharedResourceIssues).
 * Each is changed with the optional sections holding its other copies left out, of the baseline
 * too, so that a changed template still shows that this leaf is read. A copy in
 * the killswitch (required) is changed with it instead (`align`): the test then looks for the leaf's
 * own value in the templates, as a whole string (the killswitch writes it inside its ARN), where no
 * other field can have put it.
 */
const SHARED: Record<string, { without: Path[]; align?: (environment: Json, value: string) => void }> = {
  'killswitch.apiTargetGroupArn': { without: [['backout'], ['detection', 'alb']] },
  'backout.targetGroupFullName': {
    without: [['detection', 'alb']],
    align: (e, value) => ((e.killswitch as Json).apiTargetGroupArn = `${ELB_ARN_PREFIX}${value}`),
  },
  'detection.alb.targetGroupFullName': {
    without: [['backout']],
    align: (e, value) => ((e.killswitch as Json).apiTargetGroupArn = `${ELB_ARN_PREFIX}${value}`),
  },
  'backout.loadBalancerFullName': {
    without: [['detection', 'alb']],
    align: (e, value) => ((e.killswitch as Json).listenerArn = `${ELB_ARN_PREFIX}listener/${value}/fedcba9876543210`),
  },
  'detection.alb.loadBalancerFullName': {
    without: [['backout']],
    align: (e, value) => ((e.killswitch as Json).listenerArn = `${ELB_ARN_PREFIX}listener/${value}/fedcba9876543210`),
  },
  // celeryAutoscaling needs detection.ecs: the whole detection block goes. Recovery enabled
  // requires its ecs block: without it, recovery is off (enabled back to its default).
  'backout.clusterName': { without: [['detection'], ['recovery', 'ecs'], ['recovery', 'enabled']] },
  'backout.api.serviceName': { without: [['detection'], ['recovery', 'ecs'], ['recovery', 'enabled']] },
  'backout.workers.0.serviceName': { without: [['detection'], ['recovery', 'ecs'], ['recovery', 'enabled']] },
  'detection.ecs.clusterName': { without: [['backout'], ['recovery', 'ecs'], ['recovery', 'enabled']] },
  'detection.ecs.services.api.serviceName': { without: [['backout']] },
  'detection.ecs.services.celery.serviceName': { without: [['backout']] },
  'detection.probe.api.baseUrl': { without: [['backout']] },
  'recovery.ecs.clusterArn': { without: [['backout'], ['detection']] },
  'recovery.ecs.serviceNames.0': { without: [['backout']] },
  'recovery.ecs.serviceNames.1': { without: [['backout']] },
};

function without(root: Json, paths: Path[]): Json {
  const copy = structuredClone(root);
  for (const path of paths) delete (getAt(copy, path.slice(0, -1)) as Record<string | number, unknown>)[path[path.length - 1]];
  return copy;
}

/** Candidate new values for a leaf, in order; the first one the schema accepts is used. */
function candidates(value: unknown): unknown[] {
  if (typeof value === 'boolean') return [!value];
  if (typeof value === 'number') return [value + 1, value - 1, value * 2];
  const text = String(value);
  const bumped = text.replace(/([0-9a-zA-Z])([^0-9a-zA-Z]*)$/, (_m, c: string, tail: string) => {
    const next = /\d/.test(c) ? String((Number(c) + 1) % 10) : c === 'z' ? 'a' : c === 'Z' ? 'A' : String.fromCharCode(c.charCodeAt(0) + 1);
    return `${next}${tail}`;
  });
  return [ALTERNATIVES[text], `x${text}`, bumped, `${text}x`].filter((v) => v !== undefined && v !== text);
}

/** Both synthesized templates of `environment`, as one text. */
function templatesOf(environment: Json): string {
  const synthesized = synthesizeApp({ environment });
  return JSON.stringify([synthesized.dataTemplate.toJSON(), synthesized.opsTemplate.toJSON()]);
}

/** The first of these environments that the config accepts. */
function firstValid(environments: Json[]): Json | undefined {
  return environments.find((raw) => {
    try {
      parseEnvironmentConfig('example', raw);
      return true;
    } catch {
      return false;
    }
  });
}

describe('every leaf of the example config is read', () => {
  const example = exampleEnvironment();
  // One baseline per set of sections left out (SHARED), synthesized once.
  const baselines = new Map<string, string>();
  const baselineOf = (environment: Json) => {
    const key = JSON.stringify(environment);
    if (!baselines.has(key)) baselines.set(key, templatesOf(environment));
    return baselines.get(key)!;
  };

  it.each(leaves(example).map((path) => [path.join('.'), path] as const))('%s changes a synthesized template', (name, path) => {
    const shared = SHARED[name];
    const base = shared ? without(example, shared.without) : example;
    const original = getAt(base, path);
    // A discriminator cannot change alone (its siblings belong to its value): replace its whole object.
    const discriminated = DISCRIMINATED[name];
    const coupled = COUPLED[name];
    const aligned = (value: unknown) => {
      const raw = setAt(base, path, value);
      shared?.align?.(raw, value as string);
      return raw;
    };
    const changed = firstValid(coupled ? [coupled(base)] : discriminated ? [setAt(base, path.slice(0, -1), discriminated)] : candidates(original).map(aligned));
    if (!changed) throw new Error(`no valid change found for ${name} (${JSON.stringify(original)}): extend candidates()`);

    const templates = templatesOf(changed);
    const baselineTemplates = baselineOf(base);

    if (shared?.align) {
      // Only this leaf writes its value as a whole string: not there without its section, there after the change.
      const value = JSON.stringify(getAt(changed, path));
      expect([name, baselineOf(without(changed, [path.slice(0, 1)])).includes(value), templates.includes(value)]).toEqual([name, false, true]);
    }
    if (name in NOT_IN_TEMPLATES) expect([name, templates === baselineTemplates]).toEqual([name, true]);
    else expect([name, templates !== baselineTemplates]).toEqual([name, true]);
  });
});

/**
 * Optional leaves the example leaves out, each with the example changed to hold one: like the
 * example's own leaves, each must change a synthesized template when it changes.
 */
const ABSENT_FROM_EXAMPLE: Record<string, (environment: Json) => Json> = {
  // The example switches an SSM parameter: here the API reads its host from a secret of its own, under a customer key.
  'recovery.endpoint.secretKmsKeyArn': (environment) =>
    setAt(environment, ['recovery', 'endpoint'], {
      kind: 'secretHost',
      secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/example/database-AbCdEf',
      secretKmsKeyArn: 'arn:aws:kms:eu-west-3:111111111111:key/0a1b2c3d-0000-4000-8000-000000000001',
    }),
};

describe('every optional leaf the example leaves out is read', () => {
  it.each(Object.entries(ABSENT_FROM_EXAMPLE))('%s changes a synthesized template', (name, withLeaf) => {
    // Arrange: the example holding the leaf, and the same with another valid value of it
    const path = name.split('.');
    const base = withLeaf(exampleEnvironment());
    const changed = firstValid(candidates(getAt(base, path)).map((value) => setAt(base, path, value)));
    if (!changed) throw new Error(`no valid change found for ${name}: extend candidates()`);

    // Act + Assert
    expect([name, templatesOf(changed) !== templatesOf(base)]).toEqual([name, true]);
  });
});
