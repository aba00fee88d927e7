import {
  CreateDBSnapshotCommand,
  DBSnapshot,
  DeleteDBSnapshotCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  RDSClient,
  paginateDescribeDBSnapshots,
} from '@aws-sdk/client-rds';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { OperatorError, oneLine } from '../shared/errors';
import { emitSingleMetric } from '../shared/single-metric';
import { isSnapshotTier, type BackupTier, type SnapshotTier } from '../shared/tiers';
import { MANAGED_TAG_KEY, RUNNER_METRICS, SNAPSHOT_PREFIX, TIER_TAG_KEY } from './runner-contract';

/**
 * The RDS side of a scheduled backup: manual snapshots for the weekly and monthly tiers (pruned to
 * the configured retention), and the PITR check of every run. The runbook's RPO < 15 min is only
 * reachable through automated backups (PITR), never through hourly dumps: hence the metric.
 */


/** `atmr-dr-<tier>-` : the prefix of this tool's snapshots of one tier. */
export function snapshotTierPrefix(tier: SnapshotTier): string {
  return `${SNAPSHOT_PREFIX}${tier}-`;
}

/** `atmr-dr-weekly-atmr-prod-20261122-033000` (UTC). Valid: starts with a letter, no `--`, no trailing `-`. */
export function snapshotIdentifier(tier: SnapshotTier, instanceIdentifier: string, at: Date): string {
  const iso = at.toISOString();
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
  return `${snapshotTierPrefix(tier)}${instanceIdentifier.toLowerCase()}-${stamp}`;
}

export interface PitrStatus {
  /** Automated backups on, with retention >= the minimum. */
  readonly enabled: boolean;
  readonly retentionDays: number;
  readonly minRetentionDays: number;
  /** Now minus the instance's latest restorable time, when RDS reports one. */
  readonly lagSeconds?: number;
  /**
   * Automated backups are on (any retention) but RDS reports no latest restorable time: nothing to
   * recover to by PITR (an instance before its first automated backup, or one RDS cannot back up).
   */
  readonly noRestorableTime?: boolean;
}

/** Reads the instance's automated-backup settings (DescribeDBInstances). */
export async function checkPitr(rds: RDSClient, instanceIdentifier: string, minRetentionDays: number, now: Date): Promise<PitrStatus> {
  let instance;
  try {
    const out = await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: instanceIdentifier }));
    instance = out.DBInstances?.[0];
  } catch (error) {
    throw rdsError(error, `cannot describe RDS instance ${instanceIdentifier}`, instanceIdentifier);
  }
  if (!instance) {
    throw new OperatorError(`RDS instance ${instanceIdentifier} not found: check database.instanceIdentifier in cdk.json`);
  }
  const retentionDays = instance.BackupRetentionPeriod ?? 0;
  const latest = instance.LatestRestorableTime;
  return {
    enabled: retentionDays > 0 && retentionDays >= minRetentionDays,
    retentionDays,
    minRetentionDays,
    ...(latest && { lagSeconds: Math.max(0, Math.round((now.getTime() - latest.getTime()) / 1000)) }),
    ...(!latest && retentionDays > 0 && { noRestorableTime: true }),
  };
}

/**
 * The PITR check and its metrics, one helper for the hourly backup run (runRdsSide) and the 5-minute
 * PITR watch (pitr-watch.ts): PitrEnabled and PitrRetentionDays on every read, PitrLagSeconds when
 * RDS reports a latest restorable time (none while automated backups are off: PitrOff's business),
 * and PitrRestorable while they are on: 0 when RDS reports no restorable time despite them, which
 * no lag can show. A failed read throws and emits nothing, so that the caller's run fails instead of
 * looking healthy.
 */
export async function reportPitr(deps: RdsSideDeps, instanceIdentifier: string, minRetentionDays: number): Promise<PitrStatus> {
  const pitr = await checkPitr(deps.rds, instanceIdentifier, minRetentionDays, (deps.now ?? (() => new Date()))());
  // Only {service, DBInstanceIdentifier}: never the Tier dimension the backup core may have set.
  const instance = { DBInstanceIdentifier: instanceIdentifier };
  emitSingleMetric(deps.metrics, RUNNER_METRICS.pitrEnabled, MetricUnit.Count, pitr.enabled ? 1 : 0, instance);
  emitSingleMetric(deps.metrics, RUNNER_METRICS.pitrRetentionDays, MetricUnit.Count, pitr.retentionDays, instance);
  if (pitr.lagSeconds !== undefined) {
    emitSingleMetric(deps.metrics, RUNNER_METRICS.pitrLagSeconds, MetricUnit.Seconds, pitr.lagSeconds, instance);
  }
  if (pitr.retentionDays > 0) emitSingleMetric(deps.metrics, RUNNER_METRICS.pitrRestorable, MetricUnit.Count, pitr.noRestorableTime ? 0 : 1, instance);
  return pitr;
}

export interface TierSnapshotResult {
  readonly created: string;
  /** True when RDS already had a snapshot of that name: another run of the same second took it. */
  readonly alreadyTaken?: boolean;
  /** Identifiers deleted by the prune, oldest first. */
  readonly deleted: readonly string[];
}

/**
 * Takes a manual snapshot of the instance, tagged with the tier and as managed by atmr-dr, named
 * after `at`. Its name already taken (DBSnapshotAlreadyExistsFault) is that snapshot taken when it
 * is this tool's snapshot of this tier of this instance: named after the backup's start second, it
 * is the one of another run of that second (one run delivered twice) or of this request sent again
 * by the SDK. `alreadyTaken` says so. A snapshot of that name of another instance, or without this
 * tool's tags of the tier (an operator's, another tool's), is not this run's snapshot: the run fails.
 */
export async function createTierSnapshot(rds: RDSClient, instanceIdentifier: string, tier: SnapshotTier, at: Date): Promise<{ identifier: string; alreadyTaken: boolean }> {
  const identifier = snapshotIdentifier(tier, instanceIdentifier, at);
  try {
    await rds.send(
      new CreateDBSnapshotCommand({
        DBInstanceIdentifier: instanceIdentifier,
        DBSnapshotIdentifier: identifier,
        Tags: [
          { Key: MANAGED_TAG_KEY, Value: 'true' },
          { Key: TIER_TAG_KEY, Value: tier },
        ],
      }),
    );
  } catch (error) {
    if ((error as Error).name !== 'DBSnapshotAlreadyExistsFault') throw rdsError(error, `cannot create ${tier} snapshot ${identifier} of ${instanceIdentifier}`, instanceIdentifier);
    await assertOwnSnapshot(rds, instanceIdentifier, tier, identifier);
    return { identifier, alreadyTaken: true };
  }
  return { identifier, alreadyTaken: false };
}

/**
 * The snapshot RDS says exists under this run's name is this tool's snapshot of this tier of this
 * instance, or the run fails naming the instance it belongs to: counted as taken on its name alone,
 * the tier would have no snapshot of the instance while every log said it had.
 */
async function assertOwnSnapshot(rds: RDSClient, instanceIdentifier: string, tier: SnapshotTier, identifier: string): Promise<void> {
  let snapshot: DBSnapshot | undefined;
  try {
    snapshot = (await rds.send(new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: identifier }))).DBSnapshots?.[0];
  } catch (error) {
    if ((error as Error).name !== 'DBSnapshotNotFoundFault') throw rdsError(error, `cannot describe ${tier} snapshot ${identifier}, which RDS says exists`, instanceIdentifier);
  }
  // RDS keeps identifiers in lower case, as snapshotIdentifier writes the instance's.
  const owner = snapshot?.DBInstanceIdentifier;
  if (snapshot && owner?.toLowerCase() === instanceIdentifier.toLowerCase() && isManagedSnapshotOfTier(snapshot, tier)) return;
  const byHand = `take this ${tier} snapshot by hand under a new name (aws rds create-db-snapshot --db-instance-identifier ${instanceIdentifier} --db-snapshot-identifier <name>)`;
  const reason = !snapshot
    ? `RDS said a snapshot of that name exists, then listed none (deleted meanwhile); ${byHand}`
    : `a snapshot of that name already exists, ${owner?.toLowerCase() !== instanceIdentifier.toLowerCase() ? `of instance ${owner ?? '(none)'}` : `without this tool's tags (${MANAGED_TAG_KEY}=true, ${TIER_TAG_KEY}=${tier})`}, so not this run's: find who created it (names starting ${snapshotTierPrefix(tier)} are this tool's), rename or delete it, and ${byHand}`;
  throw new OperatorError(`cannot create ${tier} snapshot ${identifier} of ${instanceIdentifier}: this run took none: ${reason}`);
}

/**
 * Deletes this tool's snapshots of one tier beyond the newest `keep`. Only snapshots that carry
 * both tags and the tier prefix are candidates (an operator's own snapshots are never touched);
 * snapshots still being created count towards `keep` but are never deleted.
 */
export async function pruneTierSnapshots(rds: RDSClient, instanceIdentifier: string, tier: SnapshotTier, keep: number): Promise<string[]> {
  const ours: DBSnapshot[] = [];
  try {
    for await (const page of paginateDescribeDBSnapshots({ client: rds }, { DBInstanceIdentifier: instanceIdentifier, SnapshotType: 'manual' })) {
      for (const snapshot of page.DBSnapshots ?? []) {
        if (isManagedSnapshotOfTier(snapshot, tier)) ours.push(snapshot);
      }
    }
  } catch (error) {
    throw rdsError(error, `cannot list the ${tier} snapshots of ${instanceIdentifier}`, instanceIdentifier);
  }
  // Newest first; a snapshot still being created has no creation time yet and is the newest.
  const created = (s: DBSnapshot) => s.SnapshotCreateTime?.getTime() ?? Number.POSITIVE_INFINITY;
  ours.sort((a, b) => created(b) - created(a));
  const expired = ours.slice(keep).filter((s) => s.Status === 'available');
  const deleted: string[] = [];
  for (const snapshot of expired.reverse()) {
    const id = snapshot.DBSnapshotIdentifier as string;
    try {
      await rds.send(new DeleteDBSnapshotCommand({ DBSnapshotIdentifier: id }));
    } catch (error) {
      // A run delivered twice prunes at the same moment as its twin: the snapshot the other run is
      // deleting (no longer available) or has deleted is pruned, not a failure that pages.
      const name = (error as { name?: string }).name;
      if (name === 'InvalidDBSnapshotStateFault' || name === 'DBSnapshotNotFoundFault') continue;
      throw rdsError(error, `cannot delete expired ${tier} snapshot ${id}`, instanceIdentifier);
    }
    deleted.push(id);
  }
  return deleted;
}

function isManagedSnapshotOfTier(snapshot: DBSnapshot, tier: SnapshotTier): boolean {
  const tags = new Map((snapshot.TagList ?? []).map((t) => [t.Key, t.Value]));
  return (
    (snapshot.DBSnapshotIdentifier ?? '').startsWith(snapshotTierPrefix(tier)) &&
    tags.get(MANAGED_TAG_KEY) === 'true' &&
    tags.get(TIER_TAG_KEY) === tier
  );
}

export interface RdsSideOptions {
  readonly instanceIdentifier: string;
  readonly tier: BackupTier;
  readonly minPitrRetentionDays: number;
  /** Manual snapshots kept per snapshot tier. */
  readonly snapshotRetention: Readonly<Record<SnapshotTier, number>>;
  /**
   * The second the tier snapshot is named after: the backup's start (its keys), so that two runs
   * of one second (one run delivered twice) ask for one snapshot, and the one that lost its second
   * to a manual backup, which takes none, still takes it. @default now (a backup that failed)
   */
  readonly snapshotAt?: Date;
}

export interface RdsSideDeps {
  readonly rds: RDSClient;
  readonly metrics?: Metrics;
  readonly now?: () => Date;
}

export interface RdsSideResult {
  /** Undefined when the PITR check itself failed (see `errors`). */
  readonly pitr?: PitrStatus;
  readonly snapshot?: TierSnapshotResult;
  /** One line per failed step; the caller fails the run when any. */
  readonly errors: readonly string[];
}

/**
 * Every run: the PITR check and its metrics. Weekly and monthly runs: a tagged manual snapshot,
 * then the prune. Each step runs even when another failed; failures are returned, not thrown.
 */
export async function runRdsSide(deps: RdsSideDeps, options: RdsSideOptions): Promise<RdsSideResult> {
  const now = deps.now ?? (() => new Date());
  const errors: string[] = [];
  let pitr: PitrStatus | undefined;
  try {
    pitr = await reportPitr(deps, options.instanceIdentifier, options.minPitrRetentionDays);
  } catch (error) {
    errors.push(oneLine(error));
  }

  let snapshot: TierSnapshotResult | undefined;
  const tier = options.tier;
  if (isSnapshotTier(tier)) {
    try {
      const { identifier, alreadyTaken } = await createTierSnapshot(deps.rds, options.instanceIdentifier, tier, options.snapshotAt ?? now());
      const deleted = await pruneTierSnapshots(deps.rds, options.instanceIdentifier, tier, options.snapshotRetention[tier]);
      snapshot = { created: identifier, ...(alreadyTaken && { alreadyTaken }), deleted };
    } catch (error) {
      errors.push(oneLine(error));
    }
  }
  return { pitr, snapshot, errors };
}

function rdsError(error: unknown, what: string, instanceIdentifier: string): OperatorError {
  const name = (error as { name?: string }).name ?? 'Error';
  const hint: Record<string, string> = {
    DBInstanceNotFoundFault: `check database.instanceIdentifier (${instanceIdentifier}) in cdk.json`,
    InvalidDBInstanceStateFault: 'the instance is not available (backing up, modifying, stopped); the next run retries',
    SnapshotQuotaExceededFault: 'the account reached its manual snapshot quota; lower backups.snapshotRetention or raise the quota',
    AccessDeniedException: 'the role of this function (backup runner or PITR watch) lacks this RDS permission: redeploy the stack',
  };
  return new OperatorError(`${what}: ${name}: ${oneLine(error)}; ${hint[name] ?? 'see the logs of this function (backup runner or PITR watch)'}`);
}
