import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { parseEnvSettings } from '../../../lambdas/shared/env-settings';
import { OperatorError } from '../../../lambdas/shared/errors';
import { safeJson } from '../../../lambdas/shared/json';
import { firstError } from '../../../lambdas/shared/postgres';
import { getText } from '../../../lambdas/shared/s3-objects';
import { BACKUP_TIERS, isSnapshotTier, parseBackupTier, SNAPSHOT_TIERS } from '../../../lambdas/shared/tiers';
import { createS3Client } from '../../../lambdas/shared/aws';
import { startLocalS3, type LocalS3 } from '../../support/s3';

function thrown(fn: () => unknown): OperatorError {
  try {
    fn();
  } catch (error) {
    return error as OperatorError;
  }
  throw new Error('expected a throw');
}

describe('backup tiers', () => {
  it('accepts the four tiers and rejects others with one wording naming them (exit 2)', () => {
    for (const tier of ['hourly', 'daily', 'weekly', 'monthly']) expect(parseBackupTier(tier)).toBe(tier);

    const bad = thrown(() => parseBackupTier('Hourly'));
    const missing = thrown(() => parseBackupTier(undefined, 'backup event'));

    expect(bad).toBeInstanceOf(OperatorError);
    expect(bad.exitCode).toBe(2);
    expect(bad.message).toBe('invalid backup tier "Hourly": use one of hourly, daily, weekly, monthly');
    expect(missing.message).toBe('backup event: invalid backup tier (none): use one of hourly, daily, weekly, monthly');
  });

  it('takes snapshots for the weekly and monthly tiers only', () => {
    expect(SNAPSHOT_TIERS).toEqual(['weekly', 'monthly']);
    expect(BACKUP_TIERS.filter(isSnapshotTier)).toEqual(['weekly', 'monthly']);
  });
});

describe('parseEnvSettings', () => {
  const schema = z.object({ BUCKET: z.string().min(3), LEVEL: z.coerce.number().int().min(0).max(9).default(1) });
  const options = { what: 'runner environment', fix: 'redeploy the stack' };

  it('applies defaults, treating a blank variable as unset', () => {
    expect(parseEnvSettings(schema, { BUCKET: 'backups', LEVEL: ' ' }, options)).toEqual({ BUCKET: 'backups', LEVEL: 1 });
  });

  it('names a missing variable and the fix in one line (exit 2)', () => {
    const error = thrown(() => parseEnvSettings(schema, {}, options));

    expect(error.exitCode).toBe(2);
    expect(error.message).toBe('runner environment: BUCKET is not set; redeploy the stack');
  });

  it('names an invalid variable with its value', () => {
    const error = thrown(() => parseEnvSettings(schema, { BUCKET: 'backups', LEVEL: 'ten' }, options));

    expect(error.message).toMatch(/^runner environment: LEVEL is invalid \("ten": .+\); redeploy the stack$/);
  });
});

describe('safeJson', () => {
  it('parses JSON and returns undefined for anything else', () => {
    expect(safeJson('{"a":1}')).toEqual({ a: 1 });
    expect(safeJson('{not json')).toBeUndefined();
  });
});

describe('firstError', () => {
  it('picks the error line of a client program, else the first line', () => {
    expect(firstError('pg_restore: connecting\npsql: error: connection to server failed\n')).toBe('psql: error: connection to server failed');
    expect(firstError('\nsomething odd happened\nmore\n')).toBe('something odd happened');
    expect(firstError('')).toBe('no message');
  });
});

describe('getText (S3 protocol)', () => {
  let server: LocalS3;
  let s3: S3Client;

  beforeAll(async () => {
    server = await startLocalS3('helpers-bucket');
    s3 = createS3Client(server.env);
    await s3.send(new PutObjectCommand({ Bucket: 'helpers-bucket', Key: 'latest.json', Body: '{"manifest":"k"}' }));
  });
  afterAll(async () => server.stop());

  it('reads an object as text', async () => {
    await expect(getText(s3, 'helpers-bucket', 'latest.json')).resolves.toBe('{"manifest":"k"}');
  });

  it('says what is missing, or what to check', async () => {
    await expect(getText(s3, 'helpers-bucket', 'nope.json', () => 'no backup yet')).rejects.toThrow('no backup yet');
    await expect(getText(s3, 'helpers-bucket', 'nope.json')).rejects.toThrow(
      /^S3 read of nope\.json in bucket helpers-bucket failed: .+; check BACKUP_BUCKET, AWS_ENDPOINT_URL_S3\/the network and the role's S3 permissions$/,
    );
  });
});
