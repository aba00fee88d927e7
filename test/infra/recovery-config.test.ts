import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseEnvironmentConfig, resolveRecoveryConfig } from '../../lib/config';
import { exampleEnvironment } from '../support/app';

const ROOT = path.join(__dirname, '..', '..');
const EXAMPLE_SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf';
const OTHER_RDS_SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-0f0e0d0c-AbCdEf';
const APP_SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/prod/database-AbCdEf';
const OTHER_APP_SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/prod/api-database-host-AbCdEf';
const DATABASE_KEY = 'arn:aws:kms:eu-west-3:111111111111:key/0a1b2c3d-0000-4000-8000-000000000001';
const ENDPOINT_KEY = 'arn:aws:kms:eu-west-3:111111111111:key/0a1b2c3d-0000-4000-8000-000000000002';

/** The example with its recovery block changed by `recovery`. */
const withRecovery = (recovery: Record<string, unknown>) => ({ ...exampleEnvironment(), recovery: { ...(exampleEnvironment().recovery as object), ...recovery } });

describe('recovery config', () => {
  it('is off with defaults when an environment has no recovery block', () => {
    const raw = { ...exampleEnvironment() };
    delete raw.recovery;

    const config = parseEnvironmentConfig('example', raw);
    const recovery = resolveRecoveryConfig(config);

    expect(recovery.enabled).toBe(false);
    expect(recovery.criticalTables).toEqual(['company', 'booking']);
    expect(recovery.criticalQueries).toEqual(config.restoreTest.criticalQueries);
    expect(recovery.newInstancePrefix).toBe('atmr-prod-pitr-');
    expect(recovery.endpoint).toEqual({ kind: 'secretHost', secretArn: config.database.secretArn });
    expect(recovery.rtoObjectiveSeconds).toBe(1800);
    expect(recovery.alembicVersionTable).toBe('alembic_version');
  });

  it('takes the critical queries of the restore test unless it sets its own', () => {
    const raw = { ...exampleEnvironment(), restoreTest: { criticalQueries: ['SELECT 1'] }, recovery: { criticalQueries: ['SELECT 2'] } };
    expect(resolveRecoveryConfig(parseEnvironmentConfig('example', raw)).criticalQueries).toEqual(['SELECT 2']);
    const inherited = { ...exampleEnvironment(), restoreTest: { criticalQueries: ['SELECT 1'] }, recovery: {} };
    expect(resolveRecoveryConfig(parseEnvironmentConfig('example', inherited)).criticalQueries).toEqual(['SELECT 1']);
  });

  it('accepts the example, which switches an SSM parameter (its database secret is RDS-managed); a secret the app owns is the other kind', () => {
    const example = parseEnvironmentConfig('example', exampleEnvironment());
    expect(example.recovery.enabled).toBe(true);
    expect(example.recovery.ecs?.serviceNames).toContain('atmr-api');
    expect(example.recovery.endpoint).toEqual({ kind: 'ssmParameter', parameterName: '/atmr/example/database-host' });
    const raw = withRecovery({ endpoint: { kind: 'secretHost', secretArn: APP_SECRET } });
    expect(resolveRecoveryConfig(parseEnvironmentConfig('example', raw)).endpoint).toEqual({ kind: 'secretHost', secretArn: APP_SECRET });
  });

  it("resolves the endpoint secret's customer-managed key: its own with its own secret, database.secretKmsKeyArn's on database.secretArn, none otherwise", () => {
    // Arrange: the database secret is the app's (secretHost on RDS's rds! secret is refused), under a customer key
    const database = { ...(exampleEnvironment().database as object), secretArn: APP_SECRET, secretKmsKeyArn: DATABASE_KEY };
    const endpointOf = (endpoint: Record<string, unknown>, db: object = database) => resolveRecoveryConfig(parseEnvironmentConfig('example', { ...withRecovery({ endpoint }), database: db })).endpoint;

    // Act + Assert
    expect(endpointOf({ kind: 'secretHost', secretArn: OTHER_APP_SECRET, secretKmsKeyArn: ENDPOINT_KEY })).toEqual({ kind: 'secretHost', secretArn: OTHER_APP_SECRET, secretKmsKeyArn: ENDPOINT_KEY });
    expect(endpointOf({ kind: 'secretHost' })).toEqual({ kind: 'secretHost', secretArn: APP_SECRET, secretKmsKeyArn: DATABASE_KEY });
    expect(endpointOf({ kind: 'secretHost', secretArn: APP_SECRET })).toEqual({ kind: 'secretHost', secretArn: APP_SECRET, secretKmsKeyArn: DATABASE_KEY });
    // Another secret without a key of its own is under the AWS-managed key: the database's key is not its.
    expect(endpointOf({ kind: 'secretHost', secretArn: OTHER_APP_SECRET })).toEqual({ kind: 'secretHost', secretArn: OTHER_APP_SECRET });
  });

  it('refuses at synth an endpoint key without its secret (the endpoint secret is then database.secretArn, whose key has its own field), naming the field and the fix', () => {
    const raw = { ...withRecovery({ endpoint: { kind: 'secretHost', secretKmsKeyArn: ENDPOINT_KEY } }), database: { ...(exampleEnvironment().database as object), secretArn: APP_SECRET } };

    expect(() => parseEnvironmentConfig('example', raw)).toThrow(
      'config: environments.example.recovery.endpoint.secretKmsKeyArn: names the key of no secret: without recovery.endpoint.secretArn the endpoint secret is database.secretArn, whose key is database.secretKmsKeyArn; set the key there, or set recovery.endpoint.secretArn to the secret this key encrypts',
    );
  });

  it.each([
    ['by default (database.secretArn)', { kind: 'secretHost' }, EXAMPLE_SECRET],
    ['named', { kind: 'secretHost', secretArn: OTHER_RDS_SECRET }, OTHER_RDS_SECRET],
  ])('refuses at synth a secretHost endpoint on an RDS-managed secret, %s, naming the field and the fix', (_how, endpoint, secretArn) => {
    expect(() => parseEnvironmentConfig('example', withRecovery({ endpoint }))).toThrow(
      `config: environments.example.recovery.endpoint: secretHost on ${secretArn}, an RDS-managed secret (rds!): it holds only the username and password and RDS owns it, so the cutover could not switch the API's host there; use an SSM parameter the API reads its host:port from, {"kind": "ssmParameter", "parameterName": "/atmr/<env>/database-host"} (docs/recovery.md); fix it in cdk.json (context.environments.example.recovery.endpoint)`,
    );
    // Recovery off: the endpoint is never used, so an environment without recovery keeps synthesizing.
    expect(parseEnvironmentConfig('example', withRecovery({ endpoint, enabled: false })).recovery.enabled).toBe(false);
  });

  it('refuses at synth recovery enabled without recovery.ecs (no service to redeploy: no task would read the new endpoint), naming the field and the fix; the CLI still reads such a cdk.json', () => {
    const raw = withRecovery({});
    delete (raw.recovery as Record<string, unknown>).ecs;

    expect(() => parseEnvironmentConfig('example', raw)).toThrow(
      'config: environments.example.recovery.ecs: is required when recovery is enabled: the cutover redeploys these ECS services so that their tasks read the recovered instance\'s endpoint (they read it at start); without them no task would, and the cutover would reopen traffic and rename the old instance under the API still using it; set {"clusterArn": "arn:aws:ecs:<region>:<account>:cluster/<name>", "serviceNames": [the API and every Celery service]}, or "enabled": false; fix it in cdk.json (context.environments.example.recovery.ecs)',
    );
    // A deployed cdk.json of an older version may lack it: every other command keeps working, the cutover refuses to start.
    expect(parseEnvironmentConfig('example', raw, { deployLimits: false }).recovery.ecs).toBeUndefined();
    // Recovery off: nothing is cut over.
    expect(parseEnvironmentConfig('example', { ...raw, recovery: { ...(raw.recovery as object), enabled: false } }).recovery.enabled).toBe(false);
  });

  it('refuses at synth a new-instance prefix that covers the production instance (the workflow may reset and delete under it), naming the field and the fix', () => {
    // Arrange: an explicit prefix kept after a cutover made a recovered copy production
    const raw = { ...withRecovery({ newInstancePrefix: 'atmr-prod-pitr-' }), database: { ...(exampleEnvironment().database as object), instanceIdentifier: 'atmr-prod-pitr-202611301402' } };

    // Act / Assert
    expect(() => parseEnvironmentConfig('example', raw)).toThrow(
      'config: environments.example.recovery.newInstancePrefix: "atmr-prod-pitr-" covers the production instance atmr-prod-pitr-202611301402, which the recovery workflow must never modify nor delete: use a prefix it does not start with, e.g. "atmr-prod-pitr-202611301402-pitr-" (the default when the field is absent); fix it in cdk.json (context.environments.example.recovery.newInstancePrefix)',
    );
    expect(parseEnvironmentConfig('example', withRecovery({ newInstancePrefix: 'atmr-prod-pitr-' })).recovery.newInstancePrefix).toBe('atmr-prod-pitr-');
  });

  it('refuses the default prefix too when it covers the production instance: a long name, cut to 46 characters, after a cutover made a copy production', () => {
    // Arrange: production was "atmr-production-postgres-main" (29 characters); its copy, named
    // <its default prefix><yyyymmddhhmm>, is production now and the config names it (step 10),
    // with no explicit prefix: the default "<copy>-pitr-" cut to 46 characters is a prefix of the copy.
    const copy = 'atmr-production-postgres-main-pitr-202611301402';
    const raw = { ...withRecovery({}), database: { ...(exampleEnvironment().database as object), instanceIdentifier: copy } };
    delete (raw.recovery as Record<string, unknown>).newInstancePrefix;

    // Act
    const error = (() => {
      try {
        parseEnvironmentConfig('example', raw);
        return undefined;
      } catch (e) {
        return e as Error;
      }
    })();

    // Assert: refused, naming the field, with a suggestion that does not cover production either
    expect(error?.message).toMatch(
      new RegExp(`^config: environments\\.example\\.recovery\\.newInstancePrefix: the default prefix "${copy.slice(0, 46)}" covers the production instance ${copy}, which the recovery workflow must never modify nor delete: set a prefix it does not start with, e.g. "([a-z0-9-]+)"`),
    );
    const suggested = /e\.g\. "([a-z0-9-]+)"/.exec(error!.message)![1];
    expect(copy.startsWith(suggested)).toBe(false);
    expect(parseEnvironmentConfig('example', { ...raw, recovery: { ...(raw.recovery as object), newInstancePrefix: suggested } }).recovery.newInstancePrefix).toBe(suggested);
  });

  it('suggests a prefix that does not cover production itself when refusing an explicit one', () => {
    const copy = 'atmr-production-postgres-main-pitr-202611301402';
    const raw = { ...withRecovery({ newInstancePrefix: 'atmr-production-postgres-main-pitr-' }), database: { ...(exampleEnvironment().database as object), instanceIdentifier: copy } };

    const message = (() => {
      try {
        parseEnvironmentConfig('example', raw);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    })();

    const suggested = /e\.g\. "([a-z0-9-]+)"/.exec(message)?.[1];
    expect(suggested).toBeDefined();
    expect(copy.startsWith(suggested!)).toBe(false);
  });

  it('`cdk synth` stops on it: exit 2, the one line, no template written', () => {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-synth-'));
    try {
      const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['bin/app.ts'], {
        cwd: ROOT,
        env: { ...process.env, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify({ env: 'example', environments: { example: withRecovery({ endpoint: { kind: 'secretHost' } }) } }) },
        encoding: 'utf8',
      });

      expect([run.status, run.stderr.trim().split('\n')]).toEqual([2, [expect.stringMatching(/^config: environments\.example\.recovery\.endpoint: secretHost on .*rds!.* use an SSM parameter/)]]);
      expect(fs.readdirSync(outdir)).toEqual([]);
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });

  it.each([
    [{ endpoint: { kind: 'dns' } }, /recovery\.endpoint/],
    [{ criticalTables: ['Booking; DROP'] }, /recovery\.criticalTables\.0: must be a lower-case table name/],
    [{ readinessUrl: 'not a url' }, /recovery\.readinessUrl/],
    [{ ecs: { clusterArn: 'atmr', serviceNames: ['api'] } }, /recovery\.ecs\.clusterArn: must be an ECS cluster ARN \(arn:aws:ecs:<region>:<account>:cluster\/<name>\)/],
    [{ newInstancePrefix: '1bad' }, /recovery\.newInstancePrefix: must be 1-46 lower-case letters/],
    // RDS names instances in lower case (an IAM scope on ATMR-pitr-* never matches) and refuses "--".
    [{ newInstancePrefix: 'ATMR-pitr-' }, /recovery\.newInstancePrefix: must be 1-46 lower-case letters, digits or dashes, starting with a letter, no two dashes in a row/],
    [{ newInstancePrefix: 'atmr--pitr-' }, /recovery\.newInstancePrefix: must be 1-46 lower-case letters/],
  ])('names the bad field %j', (recovery, message) => {
    expect(() => parseEnvironmentConfig('example', { ...exampleEnvironment(), recovery })).toThrow(message);
  });

  it.each(['ATMR-prod', 'atmr--prod', 'atmr-prod-'])('refuses database.instanceIdentifier %j (RDS shows identifiers in lower case, and the IAM scopes on its ARN would never match an upper-case one)', (instanceIdentifier) => {
    const raw = { ...exampleEnvironment(), database: { ...(exampleEnvironment().database as object), instanceIdentifier } };

    expect(() => parseEnvironmentConfig('example', raw)).toThrow(
      /^config: environments\.example\.database\.instanceIdentifier: must be an RDS instance identifier as RDS shows it: 1-63 lower-case letters/,
    );
  });
});
