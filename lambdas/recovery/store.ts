import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { OperatorError } from '../shared/errors';
import { FINAL_STATUSES, RecoveryRecord, RecoveryRequest, RecoveryStatus } from './contract';

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

const isConditionFailure = (error: unknown) =>
  error instanceof ConditionalCheckFailedException || (error as { name?: string }).name === 'ConditionalCheckFailedException';

export async function activeRecoveryId(deps: StoreDeps): Promise<string | undefined> {
  const item = (await deps.ddb.send(new GetCommand({ TableName: deps.tableName, Key: ACTIVE_LOCK_KEY, ConsistentRead: true }))).Item;
  return item?.recoveryId as string | undefined;
}

/** Creates the record and takes the lock, or refuses naming the recovery in progress. */
export async function beginRecovery(deps: StoreDeps, request: RecoveryRequest & { sourceInstance: string }): Promise<RecoveryRecord> {
  const now = (deps.now ?? (() => new Date()))();
  const record: RecoveryRecord = { ...request, status: 'restoring', updatedAt: now.toISOString() };
  const expiresAt = Math.floor(now.getTime() / 1000) + RECORD_TTL_SECONDS;
  try {
    await deps.ddb.send(
      new PutCommand({
        TableName: deps.tableName,
        Item: { ...ACTIVE_LOCK_KEY, recoveryId: request.recoveryId, since: now.toISOString(), actor: request.actor },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const running = await activeRecoveryId(deps);
    throw new OperatorError(
      `recover: recovery ${running ?? '(unknown)'} is in progress: follow it (atmr-dr recover status ${running ?? ''}), cut it over or abandon it before starting another`.replace('  ', ' '),
      3,
    );
  }
  try {
    await deps.ddb.send(new PutCommand({ TableName: deps.tableName, Item: { ...recordKey(request.recoveryId), ...record, expiresAt }, ConditionExpression: 'attribute_not_exists(pk)' }));
    await deps.ddb.send(new PutCommand({ TableName: deps.tableName, Item: { pk: HISTORY_PK, sk: request.recoveryId, recoveryId: request.recoveryId, expiresAt } }));
  } catch (error) {
    await releaseLock(deps, request.recoveryId);
    throw error;
  }
  return record;
}

export async function getRecovery(deps: StoreDeps, id: string): Promise<RecoveryRecord> {
  const item = (await deps.ddb.send(new GetCommand({ TableName: deps.tableName, Key: recordKey(id), ConsistentRead: true }))).Item;
  if (!item) throw new OperatorError(`recover: no recovery ${id}: list them with "atmr-dr recover status"`, 2);
  const { pk: _pk, sk: _sk, expiresAt: _ttl, ...record } = item;
  return record as RecoveryRecord;
}

/**
 * Updates a recovery's fields; with `from`, only when its status is one of those (the guard of
 * cutover and abandon: an unverified recovery cannot be cut over, a cut-over one cannot be abandoned).
 */
export async function updateRecovery(
  deps: StoreDeps,
  id: string,
  changes: Partial<Omit<RecoveryRecord, 'recoveryId'>>,
  from?: readonly RecoveryStatus[],
): Promise<RecoveryRecord> {
  const now = (deps.now ?? (() => new Date()))();
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
  try {
    const result = await deps.ddb.send(
      new UpdateCommand({
        TableName: deps.tableName,
        Key: recordKey(id),
        UpdateExpression: `SET ${sets.join(', ')}`,
        ConditionExpression: condition,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
      }),
    );
    const { pk: _pk, sk: _sk, expiresAt: _ttl, ...record } = result.Attributes ?? {};
    if (changes.status && FINAL_STATUSES.includes(changes.status)) await releaseLock(deps, id);
    return record as RecoveryRecord;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const current = await getRecovery(deps, id);
    throw new OperatorError(`recover: recovery ${id} is "${current.status}", expected ${from?.join(' or ') ?? 'to exist'}`, 3);
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
