import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import type { PitrStatus } from '../../../lambdas/backup/rds';
import { captureEmf, metricValue } from '../../support/emf';
import { lambdaContext } from '../../support/lambda-context';

// The PITR watch's Lambda entry (lambdas/backup/pitr-watch.ts) as Scheduler invokes it every 5
// minutes, RDS mocked at the SDK, its metrics read from the EMF lines Powertools writes.

const rdsMock = mockClient(RDSClient);
const INSTANCE = 'atmr-prod';
const savedEnv = { ...process.env };

type Handler = (event: unknown, context: Context) => Promise<PitrStatus>;
let handler: Handler;


/** One scheduled read: resolves with the status, or with the error it failed with, and the EMF it wrote. */
async function invoke(): Promise<{ outcome: PitrStatus | Error; emf: Record<string, unknown>[] }> {
  const { result, emf } = await captureEmf(() =>
    handler({}, lambdaContext('atmr-dr-pitr-watch')).then(
      (status) => status,
      (error: unknown) => error as Error,
    ),
  );
  return { outcome: result, emf };
}

beforeAll(async () => {
  // What the backups construct gives the function (lib/constructs/backups.ts, createPitrWatch).
  Object.assign(process.env, {
    POWERTOOLS_SERVICE_NAME: 'pitr-watch',
    POWERTOOLS_METRICS_NAMESPACE: 'AtmrDr/example',
    POWERTOOLS_TRACE_ENABLED: 'false',
    DATABASE_INSTANCE_IDENTIFIER: INSTANCE,
    MIN_PITR_RETENTION_DAYS: '7',
    AWS_REGION: 'eu-west-3',
  });
  ({ handler } = (await import('../../../lambdas/backup/pitr-watch')) as unknown as { handler: Handler });
});

afterAll(() => {
  process.env = savedEnv;
});

beforeEach(() => {
  rdsMock.reset();
  jest.useFakeTimers({ now: new Date('2026-12-07T10:05:00.000Z'), doNotFake: ['nextTick', 'setImmediate', 'setTimeout', 'setInterval', 'queueMicrotask'] });
});

afterEach(() => {
  jest.useRealTimers();
  process.env.DATABASE_INSTANCE_IDENTIFIER = INSTANCE;
});

describe('PITR watch handler (every 5 minutes, independent of the backup runs)', () => {
  it('reads the named instance and publishes the lag behind its latest restorable time, with the instance dimension, as pitr-watch', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({
      DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 7, LatestRestorableTime: new Date('2026-12-07T09:44:00.000Z') }],
    });

    const { outcome, emf } = await invoke();

    expect(outcome).toEqual({ enabled: true, retentionDays: 7, minRetentionDays: 7, lagSeconds: 1260 });
    expect(rdsMock).toHaveReceivedCommandTimes(DescribeDBInstancesCommand, 1);
    expect(rdsMock).toHaveReceivedCommandWith(DescribeDBInstancesCommand, { DBInstanceIdentifier: INSTANCE });
    const lag = metricValue(emf, 'PitrLagSeconds');
    // 21 minutes behind: over the 15-minute RPO, what PitrLag pages on.
    expect(lag?.value).toBe(1260);
    // Exactly the dimensions the PitrLag, PitrOff and PitrUnread alarms name.
    expect(lag?.dimensions).toEqual([['service', 'DBInstanceIdentifier']]);
    expect(lag?.doc).toMatchObject({ service: 'pitr-watch', DBInstanceIdentifier: INSTANCE });
    expect((lag?.doc._aws as { CloudWatchMetrics: { Namespace: string }[] }).CloudWatchMetrics[0].Namespace).toBe('AtmrDr/example');
    expect(metricValue(emf, 'PitrEnabled')?.value).toBe(1);
    expect(metricValue(emf, 'PitrRetentionDays')?.doc).toMatchObject({ PitrRetentionDays: 7, service: 'pitr-watch', DBInstanceIdentifier: INSTANCE });
    expect(metricValue(emf, 'PitrRestorable')?.value).toBe(1);
  });

  it('with automated backups on but no latest restorable time publishes PitrRestorable=0 (PitrNoRestorableTime pages) and no lag: PITR on, nothing to recover to', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 7 }] });

    const { outcome, emf } = await invoke();

    expect(outcome).toEqual({ enabled: true, retentionDays: 7, minRetentionDays: 7, noRestorableTime: true });
    expect(metricValue(emf, 'PitrEnabled')?.value).toBe(1);
    const restorable = metricValue(emf, 'PitrRestorable');
    expect(restorable?.value).toBe(0);
    expect(restorable?.dimensions).toEqual([['service', 'DBInstanceIdentifier']]);
    expect(metricValue(emf, 'PitrLagSeconds')).toBeUndefined();
  });

  it('with PITR off publishes PitrEnabled=0 and the retention (PitrOff pages, PitrUnread sees a read) and no lag (PitrLag stays out of it)', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 0 }] });

    const { outcome, emf } = await invoke();

    expect(outcome).toMatchObject({ enabled: false, retentionDays: 0 });
    expect(metricValue(emf, 'PitrEnabled')?.value).toBe(0);
    expect(metricValue(emf, 'PitrRetentionDays')?.value).toBe(0);
    expect(metricValue(emf, 'PitrLagSeconds')).toBeUndefined();
    // Off is PitrOff's page alone: no second one for the restorable time that follows from it.
    expect(metricValue(emf, 'PitrRestorable')).toBeUndefined();
  });

  it.each([
    ['throttled', 'ThrottlingException', /ThrottlingException: Rate exceeded; see the logs of this function \(backup runner or PITR watch\)$/],
    ['refused', 'AccessDeniedException', /AccessDeniedException: not allowed; the role of this function \(backup runner or PITR watch\) lacks this RDS permission: redeploy the stack$/],
    ['gone', 'DBInstanceNotFoundFault', /check database\.instanceIdentifier \(atmr-prod\) in cdk\.json$/],
  ])('fails the invocation when RDS cannot be read (%s), publishing no PITR metric: never a success that measured nothing', async (_case, name, message) => {
    rdsMock.on(DescribeDBInstancesCommand).rejects(Object.assign(new Error(name === 'ThrottlingException' ? 'Rate exceeded' : 'not allowed'), { name }));

    const { outcome, emf } = await invoke();

    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/^cannot describe RDS instance atmr-prod: /);
    expect((outcome as Error).message).toMatch(message);
    // No reading: PitrUnread counts PitrRetentionDays, and pages after 15 minutes of none.
    for (const name of ['PitrEnabled', 'PitrRetentionDays', 'PitrLagSeconds', 'PitrRestorable']) expect(metricValue(emf, name)).toBeUndefined();
  });

  it('fails in one line naming the missing variable and the fix, without calling RDS', async () => {
    delete process.env.DATABASE_INSTANCE_IDENTIFIER;

    const { outcome } = await invoke();

    expect((outcome as Error).message).toBe('PITR watch environment: DATABASE_INSTANCE_IDENTIFIER is not set; it is set by the backups construct: redeploy the stack');
    expect(rdsMock).not.toHaveReceivedCommand(DescribeDBInstancesCommand);
  });
});
