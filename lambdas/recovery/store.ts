import { nowOf } from '../shared/clock';
import { OPERATOR_CLI } from '../shared/constants';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { conditionalWriteOnce, isConditionFailure, WRITE_ID } from '../shared/conditional-write';
import { OperatorError } from '../shared/errors';
import { FINAL_STATUSES, RecoveryRecord, RecoveryRequest, RecoveryStatus, STATUS_WITHOUT_ID } from './contract';

/**
 * Recoveries in the ops-state table: `RECOVERY#<id>`/`RECORD` holds one recovery (who, why, to
 * when, status, verification, cutover steps); `RECOVERY#ACTIVE`/`LOCK` names the one recovery in
 * progress. The lock is a conditional put written first, so two operators starting a recovery at
 * the same moment get one recovery and one clear refusal.
 */
export const ACTIVE_LOCK_KEY = { pk: 'RECOVERY#ACTIVE', sk: 'LOCK' } as const;
/** One item per recovery under one key, so the latest ones are a Query (ids sort by time), not a Scan. */
const HISTORY_PK = 'RECOVERY#HISTORY';
export const recordKey = (id: string) => ({ pk: `RECOVERY#${id}`, sk: 'RECORD' });
/** Records are kept a year (TTL `expiresAt`): the post-mortem needs them. */
const RECORD_TTL_SECONDS = 400 * 86400;

export interface StoreDeps {
  readonly ddb: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly now?: () => Date;
}

export async function activeRecoveryId(deps: StoreDeps): Promise<string | undefined> {
  const item = (await deps.ddb.send(new GetCommand({ TableName: deps.tableName, Key: ACTIVE_LOCK_KEY, ConsistentRead: true }))).Item;
  return item?.recoveryId as string | undefined;
}

/** Creates the record and takes the lock, or refuses naming the recovery in progress. */
export async function beginRecovery(deps: StoreDeps, request: RecoveryRequest & { sourceInstance: string; sourceResourceId?: string }): Promise<RecoveryRecord> {
  const now = nowOf(deps);
  const record: RecoveryRecord = { ...request, status: 'restoring', updatedAt: now.toISOString() };
  const expiresAt = Math.floor(now.getTime() / 1000) + RECORD_TTL_SECONDS;
  const lock = { ...ACTIVE_LOCK_KEY, recoveryId: request.recoveryId, since: now.toISOString(), actor: request.actor };
  // Both puts know their own retried write (conditionalWriteOnce): refusing a retry that found this
  // start's own lock would end it with no record and no workflow, and leave the lock held for good
  // (it has no TTL), refusing every later start.
  const locked = await conditionalWriteOnce(deps.ddb, { TableName: deps.tableName, Item: lock, ConditionExpression: 'attribute_not_exists(pk)' });
  if (locked.outcome === 'refused') {
    const running = locked.item?.recoveryId as string | undefined;
    throw new OperatorError(
      `recover: recovery ${running ?? '(unknown)'} is in progress: follow it (${OPERATOR_CLI} recover status ${running ?? ''}), cut it over or abandon it before starting another`.replace('  ', ' '),
      3,
    );
  }
  try {
    const put = await conditionalWriteOnce(deps.ddb, { TableName: deps.tableName, Item: { ...recordKey(request.recoveryId), ...record, expiresAt }, ConditionExpression: 'attribute_not_exists(pk)' });
    // Another start's record under this id (ids are unique to the second plus 4 random hex digits).
    if (put.outcome === 'refused') throw new OperatorError(`recover: recovery ${request.recoveryId} already has a record (another start under the same id): start the recovery again`, 3);
    await deps.ddb.send(new PutCommand({ TableName: deps.tableName, Item: { pk: HISTORY_PK, sk: request.recoveryId, recoveryId: request.recoveryId, expiresAt } }));
  } catch (error) {
    await releaseLock(deps, request.recoveryId);
    throw error;
  }
  return record;
}

export async function getRecovery(deps: StoreDeps, id: string): Promise<RecoveryRecord> {
  const item = (await deps.ddb.send(new GetCommand({ TableName: deps.tableName, Key: recordKey(id), ConsistentRead: true }))).Item;
  if (!item) throw new OperatorError(`recover: no recovery ${id}: ${STATUS_WITHOUT_ID}`, 2);
  return toRecord(item);
}

/** The record as stored, without the table's key, TTL and last write's id. */
function toRecord(item: Record<string, unknown>): RecoveryRecord {
  const { pk: _pk, sk: _sk, expiresAt: _ttl, [WRITE_ID]: _writeId, ...record } = item;
  return record as unknown as RecoveryRecord;
}

/** The cutover lease's fields, removed when a cutover, a resume or an undo ends. */
const LEASE_FIELDS = ['leaseOwner', 'leaseToken', 'leaseExpiresAt'] as const;

/** The holder's writes fail once another operator took a stale lease over: it must stop changing anything. */
export class LeaseLostError extends OperatorError {}

export type LeaseGuard =
  | {
      /** Write only while this token holds the lease. */
      readonly leaseToken: string;
      /** Remove the lease with this write (the end of a cutover, a resume or an undo). */
      readonly release?: boolean;
    }
  | {
      /** Write only when no lease is live at this time (epoch ms): none, or one gone stale. */
      readonly freeAt: number;
      /** And only when the record was not written since it was read (its `updatedAt` then). */
      readonly unchangedSince?: string;
    };

/**
 * Updates a recovery's fields; with `from`, only when its status is one of those (the guard of
 * cutover and abandon: an unverified recovery cannot be cut over, a cut-over one cannot be abandoned);
 * with `lease`, only while that lease is held.
 */
export async function updateRecovery(
  deps: StoreDeps,
  id: string,
  changes: Partial<Omit<RecoveryRecord, 'recoveryId'>>,
  from?: readonly RecoveryStatus[],
  lease?: LeaseGuard,
): Promise<RecoveryRecord> {
  const now = nowOf(deps);
  const fields = { ...changes, updatedAt: now.toISOString() } as Record<string, unknown>;
  const entries = Object.entries(fields).filter(([, v]) => v !== undefined);
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const sets = entries.map(([key, value], i) => {
    names[`#f${i}`] = key;
    values[`:v${i}`] = value;
    return `#f${i} = :v${i}`;
  });
  let condition = 'attribute_exists(pk)';
  if (from) {
    names['#status'] = 'status';
    from.forEach((status, i) => (values[`:from${i}`] = status));
    condition += ` AND #status IN (${from.map((_, i) => `:from${i}`).join(', ')})`;
  }
  if (lease && 'leaseToken' in lease) {
    values[':leaseToken'] = lease.leaseToken;
    condition += ' AND leaseToken = :leaseToken';
  } else if (lease) {
    values[':freeAt'] = lease.freeAt;
    condition += ' AND (attribute_not_exists(leaseToken) OR leaseExpiresAt < :freeAt)';
    if (lease.unchangedSince !== undefined) {
      names['#updatedAt'] = 'updatedAt';
      values[':seen'] = lease.unchangedSince;
      condition += ' AND #updatedAt = :seen';
    }
  }
  // A recovery cut over has no cutover failure: one an earlier attempt left (a reopening that failed,
  // resumed since) would go on being printed by `recover status` as if it still stood. The workflow's
  // `error` (a "Recovery Verified" event not sent) still stands and is kept.
  const removes = [...(lease && 'release' in lease && lease.release ? LEASE_FIELDS : []), ...(changes.status === 'cut-over' && changes.cutoverError === undefined ? ['cutoverError'] : [])];
  // A write that finds its own earlier attempt applied (conditionalWriteOnce) is the success path:
  // refusing it would report "taken over" for a cutover that finished (production on the copy),
  // "changed" to an abandon that claimed the recovery, and keep the one-recovery lock of a recovery
  // that ended.
  const result = await conditionalWriteOnce(deps.ddb, {
    TableName: deps.tableName,
    Key: recordKey(id),
    UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
    ConditionExpression: condition,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
    ReturnValues: 'ALL_NEW',
  });
  if (result.outcome !== 'refused') {
    if (changes.status && FINAL_STATUSES.includes(changes.status)) await releaseLock(deps, id);
    return toRecord(result.item ?? {});
  }
  if (!result.item) throw new OperatorError(`recover: no recovery ${id}: ${STATUS_WITHOUT_ID}`, 2);
  const current = toRecord(result.item);
  if (lease && 'leaseToken' in lease && current.leaseToken !== lease.leaseToken) {
    throw new LeaseLostError(
      `recover cutover: recovery ${id} was taken over by ${current.leaseOwner ?? `another operator (now "${current.status}")`}: this process stops here and changes nothing more (see "${OPERATOR_CLI} recover status ${id}")`,
      3,
    );
  }
  throw new OperatorError(`recover: recovery ${id} is "${current.status}", expected ${from?.join(' or ') ?? 'to exist'}`, 3);
}

export interface LeaseRequest {
  /** Statuses the recovery may be in. */
  readonly from: readonly RecoveryStatus[];
  readonly owner: string;
  readonly token: string;
  /** The lease is stale (anyone may take it over) this long after its last renewal. */
  readonly leaseSeconds: number;
  /**
   * The record's `updatedAt` when the caller read it to decide: the lease is then taken only if
   * nothing was written since (a fresh cutover resets the journal, which must not erase the undo data
   * of a cutover that failed in between).
   */
  readonly expectUpdatedAt?: string;
  /** Fields written with the lease (e.g. the status `cutting-over` and a fresh journal). */
  readonly changes?: Partial<Omit<RecoveryRecord, 'recoveryId'>>;
}

/** Why a lease was refused: the recovery is in another status, or a live lease is held by someone else. */
export type LeaseRefusal = { readonly kind: 'status' | 'held' | 'changed'; readonly record: RecoveryRecord };

/**
 * Takes the cutover lease: one conditional write that succeeds only when the status is one of
 * `from` and no live lease exists (none, or one not renewed for `leaseSeconds`: its holder is
 * presumed dead: laptop closed, process killed). Returns the record, or why it was refused.
 */
export async function takeCutoverLease(deps: StoreDeps, id: string, request: LeaseRequest): Promise<{ record: RecoveryRecord } | { refused: LeaseRefusal }> {
  const now = nowOf(deps);
  try {
    const record = await updateRecovery(
      { ...deps, now: () => now },
      id,
      { ...request.changes, leaseOwner: request.owner, leaseToken: request.token, leaseExpiresAt: now.getTime() + request.leaseSeconds * 1000 },
      request.from,
      { freeAt: now.getTime(), unchangedSince: request.expectUpdatedAt },
    );
    return { record };
  } catch (error) {
    if (!(error instanceof OperatorError)) throw error;
    const record = await getRecovery(deps, id);
    const live = record.leaseToken !== undefined && (record.leaseExpiresAt ?? 0) >= now.getTime();
    const kind = !request.from.includes(record.status) ? 'status' : live || request.expectUpdatedAt === undefined || record.updatedAt === request.expectUpdatedAt ? 'held' : 'changed';
    return { refused: { kind, record } };
  }
}

/** Frees the lock if this recovery holds it. */
export async function releaseLock(deps: StoreDeps, id: string): Promise<void> {
  try {
    await deps.ddb.send(
      new DeleteCommand({
        TableName: deps.tableName,
        Key: ACTIVE_LOCK_KEY,
        ConditionExpression: 'recoveryId = :id',
        ExpressionAttributeValues: { ':id': id },
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
}

/** Recovery ids, newest first, for `recover status` without an id. */
export async function listRecoveryIds(deps: StoreDeps, limit = 10): Promise<string[]> {
  const result = await deps.ddb.send(
    new QueryCommand({
      TableName: deps.tableName,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': HISTORY_PK },
      ScanIndexForward: false,
      Limit: limit,
    }),
  );
  return (result.Items ?? []).map((item) => item.recoveryId as string);
}
