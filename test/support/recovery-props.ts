import { Duration } from 'aws-cdk-lib';
import { resolveRecoveryConfig } from '../../lib/config';
import { RecoveryProps } from '../../lib/constructs/recovery';
import { ConstructHarness } from './app';

/**
 * The Recovery construct's props for a harness's environment: its recovery config, the harness's
 * network, ops table and incidents topic. `overrides` states a test's variant.
 */
export function recoveryProps(h: ConstructHarness, overrides: Partial<RecoveryProps> = {}): RecoveryProps {
  const recovery = resolveRecoveryConfig(h.config);
  return {
    environmentName: h.config.name,
    sourceInstanceIdentifier: h.config.database.instanceIdentifier,
    newInstancePrefix: recovery.newInstancePrefix,
    subnetGroupName: recovery.subnetGroupName,
    parameterGroupName: recovery.parameterGroupName,
    tags: recovery.tags,
    database: { name: h.config.database.name, host: h.config.database.host, port: h.config.database.port, secretArn: h.config.database.secretArn },
    criticalTables: recovery.criticalTables,
    criticalQueries: recovery.criticalQueries,
    maxWait: Duration.minutes(recovery.maxWaitMinutes),
    opsTable: h.data.opsStateTable,
    opsTableKey: h.data.opsKey,
    incidentsTopic: h.topic,
    incidentsTopicKey: h.data.opsKey,
    vpc: h.vpc,
    subnets: h.subnets,
    databaseSecurityGroup: h.databaseSecurityGroup,
    ...overrides,
  };
}
