import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { mockClient } from 'aws-sdk-client-mock';
import { RECOVERY_ENV } from '../../../lambdas/recovery/contract';
import { depsFromEnv, runStep } from '../../../lambdas/recovery/handler';

const rds = mockClient(RDSClient);
const ENV = {
  [RECOVERY_ENV.sourceInstance]: 'atmr-prod',
  [RECOVERY_ENV.newInstancePrefix]: 'atmr-prod-pitr-',
  [RECOVERY_ENV.environmentName]: 'prod',
  [RECOVERY_ENV.subnetGroupName]: 'atmr-private',
  [RECOVERY_ENV.tags]: '{"team":"atmr-sre"}',
  [RECOVERY_ENV.opsTable]: 'ops-state',
  [RECOVERY_ENV.databaseName]: 'atmr',
  [RECOVERY_ENV.productionHost]: 'atmr-prod.rds',
  [RECOVERY_ENV.productionPort]: '5432',
  [RECOVERY_ENV.secretArn]: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:db',
  [RECOVERY_ENV.criticalTables]: '["company","booking"]',
  [RECOVERY_ENV.criticalQueries]: '["SELECT COUNT(*) FROM company"]',
  [RECOVERY_ENV.alembicVersionTable]: 'alembic_version',
  [RECOVERY_ENV.maxWaitSeconds]: '14400',
  POWERTOOLS_METRICS_NAMESPACE: 'AtmrDr/prod',
};
const request = {
  recoveryId: 'r20261130143000-abcd',
  toTime: '2026-11-30T14:02:00.000Z',
  newInstance: 'atmr-prod-pitr-202611301402',
  actor: 'alice',
  reason: 'bookings deleted',
  requestedAt: new Date().toISOString(),
};

describe('recovery handler', () => {
  it('reads its settings from the environment', () => {
    const deps = depsFromEnv(ENV, { rds: new RDSClient({}) });
    expect(deps.settings).toMatchObject({ environmentName: 'prod', sourceInstance: 'atmr-prod', productionPort: 5432, tags: { team: 'atmr-sre' }, maxWaitSeconds: 14400, checks: { criticalTables: ['company', 'booking'] } });
    // RecoverySeconds goes to the environment's namespace, which the house function sets for Powertools.
    expect(deps.settings.metricsNamespace).toBe('AtmrDr/prod');
    expect(deps.store.tableName).toBe('ops-state');
  });

  it('names a missing environment variable', () => {
    const { [RECOVERY_ENV.secretArn]: _missing, ...env } = ENV;
    expect(() => depsFromEnv(env)).toThrow(`recovery function environment: ${RECOVERY_ENV.secretArn} is not set; it is set by the recovery construct: redeploy the ops stack`);
  });

  it('names an invalid environment variable with its value', () => {
    expect(() => depsFromEnv({ ...ENV, [RECOVERY_ENV.productionPort]: 'five' })).toThrow(
      `recovery function environment: ${RECOVERY_ENV.productionPort} is invalid ("five": `,
    );
  });

  it('dispatches a step, and refuses an unknown one before any AWS call', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceStatus: 'backing-up' }] });
    const deps = depsFromEnv(ENV, { rds: new RDSClient({}) });

    await expect(runStep({ step: 'status', request }, deps)).resolves.toEqual({ ready: false, expired: false, status: 'backing-up' });
    await expect(runStep({ step: 'drop-production', request }, deps)).rejects.toThrow(/step/);
    expect(rds.calls()).toHaveLength(1);
  });
});
