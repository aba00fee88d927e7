import { z } from 'zod';

/**
 * The one typed configuration of an atmr-dr environment.
 *
 * Environments live in `cdk.json` under `context.environments.<name>`; `example` is the embedded
 * default so that `npx cdk synth` works offline. Existing infrastructure is referenced by explicit
 * attributes (no `fromLookup`, which needs credentials at synth).
 */

const accountId = z.string().regex(/^\d{12}$/, 'must be a 12-digit AWS account id');
const region = z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, 'must be an AWS region such as eu-west-3');
const arn = z.string().regex(/^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:.+$/, 'must be a full ARN (arn:aws:...)');
const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'must be a subnet id (subnet-...)');
const securityGroupId = z.string().regex(/^sg-[0-9a-f]{8,17}$/, 'must be a security group id (sg-...)');
const timeZone = z.string().refine(isValidTimeZone, 'must be an IANA time zone such as Europe/Paris');
const pgIdentifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case PostgreSQL identifier');

function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export const NetworkConfigSchema = z.strictObject({
  /** VPC of the ATMR platform. */
  vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, 'must be a VPC id (vpc-...)'),
  /** Availability zones of the private subnets, in the same order (read by the VPC import only: placement is by subnet id). */
  availabilityZones: z.array(z.string().min(1)).min(1),
  /** Private subnets (with a route to S3 and AWS APIs) where the runners and probes run. */
  privateSubnetIds: z.array(subnetId).min(1),
});

export const DatabaseConfigSchema = z.strictObject({
  /** RDS instance identifier (for PITR checks and snapshots). */
  instanceIdentifier: z.string().regex(/^[a-zA-Z][a-zA-Z0-9-]{0,62}$/, 'must be an RDS instance identifier'),
  /** Endpoint host name. */
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(5432),
  /** Database to back up: the production database name, which restores refuse to overwrite. */
  name: pgIdentifier,
  /** Secrets Manager secret holding `{username, password}` (the RDS-managed secret). */
  secretArn: arn,
  /** KMS key of the secret, when it is not the AWS-managed one. */
  secretKmsKeyArn: arn.optional(),
  /** Use IAM database authentication as this user instead of the secret. */
  iamAuthUser: z.string().min(1).optional(),
  /** Security group of the database: runners get ingress on `port` from their own group. */
  securityGroupId,
  /** PostgreSQL major version of the server: the runner image ships the same client. */
  engineMajorVersion: z.number().int().min(12).max(18).default(15),
});

export const BackupTierSchema = z.enum(['hourly', 'daily', 'weekly', 'monthly']);
export type BackupTier = z.infer<typeof BackupTierSchema>;

export const BackupsConfigSchema = z.strictObject({
  /** Where the runner image executes: Lambda (15 min cap) or an ECS Fargate task (no cap). */
  runner: z.enum(['lambda', 'fargate']).default('lambda'),
  /**
   * gzip/pg_dump compression level (0-9) used for both formats. 1: on the bench database it cuts
   * pg_dump's CPU about 2.5x against 6 for ~20% larger objects (docs/backups.md, npm run bench:backup).
   */
  compressionLevel: z.number().int().min(0).max(9).default(1),
  /**
   * S3 multipart part size (MiB) of the uploads. The runner holds about 6 parts in memory (2 objects x
   * 2 in flight + 1 filling), and S3 allows 10,000 parts per object: 5 MiB caps one object at
   * 48.8 GiB; raise it for larger dumps (memory grows by ~6x the increase).
   */
  partSizeMiB: z.number().int().min(5).max(512).default(5),
  /** Lambda memory for the runner (MiB). */
  memoryMiB: z.number().int().min(512).max(10240).default(2048),
  /** Lambda ephemeral storage (MiB) used as scratch space. */
  ephemeralStorageMiB: z.number().int().min(512).max(10240).default(4096),
  /** S3 Object Lock in governance mode, with this default retention in days, when set. */
  objectLockGovernanceDays: z.number().int().min(1).max(3650).optional(),
  /** Manual RDS snapshots kept per tier (weekly and monthly tiers take one). */
  snapshotRetention: z
    .strictObject({ weekly: z.number().int().min(1).default(4), monthly: z.number().int().min(1).default(12) })
    .default({ weekly: 4, monthly: 12 }),
  /** Minimum automated-backup retention (PITR) in days; below it, the PITR alarm fires. */
  minPitrRetentionDays: z.number().int().min(1).max(35).default(7),
  /** `runner: fargate` only: task CPU units (its memory is `memoryMiB`, a valid Fargate pair). */
  fargateCpu: z
    .number()
    .int()
    .refine((cpu) => [256, 512, 1024, 2048, 4096, 8192, 16384].includes(cpu), 'must be one of 256, 512, 1024, 2048, 4096, 8192, 16384')
    .default(1024),
  /** `runner: fargate` only: run the task on this existing ECS cluster instead of a dedicated one. */
  ecsClusterArn: arn.optional(),
});

export const RestoreTestConfigSchema = z.strictObject({
  /** Run the monthly restore test in this environment (staging by default, not production). */
  enabled: z.boolean().default(false),
  /** Instance that receives the scratch database; defaults to the backed-up one. */
  targetHost: z.string().min(1).optional(),
  targetPort: z.number().int().min(1).max(65535).optional(),
  targetSecretArn: arn.optional(),
  /** Restore into a temporary RDS instance created from the latest snapshot instead. */
  useTemporaryInstance: z.boolean().default(false),
  /** Recovery point objective in seconds (runbook: 15 minutes). */
  rpoObjectiveSeconds: z.number().int().positive().default(900),
  /** Recovery time objective in seconds (runbook: 30 minutes). */
  rtoObjectiveSeconds: z.number().int().positive().default(1800),
  /** Queries that must succeed on the restored database (skipped when their table is absent). */
  criticalQueries: z.array(z.string().min(1)).default(['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking']),
  /** Tier whose latest backup the scheduled test restores (its age is the measured RPO). */
  tier: BackupTierSchema.default('daily'),
  /** Security group of the target instance, when it is not the backed-up database's. */
  targetSecurityGroupId: securityGroupId.optional(),
  /** Lambda memory of the restore test (MiB). */
  memoryMiB: z.number().int().min(512).max(10240).default(2048),
  /** Lambda ephemeral storage (MiB): scratch space for the downloaded dump (refused when too small). */
  ephemeralStorageMiB: z.number().int().min(512).max(10240).default(4096),
  /** `useTemporaryInstance` only: DB subnet group of the temporary instance (private subnets). */
  temporaryInstanceSubnetGroupName: z.string().regex(/^[a-zA-Z0-9 ._-]{1,255}$/, 'must be a DB subnet group name').optional(),
  /** `useTemporaryInstance` only: instance class of the temporary instance. */
  temporaryInstanceClass: z.string().regex(/^db\.[a-z0-9]+\.[a-z0-9]+$/, 'must be an RDS instance class such as db.t4g.medium').default('db.t4g.medium'),
});

export const KillswitchConfigSchema = z.strictObject({
  /** SSM parameter name holding the killswitch JSON value. */
  parameterName: z.string().regex(/^\/[a-zA-Z0-9_./-]+$/, 'must be an SSM parameter path starting with /'),
  /** ALB listener where maintenance is enforced: a rule forwards to the 503 maintenance responder (Lambda target). */
  listenerArn: arn,
  /** Priority of the maintenance listener rule (must be free on the listener). */
  listenerRulePriority: z.number().int().min(1).max(50000).default(1),
  /** Task role of the Flask API, granted read access to the parameter. */
  apiTaskRoleArn: arn,
  /** Roles of operators allowed to use the CLI (read + write). */
  operatorRoleArns: z.array(arn).default([]),
  /** Slack slash-command integration. */
  slack: z
    .strictObject({
      signingSecretArn: arn,
      allowedUserIds: z.array(z.string().regex(/^[UW][A-Z0-9]{2,}$/, 'must be a Slack user id (U...)')).min(1),
    })
    .optional(),
});

/** One way to reach a human: an e-mail address, a phone number (SMS), or an HTTPS endpoint (PagerDuty, Opsgenie). */
export const EscalationSubscriptionSchema = z.discriminatedUnion('protocol', [
  z.strictObject({ protocol: z.literal('email'), endpoint: z.email() }),
  z.strictObject({ protocol: z.literal('sms'), endpoint: z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 phone number such as +33612345678') }),
  z.strictObject({
    protocol: z.literal('https'),
    endpoint: z.url({ protocol: /^https$/, error: 'must be an https:// URL (PagerDuty or Opsgenie SNS integration URL)' }),
  }),
]);

export const EscalationLevelSchema = z.strictObject({
  /** Who this level is, as pages and timelines name it (e.g. "Lead DevOps"). */
  name: z.string().min(1).max(60),
  /**
   * Seconds this level has to acknowledge before the next level is paged (runbook: 15 minutes per
   * level). On the last level, it is the interval at which that level is paged again. @default 900
   */
  ackTimeoutSeconds: z.number().int().min(60).max(86400).default(900),
  /** Subscriptions of this level's SNS topic. @default [] */
  subscriptions: z.array(EscalationSubscriptionSchema).default([]),
});
export type EscalationLevelConfig = z.infer<typeof EscalationLevelSchema>;

/** The runbook's "Escalade": on-call (0-15 min), lead DevOps (15-30 min), CTO (30+ min). */
export const DEFAULT_ESCALATION_LEVEL_NAMES = ['On-call engineer', 'Lead DevOps', 'CTO'] as const;

export const EscalationConfigSchema = z
  .strictObject({
    /** Shorthand: e-mail subscription of level 1 (on-call engineer, 0-15 min). @default - none */
    onCallEmail: z.email().optional(),
    /** Shorthand: e-mail subscription of level 2 (lead DevOps, 15-30 min). @default - none */
    leadDevOpsEmail: z.email().optional(),
    /** Shorthand: e-mail subscription of level 3 (CTO, 30+ min). @default - none */
    ctoEmail: z.email().optional(),
    /**
     * The levels, paged in order (level 1 at once, each next one when the previous did not
     * acknowledge within its `ackTimeoutSeconds`). @default the runbook's three levels, 900 s each
     */
    levels: z.array(EscalationLevelSchema).min(1).max(6).default(() => DEFAULT_ESCALATION_LEVEL_NAMES.map((name) => EscalationLevelSchema.parse({ name }))),
    /** While an acknowledged incident stays in ALARM, the acknowledging level is reminded this often (seconds). @default 1800 */
    reminderIntervalSeconds: z.number().int().min(60).max(86400).default(1800),
    /** How long a signed acknowledgement link in a page stays valid (seconds). @default 14400 */
    ackLinkValiditySeconds: z.number().int().min(300).max(7 * 86400).default(14400),
    /** Base URL of the runbook, linked from every page next to the alarm's runbook section. */
    runbookUrl: z.url().default('https://github.com/atmr/atmr/blob/main/docs/runbook-catastrophes.md'),
    /**
     * Slack #incidents through AWS Chatbot (the workspace must be authorized once in the Chatbot
     * console). @default - no Slack channel
     */
    slack: z
      .strictObject({
        workspaceId: z.string().regex(/^T[A-Z0-9]{2,}$/, 'must be a Slack workspace id (T...)'),
        channelId: z.string().regex(/^[CG][A-Z0-9]{2,}$/, 'must be a Slack channel id (C...)'),
      })
      .optional(),
  })
  .superRefine((value, ctx) => {
    const shorthands = [value.onCallEmail, value.leadDevOpsEmail, value.ctoEmail];
    shorthands.forEach((email, index) => {
      if (email !== undefined && index >= value.levels.length) {
        ctx.addIssue({ code: 'custom', path: ['levels'], message: `has ${value.levels.length} level(s) but a level-${index + 1} e-mail shorthand is set: add the level or remove the e-mail` });
      }
    });
    value.levels.forEach((level, index) => {
      if (level.subscriptions.length === 0 && shorthands[index] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['levels', index, 'subscriptions'],
          message: `level ${index + 1} (${level.name}) reaches nobody: add an email, sms or https subscription`,
        });
      }
    });
  });
export type EscalationConfig = z.infer<typeof EscalationConfigSchema>;

/** The levels with the e-mail shorthands folded into levels 1-3's subscriptions. */
export function escalationLevels(config: EscalationConfig): EscalationLevelConfig[] {
  const shorthands = [config.onCallEmail, config.leadDevOpsEmail, config.ctoEmail];
  return config.levels.map((level, index) => {
    const email = shorthands[index];
    const already = level.subscriptions.some((s) => s.protocol === 'email' && s.endpoint === email);
    return email === undefined || already ? level : { ...level, subscriptions: [{ protocol: 'email' as const, endpoint: email }, ...level.subscriptions] };
  });
}

export const EnvironmentConfigSchema = z.strictObject({
  /** Short environment name, used in resource names (e.g. prod, staging). */
  name: z.string().regex(/^[a-z][a-z0-9-]{1,20}$/, 'must be 2-21 lower-case letters, digits or dashes'),
  account: accountId,
  region,
  /** Time zone of the schedules. */
  timeZone: timeZone.default('Europe/Paris'),
  /** Is this the production environment (guards destructive operations). */
  production: z.boolean().default(false),
  network: NetworkConfigSchema,
  database: DatabaseConfigSchema,
  backups: BackupsConfigSchema.default(() => BackupsConfigSchema.parse({})),
  restoreTest: RestoreTestConfigSchema.default(() => RestoreTestConfigSchema.parse({})),
  killswitch: KillswitchConfigSchema,
  escalation: EscalationConfigSchema,
});

export type EnvironmentConfig = z.infer<typeof EnvironmentConfigSchema>;

/** Thrown for a config that cannot be used; the message is one line naming the field and the fix. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Validates one environment's raw context value. The error message names the first invalid
 * field (as a `cdk.json` path) and what it must be.
 */
export function parseEnvironmentConfig(envName: string, raw: unknown): EnvironmentConfig {
  if (raw === undefined) {
    throw new ConfigError(
      `config: no environment "${envName}" in cdk.json context.environments; add it there or pass -c env=example`,
    );
  }
  const result = EnvironmentConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = ['environments', envName, ...issue.path.map(String)].join('.');
    throw new ConfigError(`config: ${path}: ${describeIssue(issue)}; fix it in cdk.json (context.${path})`);
  }
  return result.data;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.join(', ')}: remove or rename them`;
  if (issue.code === 'invalid_type' && issue.input === undefined) return `is required (${issue.expected})`;
  if (issue.code === 'invalid_value') return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  return issue.message;
}

/** Minimal view of CDK's node context, so this module does not depend on a construct. */
export interface ContextReader {
  tryGetContext(key: string): unknown;
}

/**
 * Resolves the environment selected with `-c env=<name>` (default `example`) from CDK context.
 * The only place in `lib/` that reads context.
 */
export function loadConfigFromContext(node: ContextReader): EnvironmentConfig {
  const envName = (node.tryGetContext('env') as string | undefined) ?? 'example';
  const environments = (node.tryGetContext('environments') ?? {}) as Record<string, unknown>;
  return parseEnvironmentConfig(envName, environments[envName]);
}
