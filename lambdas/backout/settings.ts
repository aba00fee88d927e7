import { z } from 'zod';
import { OperatorError } from '../shared/errors';

/** One service the backout watches: its name and the only task-definition family it may run. */
export const BackoutServiceSettingsSchema = z.strictObject({
  serviceName: z.string().min(1),
  taskFamily: z.string().min(1),
});

/**
 * Everything the backout code needs, resolved (names of deployed resources included). The construct
 * passes it to the functions as one JSON variable; the CLI builds it from the config and the names it
 * resolves. One shape, so the Lambda and the CLI run the same code with the same inputs.
 */
export const BackoutSettingsSchema = z.strictObject({
  environmentName: z.string().min(1),
  region: z.string().min(1),
  account: z.string().min(1),
  dryRun: z.boolean(),
  clusterName: z.string().min(1),
  /** The API service: the alarms watch it, migrations run with its current task definition. */
  api: BackoutServiceSettingsSchema.extend({ containerName: z.string().min(1) }),
  workers: z.array(BackoutServiceSettingsSchema),
  tableName: z.string().min(3),
  topicArn: z.string(),
  killswitchParameterName: z.string().min(1),
  /** SSM path prefix of the pins: `<prefix>/<service>` holds what the next deploy must not bring back. */
  pinParameterPrefix: z.string().regex(/^\/[a-zA-Z0-9_./-]+[^/]$/),
  alarmNames: z.strictObject({ errorRate: z.string().min(1), noHealthyHosts: z.string().min(1) }),
  /**
   * Alarms that say a dependency of the API is down (the health probe's OSRM, Redis, database
   * read-only), or that the probe is silent (Probe-Silent, Probe-Errors: the cause is then unknown):
   * while one is in ALARM an automatic rollback is held and a human paged instead.
   */
  holdAlarmNames: z.array(z.string().min(1)).max(100).default([]),
  /**
   * The health probe's readiness alarm (Health-ApiNotReady): the bake refuses a release while or
   * after it was in ALARM, since the load balancer checks /health only. Null when the probe does not
   * check the API (no detection.probe.api): the bake then GETs readyUrl once at its end instead.
   */
  readinessAlarmName: z.string().min(1).nullable(),
  /**
   * The probe's silence alarms (Probe-Silent, Probe-Errors), with the readiness alarm: it keeps its
   * state while the probe is silent, so a bake during which one of these fired saw no /ready reading.
   */
  probeSilenceAlarmNames: z.array(z.string().min(1)).max(10).default([]),
  targetGroupFullName: z.string().min(1),
  loadBalancerFullName: z.string().min(1),
  healthUrl: z.string().url(),
  readyUrl: z.string().url(),
  bakeSeconds: z.number().int().positive(),
  errorRatePercent: z.number().positive(),
  minRequestsPerMinute: z.number().int().positive(),
  evaluationMinutes: z.number().int().positive(),
  cooldownSeconds: z.number().int().positive(),
  steadyTimeoutSeconds: z.number().int().positive(),
  autoDowngradeMigrations: z.boolean(),
  alembicHead: z.strictObject({ from: z.enum(['environment', 'tag']), name: z.string().min(1) }),
  beforeDowngrade: z.enum(['snapshot', 'pitr']),
  databaseInstanceIdentifier: z.string().min(1),
  /**
   * How long each statement of the downgrade may wait for a table lock (PostgreSQL's lock_timeout,
   * through the task's PGOPTIONS: downgradeEnvironment); 0 sends no PGOPTIONS at all.
   */
  downgradeLockTimeoutSeconds: z.number().int().min(0),
  /** Network placement of the migration task (awsvpc). */
  subnetIds: z.array(z.string()).min(1),
  securityGroupIds: z.array(z.string()).min(1),
});
export type BackoutSettings = z.infer<typeof BackoutSettingsSchema>;
export type BackoutServiceSettings = z.infer<typeof BackoutServiceSettingsSchema>;

/** Name of the variable that carries the settings JSON into the functions. */
export const BACKOUT_SETTINGS_ENV = 'BACKOUT_SETTINGS';

export function parseBackoutSettings(json: string | undefined): BackoutSettings {
  if (!json) throw new OperatorError(`backout: ${BACKOUT_SETTINGS_ENV} is not set`, 2);
  const result = BackoutSettingsSchema.safeParse(JSON.parse(json));
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new OperatorError(`backout: settings ${issue.path.join('.')}: ${issue.message}`, 2);
  }
  return result.data;
}

/** The API first, then the workers. */
export function configuredServices(settings: BackoutSettings): BackoutServiceSettings[] {
  return [{ serviceName: settings.api.serviceName, taskFamily: settings.api.taskFamily }, ...settings.workers];
}

/** The configured service of that name, or a one-line error naming the ones that exist. */
export function findService(settings: BackoutSettings, serviceName: string): BackoutServiceSettings {
  const found = configuredServices(settings).find((s) => s.serviceName === serviceName);
  if (!found) {
    const known = configuredServices(settings).map((s) => s.serviceName).join(', ');
    throw new OperatorError(`backout: unknown service "${serviceName}": use one of ${known} (config backout.api / backout.workers)`, 2);
  }
  return found;
}

export function clusterArn(settings: BackoutSettings): string {
  return `arn:aws:ecs:${settings.region}:${settings.account}:cluster/${settings.clusterName}`;
}

export function pinParameterName(settings: BackoutSettings, serviceName: string): string {
  return `${settings.pinParameterPrefix}/${serviceName}`;
}

/** Where the pins live: `<prefix>/<service>`; the deploy pipeline reads them. */
export function pinParameterPrefix(environmentName: string): string {
  return `/atmr-dr/${environmentName}/backout/pinned`;
}

/**
 * Wait between steady state and the post-rollback checks (the workflow's LetMetricsSettle, and
 * `rollback service --wait`): the checks read the ALB's metrics since steady state, which land
 * about a minute after their minute ends; 120 s lets the minute of steady state land (60 s often
 * read nothing, and a clean rollback then paged as "not verified yet").
 */
export const METRICS_SETTLE_SECONDS = 120;

/** The runbook's objectives ("Plan de backout"): a deployment rolled back within 5 min, a migration downgraded within 30 s. */
export const ROLLBACK_OBJECTIVE_SECONDS = 300;
export const DOWNGRADE_OBJECTIVE_SECONDS = 30;
