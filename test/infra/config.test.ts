import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ConfigError, EnvironmentConfigSchema, parseEnvironmentConfig } from '../../lib/config';
import { exampleEnvironment } from '../support/app';

const ROOT = path.join(__dirname, '..', '..');

describe('environment config', () => {
  it('accepts the embedded example and fills the defaults', () => {
    const config = parseEnvironmentConfig('example', exampleEnvironment());

    expect(config.timeZone).toBe('Europe/Paris');
    expect(config.backups.runner).toBe('lambda');
    expect(config.restoreTest.rtoObjectiveSeconds).toBe(1800);
    expect(config.restoreTest.rpoObjectiveSeconds).toBe(3900); // set in the example: hourly tier + run time
    expect(config.backups.minPitrRetentionDays).toBe(7);
    expect(config.backups.partSizeMiB).toBe(5);
    expect(config.backups.snapshotRetention).toEqual({ weekly: 4, monthly: 12 });
  });

  it('names the missing environment and how to select one', () => {
    expect(() => parseEnvironmentConfig('prod', undefined)).toThrow(
      'config: no environment "prod" in cdk.json context.environments; add it there or pass -c env=example',
    );
  });

  it.each([
    ['account', (e: Record<string, unknown>) => ({ ...e, account: '12345' }), /environments\.x\.account: must be a 12-digit AWS account id/],
    [
      'a nested required field',
      (e: Record<string, unknown>) => ({ ...e, database: { ...(e.database as object), secretArn: undefined } }),
      /environments\.x\.database\.secretArn: is required/,
    ],
    ['time zone', (e: Record<string, unknown>) => ({ ...e, timeZone: 'Mars/Olympus' }), /environments\.x\.timeZone: must be an IANA time zone/],
    [
      'an unknown field',
      (e: Record<string, unknown>) => ({ ...e, backups: { ...(e.backups as object), retentionDays: 3 } }),
      /environments\.x\.backups: unknown field\(s\) retentionDays/,
    ],
    [
      'an enum',
      (e: Record<string, unknown>) => ({ ...e, backups: { ...(e.backups as object), runner: 'ec2' } }),
      /environments\.x\.backups\.runner: must be one of "lambda", "fargate"/,
    ],
    [
      'part size below S3\'s minimum',
      (e: Record<string, unknown>) => ({ ...e, backups: { ...(e.backups as object), partSizeMiB: 4 } }),
      /environments\.x\.backups\.partSizeMiB: .*5/,
    ],
  ])('rejects a bad %s with one line naming the field and the fix', (_what, mutate, expected) => {
    const raw = mutate(exampleEnvironment());

    let error: unknown;
    try {
      parseEnvironmentConfig('x', raw);
    } catch (e) {
      error = e;
    }

    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(expected);
    expect(message).toMatch(/fix it in cdk\.json \(context\.environments\.x\./);
    expect(message).not.toContain('\n');
  });

  it('keeps the schema strict at the top level', () => {
    const result = EnvironmentConfigSchema.safeParse({ ...exampleEnvironment(), surprise: true });
    expect(result.success).toBe(false);
  });

  it('fails `cdk synth` on a broken config with the one-line message and a non-zero exit', () => {
    const broken = JSON.stringify({ ...exampleEnvironment(), region: 'paris' });

    const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['bin/app.ts'], {
      cwd: ROOT,
      env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify({ env: 'broken', environments: { broken: JSON.parse(broken) } }) },
      encoding: 'utf8',
    });

    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe(
      'config: environments.broken.region: must be an AWS region such as eu-west-3; fix it in cdk.json (context.environments.broken.region)',
    );
  });
});
