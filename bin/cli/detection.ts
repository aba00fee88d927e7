import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Command } from 'commander';
import { dbReadWrite, rdsStorage } from '../../lambdas/detection/db-read-write';
import { alembicRevisions, compareWithRecords, notCompared, type PlacedRevision, recordedHeads, type RecordsSettings } from '../../lambdas/detection/db-revision';
import { restartService, scaleService } from '../../lambdas/detection/ecs-actions';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { namedClient } from '../../lambdas/shared/named-clients';
import { opsStateDynamoDB } from '../../lambdas/shared/ops-state-client';
import { isHttpUrl, SDK_RETRY } from '../../lambdas/shared/sdk-retry';
import { OperatorError } from '../../lambdas/shared/errors';
import { asOperatorError } from '../../lambdas/shared/aws-errors';
import { connectTo, resolveConnection, SHORT_SESSION_BOUNDS } from '../../lambdas/shared/pg-connection';
import { runbookAlarmName } from '../../lib/alarm-names';
import type { EnvironmentConfig } from '../../lib/config';
import { assertEnvironment, DEPLOYED_NAMES, defaultEnvironmentName, ENV_DEFAULT, nonEmpty, packageRoot, resolveDeployedName } from './resolve';
import { loadCliConfig } from './cli-config';
import { confirmer } from './confirm';
import { sayWhileStarting } from './interrupt';

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function envConfig(envName: string | undefined): { envName: string; config?: EnvironmentConfig; error?: string } {
  const root = packageRoot();
  const name = envName ?? defaultEnvironmentName(root);
  try {
    return { envName: name, config: loadCliConfig(name, root) };
  } catch (error) {
    return { envName: name, error: error instanceof Error ? error.message : String(error) };
  }
}

function serviceFromConfig(config: EnvironmentConfig | undefined, key: string, configError?: string) {
  // An invalid config is the fault to name, with its own fix: the service may well be there.
  // A config with several problems gives one line each (ConfigError): one line here, "; " between them.
  if (!config && configError) throw new OperatorError(`cannot read service "${key}" (detection.ecs.services) from cdk.json: ${configError.split('\n').join('; ')}`, 2);
  const services = config?.detection?.ecs?.services ?? {};
  const service = services[key];
  if (!service) {
    const known = Object.keys(services);
    throw new OperatorError(`no service "${key}" in detection.ecs.services of the config${known.length ? `; known: ${known.join(', ')}` : ''}: add it (name and bounds) to cdk.json`, 2);
  }
  return service;
}

/**
 * Refuses a service name (flag or variable) that the config gives to another key: bounds are per
 * key, and acting on that service under this key would scale the API below its minimum or restart
 * it as if it were OSRM. A name matches with or without its ARN's prefix. The config's own name for
 * `key` never matches: the config gives each service one key.
 */
function refuseAnotherKeysService(config: EnvironmentConfig | undefined, key: string, source: string, service: string, fix: (otherKey: string) => string): void {
  const services = config?.detection?.ecs?.services ?? {};
  const name = service.split('/').pop();
  const other = Object.keys(services).find((k) => k !== key && services[k].serviceName === name);
  if (other === undefined) return;
  const { minCount, maxCount } = services[other];
  throw new OperatorError(`${source} "${service}" is detection.ecs.services.${other} (bounds ${minCount}-${maxCount}), not ${key}'s service: ${fix(other)}`, 2);
}

/**
 * The end of `scale`'s result line when Application Auto Scaling tracks the service
 * (detection.celeryAutoscaling, on the Celery key's service, within its bounds): a count set by hand
 * lasts until the policy's next evaluation, so the line says so and how to hold the count (raise the
 * scalable target's minimum, or lower its maximum to hold a smaller count). Empty otherwise.
 */
function trackingNote(config: EnvironmentConfig | undefined, key: string, service: string, cluster: string, result: { from: number; to: number }): string {
  const detection = config?.detection;
  const bounds = detection?.ecs?.services[key];
  if (!detection?.celeryAutoscaling.enabled || key !== detection.ecs?.celeryServiceKey || bounds?.serviceName !== service) return '';
  const [capacity, back] = result.to < result.from ? ['max', bounds.maxCount] : ['min', bounds.minCount];
  return (
    `; target tracking (detection.celeryAutoscaling, min ${bounds.minCount}, max ${bounds.maxCount}) sets the count again at its next evaluation: to hold ${result.to}, ` +
    `aws application-autoscaling register-scalable-target --service-namespace ecs --scalable-dimension ecs:service:DesiredCount --resource-id service/${cluster}/${service} --${capacity}-capacity ${result.to} ` +
    `(then --${capacity}-capacity ${back} once the peak is over)`
  );
}

async function clusterName(flag: string | undefined, envName: string): Promise<string> {
  return resolveDeployedName(DEPLOYED_NAMES.detectionEcsCluster, { flagValue: flag, envName });
}

/**
 * The backout's settings `db revision` reads the records with, as `rollback` resolves them: the
 * table first, whose lookup has no fallback in the config.
 */
async function recordsSettings(opts: { env?: string; cluster?: string; table?: string }): Promise<RecordsSettings> {
  const { envName, config, error } = envConfig(opts.env);
  if (!config) throw new OperatorError(`cannot read the config of environment ${envName} from cdk.json: ${error ?? 'unknown'}`, 2);
  if (!config.backout) throw new OperatorError(`backout is not configured for environment ${envName}: no "backout" block in cdk.json`, 2);
  const tableName = await resolveDeployedName(DEPLOYED_NAMES.opsTable, { flagValue: opts.table, envName: opts.env });
  const clusterName = await resolveDeployedName(DEPLOYED_NAMES.ecsCluster, { flagValue: opts.cluster, envName: opts.env });
  const serviceName = await resolveDeployedName(DEPLOYED_NAMES.apiService, { envName: opts.env });
  return { environmentName: envName, tableName, clusterName, alembicHead: config.backout.alembicHead, api: { serviceName, containerName: config.backout.api.containerName } };
}

/** `db read-write`, `db revision`, `scale`, `osrm restart`: the runbook's first actions that a person still types. */
export function registerDetectionCommands(program: Command): void {
  const db = program.command('db').description('the database: the runbook\'s "DB Read-Only" scenario, and the Alembic revision checked around a downgrade');
  db.command('read-write')
    .description(
      'show transaction_read_only, the database-level default, pg_is_in_recovery() and RDS free storage; when the database-level setting is the cause, set it off (asks unless --yes) and prove a write goes through (rolled back)',
    )
    .option('--database-secret <arn>', 'Secrets Manager secret with the connection (else PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE; PGPORT unset: 5432)')
    .option('--instance <id>', 'RDS instance identifier for the free storage (default: $ATMR_RDS_INSTANCE, else the config)')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`)
    .option('--yes', 'confirm the ALTER DATABASE without asking')
    .option('--json', 'print the outcome as JSON')
    .action(async (opts: { databaseSecret?: string; instance?: string; env?: string; yes?: boolean; json?: boolean }) => {
      // An --env cdk.json does not have is refused even when --instance or ATMR_RDS_INSTANCE make
      // the config unnecessary: the operator meant another environment than the one checked.
      if (opts.env !== undefined) assertEnvironment(opts.env);
      const instance =
        nonEmpty(opts.instance, '--instance', 'give the RDS instance identifier, or leave --instance out') ??
        nonEmpty(process.env.ATMR_RDS_INSTANCE, 'ATMR_RDS_INSTANCE', 'set it to the RDS instance identifier, or unset it to use the config') ??
        envConfig(opts.env).config?.database.instanceIdentifier;
      const backout = envConfig(opts.env).config?.backout;
      const connection = await resolveConnection({ secretArn: opts.databaseSecret });
      const outcome = await dbReadWrite({
        connection,
        ...(backout && { pools: { clusterName: backout.clusterName, serviceNames: [backout.api.serviceName, ...backout.workers.map((w) => w.serviceName)] } }),
        confirm: confirmer(opts.yes),
        print: opts.json ? undefined : print,
        // Its lines' `db read-write` to rerun: with --env as given (none without, as it was run).
        environmentName: opts.env,
        ...(instance && { storage: () => rdsStorage({ rds: namedClient(new RDSClient(SDK_RETRY), 'RDS'), cloudwatch: namedClient(new CloudWatchClient(SDK_RETRY), 'CloudWatch') }, instance) }),
      });
      // A decline ends as every confirmed command's does (killswitch, rollback, recover): its one line on stderr.
      // A refusal and a cause not the database setting too: their one line on stderr, once (not also on stdout).
      if (opts.json) print(JSON.stringify(outcome));
      else if (outcome.result === 'fixed' || outcome.result === 'already-read-write') print(`${outcome.result}: ${outcome.finding}`);
      if (outcome.result === 'declined') throw new OperatorError('db read-write: not confirmed, nothing changed', 1);
      if (outcome.result === 'refused') throw new OperatorError(`db read-write: ${outcome.finding}`, 2);
      if (outcome.result === 'not-a-database-setting') throw new OperatorError(`db read-write: ${outcome.finding}`, 4);
      if (outcome.writeProof !== 'ok') throw new OperatorError(`db read-write: a write does not go through (${outcome.writeProof})`, 1);
    });

  db.command('revision')
    .description(
      "read-only: the Alembic revision the database is at (flask db current), compared with the API's last known good's head; when the schema is ahead, the downgrade to run",
    )
    .option('--database-secret <arn>', 'Secrets Manager secret with the connection (else PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE; PGPORT unset: 5432)')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`)
    .option('--cluster <name>', 'ECS cluster of the API (default: $ATMR_ECS_CLUSTER, the Ops stack output, the config)')
    .option('--table <name>', 'ops-state table (default: $ATMR_OPS_TABLE, the Data stack output)')
    .option('--json', 'print the revision and its comparison as JSON (comparison: equal, ahead, different or not-compared)')
    .action(async (opts: { databaseSecret?: string; env?: string; cluster?: string; table?: string; json?: boolean }) => {
      // Refused before anything, as db read-write does: a typo would otherwise pass as "not compared".
      if (opts.env !== undefined) assertEnvironment(opts.env);
      const connection = await resolveConnection({ secretArn: opts.databaseSecret });
      const client = await connectTo(connection, connection.database, { query_timeout: SHORT_SESSION_BOUNDS.query_timeout });
      let revisions: string[];
      try {
        revisions = await alembicRevisions(client, connection);
      } finally {
        await client.end().catch(() => undefined);
      }
      const revisionLine = `alembic revision${revisions.length > 1 ? 's' : ''} of ${connection.database} on ${connection.host}: ${revisions.join(', ')}`;
      // Said at once at a terminal: the records' lookup can take seconds. With --json, one document at the end.
      if (!opts.json) print(revisionLine);
      // The revision is the answer; the records only place it. Without them (no credentials, no
      // config, a laptop without the stacks' outputs) the command still answers, and says why not.
      let placed: PlacedRevision;
      try {
        const settings = await recordsSettings(opts);
        const deps = { ecs: namedClient(new ECSClient(SDK_RETRY), 'ECS'), doc: DynamoDBDocumentClient.from(opsStateDynamoDB()) };
        placed = compareWithRecords(revisions, await recordedHeads(deps, settings), settings.alembicHead.name, settings.environmentName);
      } catch (error) {
        // Why on its own clause: the reason is itself a line with its own parentheses.
        placed = notCompared(revisions, `not compared with the last known good, whose records are not reachable: ${asOperatorError(error).message}`);
      }
      // Exit 0 whatever the comparison (the command answered): a script tells them apart by --json's comparison.
      if (opts.json) print(JSON.stringify({ database: connection.database, host: connection.host, revisions, ...placed }));
      else print(placed.line);
    });

  program
    .command('scale')
    .description('set the task count of an ECS service (api, celery...) within the bounds of the config (runbook "Pic de charge"); asks unless --yes')
    .argument('<service>', 'service key in detection.ecs.services (e.g. api, celery)')
    .argument('<count>', 'desired task count')
    .option('--cluster <name>', 'ECS cluster (default: $ATMR_ECS_CLUSTER, the Ops stack output, else the config)')
    .option('--service-name <name>', 'ECS service name (default: $ATMR_<SERVICE>_SERVICE, else the config)')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`)
    .option('--yes', 'confirm without asking')
    .action(async (key: string, countText: string, opts: { cluster?: string; serviceName?: string; env?: string; yes?: boolean }) => {
      if (!/^\d+$/.test(countText)) throw new OperatorError(`scale: count "${countText}" is not a whole number of tasks`, 2);
      const { envName, config, error } = envConfig(opts.env);
      const envFlag = opts.env === undefined ? '' : ` --env ${opts.env}`;
      // `aws ecs list-services` shows the services' names, not the config's keys: point from one to the other.
      const services = config?.detection?.ecs?.services ?? {};
      const keyOfName = services[key] ? undefined : Object.keys(services).find((k) => services[k].serviceName === key.split('/').pop());
      if (keyOfName !== undefined) throw new OperatorError(`scale: "${key}" is the ECS service of key "${keyOfName}": ${OPERATOR_CLI} scale ${keyOfName} ${countText}${envFlag}`, 2);
      const bounds = serviceFromConfig(config, key, error);
      const serviceVar = `ATMR_${key.toUpperCase()}_SERVICE`;
      const fromFlag = nonEmpty(opts.serviceName, '--service-name', 'give the ECS service name, or leave --service-name out');
      const fromVar = fromFlag === undefined ? nonEmpty(process.env[serviceVar], serviceVar, 'set it to the ECS service name, or unset it to use the config') : undefined;
      const service = fromFlag ?? fromVar ?? bounds.serviceName;
      refuseAnotherKeysService(config, key, `scale: ${fromFlag ? '--service-name' : serviceVar}`, service, (other) => `run ${OPERATOR_CLI} scale ${other} <n>${envFlag}`);
      const cluster = await clusterName(opts.cluster, envName);
      const result = await scaleService(
        { ecs: namedClient(new ECSClient(SDK_RETRY), 'ECS'), events: namedClient(new EventBridgeClient(SDK_RETRY), 'EventBridge'), confirm: confirmer(opts.yes), print },
        { key, cluster, service, environmentName: envName, count: Number(countText), minCount: bounds.minCount, maxCount: bounds.maxCount },
      );
      const done = result.changed ? `${service}: desired count ${result.from} -> ${result.to}` : `${service}: already at ${result.to} tasks, nothing changed`;
      print(`${done}${trackingNote(config, key, service, cluster, result)}`);
      if (result.warning) process.stderr.write(`atmr-dr: warning: ${result.warning}\n`);
    });

  const osrm = program.command('osrm').description('OSRM (runbook "OSRM Down")');
  osrm
    .command('restart')
    .description('force a new deployment of the OSRM service, wait for steady state, check its health URL; asks unless --yes (the runbook says: diagnose first)')
    .option('--cluster <name>', 'ECS cluster (default: $ATMR_ECS_CLUSTER, the Ops stack output, else the config)')
    .option('--service-name <name>', 'OSRM ECS service name (default: $ATMR_OSRM_SERVICE, else the config)')
    .option('--health-url <url>', 'health URL to check once steady (default: $ATMR_OSRM_HEALTH_URL, else the config\'s probe URL)')
    .option('--timeout <seconds>', 'how long to wait for steady state', '600')
    .option('--poll-interval <seconds>', 'seconds between two looks at the deployment', '10')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`)
    .option('--yes', 'confirm without asking')
    .action(async (opts: { cluster?: string; serviceName?: string; healthUrl?: string; timeout: string; pollInterval: string; env?: string; yes?: boolean }) => {
      const timeoutSeconds = Number(opts.timeout);
      const pollSeconds = Number(opts.pollInterval);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new OperatorError(`osrm restart: --timeout "${opts.timeout}" must be a positive number of seconds`, 2);
      if (!Number.isFinite(pollSeconds) || pollSeconds <= 0) throw new OperatorError(`osrm restart: --poll-interval "${opts.pollInterval}" must be a positive number of seconds`, 2);
      // Checked before the restart: a URL that cannot be fetched would fail only once OSRM has been restarted.
      const healthSource = opts.healthUrl !== undefined ? '--health-url' : 'ATMR_OSRM_HEALTH_URL';
      const givenHealthUrl = opts.healthUrl ?? process.env.ATMR_OSRM_HEALTH_URL;
      if (givenHealthUrl !== undefined && !isHttpUrl(givenHealthUrl)) {
        throw new OperatorError(`osrm restart: ${healthSource} "${givenHealthUrl}" is not an http(s) URL: give the OSRM health URL (e.g. http://osrm.internal:5000/health), or leave it out to use the config's`, 2);
      }
      const { envName, config, error } = envConfig(opts.env);
      const osrmKey = config?.detection?.ecs?.osrmServiceKey ?? 'osrm';
      const fromFlag = nonEmpty(opts.serviceName, '--service-name', 'give the ECS service name, or leave --service-name out');
      const fromVar = fromFlag === undefined ? nonEmpty(process.env.ATMR_OSRM_SERVICE, 'ATMR_OSRM_SERVICE', 'set it to the ECS service name, or unset it to use the config') : undefined;
      const service = fromFlag ?? fromVar ?? serviceFromConfig(config, osrmKey, error).serviceName;
      refuseAnotherKeysService(config, osrmKey, `osrm restart: ${fromFlag ? '--service-name' : 'ATMR_OSRM_SERVICE'}`, service, () =>
        fromFlag ? "give the OSRM service's name, or leave --service-name out" : "set it to the OSRM service's name, or unset it to use the config",
      );
      const cluster = await clusterName(opts.cluster, envName);
      // Stopped once ECS has named the deployment, the restart did take effect: the stop line says
      // which deployment and how to follow it, not that it "may have taken effect".
      const started = (deploymentId: string) =>
        sayWhileStarting(
          (signal) =>
            `osrm restart interrupted (received ${signal}): restart started (deployment ${deploymentId}) and not awaited: follow it with "aws ecs describe-services --cluster ${cluster} --services ${service} --query 'services[0].deployments'"`,
        );
      const result = await restartService(
        { ecs: namedClient(new ECSClient(SDK_RETRY), 'ECS'), events: namedClient(new EventBridgeClient(SDK_RETRY), 'EventBridge'), confirm: confirmer(opts.yes), print, started },
        {
          cluster,
          service,
          environmentName: envName,
          healthUrl: givenHealthUrl ?? config?.detection?.probe.osrm?.healthUrl,
          // Named when this machine cannot reach the URL; only for an environment cdk.json has.
          healthAlarmName: config ? runbookAlarmName(envName, 'Osrm', 'Down') : undefined,
          steadyTimeoutMs: timeoutSeconds * 1000,
          pollMs: pollSeconds * 1000,
        },
      );
      print(`${service}: restarted, steady${result.health ? ', health URL up' : ''}`);
      if (result.warning) process.stderr.write(`atmr-dr: warning: ${result.warning}\n`);
    });
}
