import { parseEnvironmentConfig, resolveRecoveryConfig } from '../../lib/config';
import { exampleEnvironment } from '../support/app';

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

  it('accepts the example: an SSM parameter endpoint switch is the other kind', () => {
    const example = parseEnvironmentConfig('example', exampleEnvironment());
    expect(example.recovery.enabled).toBe(true);
    expect(example.recovery.ecs?.serviceNames).toContain('atmr-api');
    const raw = { ...exampleEnvironment(), recovery: { endpoint: { kind: 'ssmParameter', parameterName: '/atmr/prod/database-host' } } };
    expect(parseEnvironmentConfig('example', raw).recovery.endpoint).toEqual({ kind: 'ssmParameter', parameterName: '/atmr/prod/database-host' });
  });

  it.each([
    [{ endpoint: { kind: 'dns' } }, /recovery\.endpoint/],
    [{ criticalTables: ['Booking; DROP'] }, /recovery\.criticalTables\.0: must be a lower-case table name/],
    [{ readinessUrl: 'not a url' }, /recovery\.readinessUrl/],
    [{ ecs: { clusterArn: 'atmr', serviceNames: ['api'] } }, /recovery\.ecs\.clusterArn: must be a full ARN/],
    [{ newInstancePrefix: '1bad' }, /recovery\.newInstancePrefix: must be 1-46 letters/],
  ])('names the bad field %j', (recovery, message) => {
    expect(() => parseEnvironmentConfig('example', { ...exampleEnvironment(), recovery })).toThrow(message);
  });
});
