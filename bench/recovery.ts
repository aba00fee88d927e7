/**
 * npm run bench:recovery — the recovery workflow's own overhead, measured side by side in one run.
 *
 * The RDS restore itself cannot run here (its duration is AWS's, see docs/recovery.md for the budget);
 * what the workflow adds on top of it can: the Step Functions definition (synthesized, run with
 * aws-local-stepfunctions, waits at 0) through restore -> describe -> verify -> report, with the real
 * step code, the ops-state table on dynalite, RDS/EventBridge/CloudWatch answered at the SDK boundary,
 * and the verification on two real PostgreSQL databases (production and a copy with rows missing).
 * Reference: the same checks an operator runs by hand after a restore (runbook "Vérifications
 * post-restauration": counts, critical queries, Alembic revision), one psql-like session per side.
 * Two data shapes; trials interleaved (reference, workflow, reference, ...) so drift hits both alike.
 * Env: BENCH_TRIALS (default 5), BENCH_LARGE_ROWS (default 1000000).
 */
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { DescribeDBInstanceAutomatedBackupsCommand, DescribeDBInstancesCommand, RDSClient, RestoreDBInstanceToPointInTimeCommand } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { Client } from 'pg';
import { RecoveryRequest, newRecoveryId } from '../lambdas/recovery/contract';
import { activeRecoveryId, beginRecovery, updateRecovery } from '../lambdas/recovery/store';
import { WorkflowDeps } from '../lambdas/recovery/workflow';
import { startLocalDynamo } from '../test/support/dynamodb';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../test/support/postgres';
import { recoveryDefinition, runRecoveryWorkflow } from '../test/support/recovery-workflow';

const TRIALS = Number(process.env.BENCH_TRIALS ?? 5);
const LARGE = Number(process.env.BENCH_LARGE_ROWS ?? 1_000_000);
const CHECKS = { criticalTables: ['company', 'booking'], criticalQueries: ['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking'], alembicVersionTable: 'alembic_version' };
const SHAPES = [
  { name: 'small', companies: 100, bookings: 10_000 },
  { name: 'large', companies: 1_000, bookings: LARGE },
];

function load(cluster: PostgresCluster, db: string, companies: number, bookings: number, revision: string): void {
  psql(cluster, 'postgres', `CREATE DATABASE ${db}`);
  psql(
    cluster,
    db,
    `CREATE TABLE company (id int PRIMARY KEY, name text);
     CREATE TABLE booking (id bigint PRIMARY KEY, company_id int, status text, created_at timestamptz DEFAULT now());
     CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
     INSERT INTO company SELECT g, 'company ' || g FROM generate_series(1, ${companies}) g;
     INSERT INTO booking (id, company_id, status) SELECT g, 1 + g % ${companies}, 'confirmed' FROM generate_series(1, ${bookings}) g;
     INSERT INTO alembic_version VALUES ('${revision}'); ANALYZE;`,
  );
}

/** What an operator does by hand: the same reads, one session per side. */
async function reference(cluster: PostgresCluster, databases: string[]): Promise<void> {
  for (const database of databases) {
    const client = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database });
    await client.connect();
    for (const table of CHECKS.criticalTables) await client.query(`SELECT count(*) FROM ${table}`);
    for (const query of CHECKS.criticalQueries) await client.query(query);
    await client.query('SELECT version_num FROM alembic_version');
    await client.end();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main(): Promise<void> {
  const cluster = await startPostgres();
  const dynamo = await startLocalDynamo();
  const rds = mockClient(RDSClient);
  mockClient(EventBridgeClient).on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
  mockClient(CloudWatchClient).on(PutMetricDataCommand).resolves({});
  const definition = recoveryDefinition();
  const rows: string[][] = [];
  try {
    for (const shape of SHAPES) {
      const production = `bench_${shape.name}_prod`;
      const copy = `bench_${shape.name}_copy`;
      load(cluster, production, shape.companies, shape.bookings, '4f2a');
      load(cluster, copy, shape.companies, Math.floor(shape.bookings * 0.9), '3e1b');
      const deps: WorkflowDeps = {
        rds: new RDSClient({ region: 'eu-west-3' }),
        secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }),
        events: new EventBridgeClient({ region: 'eu-west-3' }),
        cloudwatch: new CloudWatchClient({ region: 'eu-west-3' }),
        store: { ddb: dynamo.ddb, tableName: dynamo.tableName },
        connect: async (side) => ({ host: cluster.host, port: cluster.port, user: cluster.user, database: side === 'recovered' ? copy : production }),
        settings: {
          environmentName: 'bench',
          sourceInstance: 'atmr-prod',
          newInstancePrefix: 'atmr-prod-pitr-',
          tags: {},
          databaseName: 'atmr',
          productionHost: 'unused',
          productionPort: 5432,
          metricsNamespace: 'AtmrDr/bench',
          secretArn: 'unused',
          checks: CHECKS,
          maxWaitSeconds: 3600,
        },
      };
      const refTimes: number[] = [];
      const wfTimes: number[] = [];
      for (let trial = 0; trial < TRIALS + 1; trial++) {
        let t = performance.now();
        await reference(cluster, [copy, production]);
        const ref = performance.now() - t;

        const now = new Date();
        const request: RecoveryRequest = { recoveryId: newRecoveryId(now), toTime: '2026-11-30T14:02:00.000Z', newInstance: `atmr-prod-pitr-b${trial}x${shape.name}`, actor: 'bench', reason: 'bench', requestedAt: now.toISOString() };
        const previous = await activeRecoveryId(deps.store);
        if (previous) await updateRecovery(deps.store, previous, { status: 'abandoned' });
        await beginRecovery(deps.store, { ...request, sourceInstance: 'atmr-prod' });
        rds.reset();
        rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod' }).resolves({
          DBInstances: [{ DBInstanceIdentifier: 'atmr-prod', DBInstanceArn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod', BackupRetentionPeriod: 7, LatestRestorableTime: new Date('2026-11-30T14:25:00Z'), DBInstanceClass: 'db.r6g.large', TagList: [] }],
        });
        let described = 0;
        rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: request.newInstance }).callsFake(() => {
          described += 1;
          if (described === 1) throw Object.assign(new Error('not found'), { name: 'DBInstanceNotFoundFault' });
          return { DBInstances: [{ DBInstanceStatus: 'available', Endpoint: { Address: 'copy.local', Port: 5432 } }] };
        });
        rds.on(DescribeDBInstanceAutomatedBackupsCommand).resolves({ DBInstanceAutomatedBackups: [{ Status: 'active', RestoreWindow: { EarliestTime: new Date('2026-11-23T00:00:00Z'), LatestTime: new Date('2026-11-30T14:25:00Z') } }] });
        rds.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: 'creating' } });

        t = performance.now();
        const { error, output } = await runRecoveryWorkflow(definition, request, deps);
        const wf = performance.now() - t;
        if (error || !(output as { report?: { ok?: boolean } }).report?.ok) throw new Error(`workflow did not verify: ${error?.message ?? JSON.stringify(output)}`);
        if (trial === 0) continue; // warm-up (JIT, connections, first synth of the clients)
        refTimes.push(ref);
        wfTimes.push(wf);
      }
      const r = median(refTimes);
      const w = median(wfTimes);
      rows.push([shape.name, `${shape.companies} / ${shape.bookings.toLocaleString('en')}`, r.toFixed(0), w.toFixed(0), (w - r).toFixed(0), (w / r).toFixed(2)]);
    }
  } finally {
    await dynamo.stop();
    stopPostgres(cluster);
  }
  const header = ['shape', 'company / booking rows', 'by hand (ms)', 'workflow (ms)', 'overhead (ms)', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(`recovery workflow overhead, median of ${TRIALS} interleaved trials (waits at 0; RDS time excluded)\n`);
  process.stdout.write(`${[line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:recovery: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
