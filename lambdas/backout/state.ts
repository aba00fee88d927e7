import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { conditionalWrite, conditionalWriteOnce } from '../shared/conditional-write';
import { OPERATOR_CLI } from '../shared/constants';

/**
 * The backout's records in the ops-state table:
 *   LKG#<service>      AT#<iso>        last-known-good history (newest = the rollback target)
 *   ROLLBACK#<service> LOCK            one rollback at a time (conditional write, expires)
 *   ROLLBACK#<service> COOLDOWN        no automatic rollback before `until`
 *   ROLLBACK#<service> RELEASE#<arn>   one automatic rollback per release (written once)
 *   ROLLBACK#<service> HISTORY#<iso>#<owner>  what each rollback did
 *   ROLLBACK#<service> SCHEMA          the revision the last migration downgrade that worked reached
 */
export const lkgKey = (service: string) => `LKG#${service}`;
export const rollbackKey = (service: string) => `ROLLBACK#${service}`;
/** The sort key of a release's once-per-release claim, in its service's ROLLBACK# partition. */
const claimKey = (taskDefinitionArn: string) => `RELEASE#${taskDefinitionArn}`;

const DAY = 86_400;
const LKG_RETENTION_SECONDS = 365 * DAY;
const HISTORY_RETENTION_SECONDS = 180 * DAY;

/** One release that stayed healthy through the bake: the only kind of rollback target. */
export interface LastKnownGood {
  readonly service: string;
  readonly taskDefinitionArn: string;
  /** Image references of the containers (digests when ECS resolved them). */
  readonly images: readonly string[];
  /** Alembic head the release declares, when it declares one. */
  readonly alembicHead: string | null;
  readonly deploymentId: string | null;
  /** When the deployment completed, and when the bake confirmed it. */
  readonly deployedAt: string;
  readonly recordedAt: string;
  /** The revision this one is a copy of, pinned to its digests by a rollback (the same release under another ARN). */
  readonly pinnedFrom?: string;
}

/**
 * What holds a rollback lock, stored in its item (`holder`): a service rollback (UpdateService:
 * nothing of it runs on once its holder is dead), or a migration downgrade, whose ECS task may
 * still run (`taskArn` once RunTask named it; the workflow's .sync RunTask names it only when the
 * task has ended, so its locks carry none). `rollback unlock` asks for --force from this, not from
 * the reason's words.
 */
export type LockHolder = { readonly kind: 'service-rollback' } | { readonly kind: 'migration-downgrade'; readonly taskArn?: string };

export interface LockRecord {
  readonly owner: string;
  readonly acquiredAt: string;
  readonly expiresAt: number;
  readonly reason: string;
  /** Absent on a lock written by a version before holders were recorded (or of a kind this one does not know). */
  readonly holder?: LockHolder;
}

export interface RollbackHistoryEntry {
  readonly service: string;
  readonly owner: string;
  readonly at: string;
  readonly outcome: string;
  readonly summary: string;
  readonly fromTaskDefinition: string | null;
  readonly toTaskDefinition: string | null;
  readonly trigger: string;
  readonly seconds: number | null;
}

const epoch = (date: Date) => Math.floor(date.getTime() / 1000);

export async function putLastKnownGood(doc: DynamoDBDocumentClient, table: string, record: LastKnownGood): Promise<void> {
  await doc.send(
    new PutCommand({
      TableName: table,
      Item: { pk: lkgKey(record.service), sk: `AT#${record.recordedAt}`, ...record, expiresAt: epoch(new Date(record.recordedAt)) + LKG_RETENTION_SECONDS },
    }),
  );
}

/** The newest `limit` items of a partition whose sort key starts with `prefix`, keys stripped. */
async function newestFirst(doc: DynamoDBDocumentClient, table: string, pk: string, prefix: string, limit: number): Promise<Record<string, unknown>[]> {
  const { Items } = await doc.send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: { ':pk': pk, ':prefix': prefix },
      ScanIndexForward: false,
      Limit: limit,
    }),
  );
  return (Items ?? []).map(stripKeys);
}

/**
 * How much of a service's last-known-good history the lookups read: "its record" (lastKnownGoodOf)
 * and "the one before it" (lastKnownGoodBefore) read the same newest records, so a release that has
 * a record is never missing from "the one before" (with two limits, a release 11 to 100 records back
 * had digests to pin to but was never offered). 100: a year of releases at two a week, the year the
 * records are kept (LKG_RETENTION_SECONDS); one Query of 100 small items.
 */
export const LKG_HISTORY_LIMIT = 100;

/** Newest first. */
export async function lastKnownGoodHistory(doc: DynamoDBDocumentClient, table: string, service: string, limit = LKG_HISTORY_LIMIT): Promise<LastKnownGood[]> {
  return (await newestFirst(doc, table, lkgKey(service), 'AT#', limit)) as unknown as LastKnownGood[];
}

export async function latestLastKnownGood(doc: DynamoDBDocumentClient, table: string, service: string): Promise<LastKnownGood | null> {
  return (await lastKnownGoodHistory(doc, table, service, 1))[0] ?? null;
}

/**
 * The newest record of `taskDefinitionArn` as a last known good, if it was one (of the newest
 * LKG_HISTORY_LIMIT): the digests a rollback to an earlier last known good pins to.
 */
export async function lastKnownGoodOf(doc: DynamoDBDocumentClient, table: string, service: string, taskDefinitionArn: string): Promise<LastKnownGood | null> {
  return (await lastKnownGoodHistory(doc, table, service)).find((record) => record.taskDefinitionArn === taskDefinitionArn) ?? null;
}

/**
 * The newest last known good of another release than `taskDefinitionArn`: what to offer when the newest one is
 * what runs and went bad after its bake (a leak that shows after the bake time). Never a target by
 * itself: the release was replaced by one that baked, and only a human knows why.
 * A copy pinned to its original's digests (pinnedFrom) is the same release under another ARN: the
 * original of a copy that runs, or a copy of the revision that runs, would be refused as "already
 * runs" if offered. `sameRelease`: more ARNs of it the caller knows (what runs, its pinned-from tag).
 * Of the newest LKG_HISTORY_LIMIT records, as lastKnownGoodOf; `offered`: false for a record the
 * caller never offers (the pin of the last rollback refuses it: unpinned in workflow.ts).
 */
export async function lastKnownGoodBefore(
  doc: DynamoDBDocumentClient,
  table: string,
  service: string,
  taskDefinitionArn: string,
  sameRelease: readonly (string | undefined)[] = [],
  offered: (record: LastKnownGood) => boolean = () => true,
): Promise<LastKnownGood | null> {
  const history = await lastKnownGoodHistory(doc, table, service);
  const ownRecords = history.filter((record) => record.taskDefinitionArn === taskDefinitionArn);
  const same = new Set([taskDefinitionArn, ...sameRelease, ...ownRecords.map((record) => record.pinnedFrom)].filter((arn): arn is string => Boolean(arn)));
  return history.find((record) => !same.has(record.taskDefinitionArn) && !(record.pinnedFrom && same.has(record.pinnedFrom)) && offered(record)) ?? null;
}

function stripKeys(item: Record<string, unknown>): Record<string, unknown> {
  const { pk: _pk, sk: _sk, expiresAt: _expiresAt, ...rest } = item;
  return rest;
}

/**
 * Takes the service's rollback lock for `ttlSeconds` (a crashed holder cannot block forever).
 * Returns false when someone else holds it; DynamoDB errors propagate: no lock, no action.
 *
 * A put retried by the SDK onto its own applied first attempt is this call's lock
 * (conditionalWriteOnce), not one held by another rollback for the next `ttlSeconds`. A lock of the
 * same `owner` is taken again: the workflow's owner is its execution's name, and Step Functions runs
 * the Guards again after a Lambda error that may follow a run that took the lock.
 */
export async function acquireLock(
  doc: DynamoDBDocumentClient,
  table: string,
  lock: { service: string; owner: string; now: Date; ttlSeconds: number; reason: string; holder: LockHolder },
): Promise<boolean> {
  const result = await conditionalWriteOnce(doc, {
    TableName: table,
    Item: {
      pk: rollbackKey(lock.service),
      sk: 'LOCK',
      owner: lock.owner,
      acquiredAt: lock.now.toISOString(),
      reason: lock.reason,
      holder: lock.holder,
      expiresAt: epoch(lock.now) + lock.ttlSeconds,
    },
    ConditionExpression: 'attribute_not_exists(pk) OR expiresAt < :now OR #owner = :owner',
    ExpressionAttributeNames: { '#owner': 'owner' },
    ExpressionAttributeValues: { ':now': epoch(lock.now), ':owner': lock.owner },
  });
  return result.outcome !== 'refused';
}

/** Deletes the service's rollback item `sk` if `owner` still owns it; false when it does not (or it is gone). */
async function deleteOwned(doc: DynamoDBDocumentClient, table: string, service: string, sk: string, owner: string): Promise<boolean> {
  return conditionalWrite(() =>
    doc.send(
      new DeleteCommand({
        TableName: table,
        Key: { pk: rollbackKey(service), sk },
        ConditionExpression: '#owner = :owner',
        ExpressionAttributeNames: { '#owner': 'owner' },
        ExpressionAttributeValues: { ':owner': owner },
      }),
    ),
  );
}

/** Releases the lock if `owner` still holds it (never someone else's). */
export async function releaseLock(doc: DynamoDBDocumentClient, table: string, service: string, owner: string): Promise<boolean> {
  return deleteOwned(doc, table, service, 'LOCK', owner);
}

/**
 * Deletes the release claims and the lock that `owner` still holds, each by a delete conditional on
 * that owner (never another rollback's). For a run whose guards returned no state (their Lambda timed
 * out or was killed): what they took is then known only by its owner, the workflow execution's name.
 * The claims first: the lock released, the next alarm's run could otherwise meet a claim of this run
 * that rolled nothing back. One Query page (1 MB) holds thousands of claims, more than the
 * HISTORY_RETENTION_SECONDS they are kept.
 */
export async function releaseOwnedBy(doc: DynamoDBDocumentClient, table: string, service: string, owner: string): Promise<{ lock: boolean; claims: string[] }> {
  const { Items } = await doc.send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      FilterExpression: '#owner = :owner',
      ExpressionAttributeNames: { '#owner': 'owner' },
      ExpressionAttributeValues: { ':pk': rollbackKey(service), ':prefix': 'RELEASE#', ':owner': owner },
      ConsistentRead: true,
    }),
  );
  const claims: string[] = [];
  for (const item of Items ?? []) {
    const sk = item.sk as string;
    if (await deleteOwned(doc, table, service, sk, owner)) claims.push(sk.slice('RELEASE#'.length));
  }
  return { lock: await releaseLock(doc, table, service, owner), claims };
}

/**
 * Records in `owner`'s lock the migration task that runs under it, once RunTask named it: what
 * `rollback status` shows and what to check before `rollback unlock --force`. False when the lock is
 * no longer `owner`'s (nothing written). Setting the same value again is harmless, so a retried
 * update needs no guard of its own.
 */
export async function recordLockTask(doc: DynamoDBDocumentClient, table: string, service: string, owner: string, taskArn: string): Promise<boolean> {
  const holder: LockHolder = { kind: 'migration-downgrade', taskArn };
  return conditionalWrite(() =>
    doc.send(
      new UpdateCommand({
        TableName: table,
        Key: { pk: rollbackKey(service), sk: 'LOCK' },
        UpdateExpression: 'SET #holder = :holder',
        ConditionExpression: '#owner = :owner',
        ExpressionAttributeNames: { '#holder': 'holder', '#owner': 'owner' },
        ExpressionAttributeValues: { ':holder': holder, ':owner': owner },
      }),
    ),
  );
}

/** The holder stored in a lock item, or undefined for an item without one (an earlier version's) or of an unknown kind. */
function lockHolder(value: unknown): LockHolder | undefined {
  const holder = value as { kind?: unknown; taskArn?: unknown } | null | undefined;
  if (holder?.kind === 'service-rollback') return { kind: 'service-rollback' };
  if (holder?.kind !== 'migration-downgrade') return undefined;
  return typeof holder.taskArn === 'string' ? { kind: 'migration-downgrade', taskArn: holder.taskArn } : { kind: 'migration-downgrade' };
}

/**
 * The command that releases a lock nothing else will release before it expires (a command killed,
 * a release that failed), quoted as the lines that print it quote commands. `force`: the lock may
 * cover a migration downgrade whose task the printing line knows has stopped (rollback unlock).
 * `--env` names the lock's environment: without it the CLI looks in cdk.json's default one.
 */
export function unlockCommandLine(service: string, owner: string, environmentName: string, force = false): string {
  return `"${OPERATOR_CLI} rollback unlock --service ${service} --owner ${owner} --env ${environmentName}${force ? ' --force' : ''}"`;
}

export async function readLock(doc: DynamoDBDocumentClient, table: string, service: string, now: Date): Promise<LockRecord | null> {
  const { Item } = await doc.send(new GetCommand({ TableName: table, Key: { pk: rollbackKey(service), sk: 'LOCK' }, ConsistentRead: true }));
  if (!Item || (Item.expiresAt as number) < epoch(now)) return null;
  const holder = lockHolder(Item.holder);
  return { owner: Item.owner as string, acquiredAt: Item.acquiredAt as string, expiresAt: Item.expiresAt as number, reason: Item.reason as string, ...(holder && { holder }) };
}

/** The end of the cooldown, when one is running at `now`. */
export async function cooldownUntil(doc: DynamoDBDocumentClient, table: string, service: string, now: Date): Promise<string | null> {
  const { Item } = await doc.send(new GetCommand({ TableName: table, Key: { pk: rollbackKey(service), sk: 'COOLDOWN' }, ConsistentRead: true }));
  const until = Item?.until as string | undefined;
  return until && Date.parse(until) > now.getTime() ? until : null;
}

export async function startCooldown(doc: DynamoDBDocumentClient, table: string, service: string, now: Date, seconds: number): Promise<string> {
  const until = new Date(now.getTime() + seconds * 1000);
  await doc.send(
    new PutCommand({
      TableName: table,
      Item: { pk: rollbackKey(service), sk: 'COOLDOWN', until: until.toISOString(), expiresAt: epoch(until) + DAY },
    }),
  );
  return until.toISOString();
}

/**
 * Marks the release (task definition) as automatically rolled back; false when it already was:
 * a flapping alarm cannot roll the same release back twice.
 */
export async function claimReleaseRollback(
  doc: DynamoDBDocumentClient,
  table: string,
  claim: { service: string; taskDefinitionArn: string; owner: string; now: Date },
): Promise<boolean> {
  // A retried claim that finds its own claim made it (conditionalWriteOnce), and so does a claim of
  // the same owner (the workflow's Guards run again by Step Functions, see acquireLock): "already
  // rolled back" would skip the one automatic rollback this release gets.
  const result = await conditionalWriteOnce(doc, {
    TableName: table,
    Item: {
      pk: rollbackKey(claim.service),
      sk: claimKey(claim.taskDefinitionArn),
      owner: claim.owner,
      at: claim.now.toISOString(),
      expiresAt: epoch(claim.now) + HISTORY_RETENTION_SECONDS,
    },
    ConditionExpression: 'attribute_not_exists(pk) OR #owner = :owner',
    ExpressionAttributeNames: { '#owner': 'owner' },
    ExpressionAttributeValues: { ':owner': claim.owner },
  });
  return result.outcome !== 'refused';
}

/**
 * Deletes `owner`'s claim of the release (an automatic run that changed nothing on ECS gives the
 * release back its one automatic rollback); false when the claim is not `owner`'s (another run's, or
 * never written) or is gone already.
 */
export async function releaseClaim(doc: DynamoDBDocumentClient, table: string, claim: { service: string; taskDefinitionArn: string; owner: string }): Promise<boolean> {
  return deleteOwned(doc, table, claim.service, claimKey(claim.taskDefinitionArn), claim.owner);
}

export async function recordRollback(doc: DynamoDBDocumentClient, table: string, entry: RollbackHistoryEntry): Promise<void> {
  await doc.send(
    new PutCommand({
      TableName: table,
      Item: { pk: rollbackKey(entry.service), sk: `HISTORY#${entry.at}#${entry.owner}`, ...entry, expiresAt: epoch(new Date(entry.at)) + HISTORY_RETENTION_SECONDS },
    }),
  );
}

/** Newest first. */
export async function rollbackHistory(doc: DynamoDBDocumentClient, table: string, service: string, limit = 5): Promise<RollbackHistoryEntry[]> {
  return (await newestFirst(doc, table, rollbackKey(service), 'HISTORY#', limit)) as unknown as RollbackHistoryEntry[];
}

/**
 * The last migration downgrade that worked: the revision it reached, when, by whom (`run`: its id,
 * as its maintenance reason names it), in which image, and the release the service ran then
 * (`servedBy`), by which a later deployment, whose own migrations move the schema, makes it stale.
 */
export interface SchemaDowngrade {
  readonly service: string;
  readonly revision: string;
  readonly at: string;
  readonly by: string;
  readonly run: string;
  readonly taskDefinition: string;
  readonly servedBy: string;
}

export async function recordSchemaDowngrade(doc: DynamoDBDocumentClient, table: string, record: SchemaDowngrade): Promise<void> {
  await doc.send(new PutCommand({ TableName: table, Item: { pk: rollbackKey(record.service), sk: 'SCHEMA', ...record, expiresAt: epoch(new Date(record.at)) + HISTORY_RETENTION_SECONDS } }));
}

export async function lastSchemaDowngrade(doc: DynamoDBDocumentClient, table: string, service: string): Promise<SchemaDowngrade | null> {
  const { Item } = await doc.send(new GetCommand({ TableName: table, Key: { pk: rollbackKey(service), sk: 'SCHEMA' }, ConsistentRead: true }));
  if (!Item) return null;
  const { pk: _pk, sk: _sk, expiresAt: _expires, ...record } = Item;
  return record as SchemaDowngrade;
}
