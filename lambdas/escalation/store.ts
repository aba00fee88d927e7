import { nowOf } from '../shared/clock';
import { BatchGetCommand, BatchGetCommandOutput, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, QueryCommandInput, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { conditionalWrite, conditionalWriteOnce, isConditionFailure } from '../shared/conditional-write';
import { operatorCommand } from '../shared/constants';
import { OperatorError } from '../shared/errors';
import { utcMinute } from '../shared/format';
import {
  Acknowledgement,
  CarriedOver,
  Incident,
  INCIDENT_RETENTION_SECONDS,
  incidentPk,
  INDEX_PK,
  META_SK,
  OPEN_PK,
  openSk,
  pageIntent,
  Resolution,
  TimelineEntry,
  WakeOutput,
} from './model';

/** The ops-state table and the clients every incident operation needs (CLI, Lambda, Slack, link). */
export interface IncidentStore {
  readonly ddb: DynamoDBDocumentClient;
  readonly tableName: string;
  /**
   * The environment of the table, named (--env) in every command a page, reply or refusal prints:
   * pasted without it, a command acts on cdk.json's default environment. The CLI gives its --env as
   * the operator typed it (none without --env, as the command was run), a Lambda its own.
   */
  readonly environmentName?: string;
  readonly sfn: SFNClient;
  readonly now?: () => Date;
}

const expiresAt = (from: Date): number => Math.floor(from.getTime() / 1000) + INCIDENT_RETENTION_SECONDS;

function toIncident(item: Record<string, unknown>): Incident {
  const paged = item.pagedLevels as Set<number> | number[] | undefined;
  return {
    id: item.id as string,
    alarmName: item.alarmName as string,
    alarmDescription: item.alarmDescription as string | undefined,
    alarmReason: item.alarmReason as string | undefined,
    openedAt: item.openedAt as string,
    status: item.status as Incident['status'],
    level: Number(item.level ?? 0),
    pagedLevels: paged ? [...paged].map(Number).sort((a, b) => a - b) : [],
    publishedPages: item.publishedPages ? [...(item.publishedPages as Set<string> | string[])] : [],
    pageIntents: item.pageIntents ? [...(item.pageIntents as Set<string> | string[])] : [],
    reminderIntents: item.reminderIntents ? [...(item.reminderIntents as Set<string> | string[])] : [],
    ack: item.ack as Acknowledgement | undefined,
    resolution: item.resolution as Resolution | undefined,
    taskToken: item.taskToken as string | undefined,
    executionArn: item.executionArn as string | undefined,
    resolutionNotifiedAt: item.resolutionNotifiedAt as string | undefined,
    lastJoinedAlarmAt: item.lastJoinedAlarmAt as string | undefined,
    joinRemindedAt: item.joinRemindedAt as string | undefined,
    levelPagedAt: item.levelPagedAt as string | undefined,
    carriedOver: item.carriedOver as CarriedOver | undefined,
  };
}

export async function getIncident(store: IncidentStore, id: string): Promise<Incident | undefined> {
  const { Item } = await store.ddb.send(new GetCommand({ TableName: store.tableName, Key: { pk: incidentPk(id), sk: META_SK }, ConsistentRead: true }));
  return Item ? toIncident(Item) : undefined;
}

export interface NewIncident {
  readonly id: string;
  readonly alarmName: string;
  readonly alarmDescription?: string;
  readonly alarmReason?: string;
  readonly openedAt: string;
  readonly carriedOver?: CarriedOver;
}

/**
 * Creates the incident once (its id is deterministic); `false` when it already existed. With
 * `{ index: false }` the caller writes the index entry itself (`indexIncident`), e.g. concurrently
 * with the start of the workflow.
 */
export async function createIncident(store: IncidentStore, incident: NewIncident, options: { index?: boolean } = {}): Promise<boolean> {
  const ttl = expiresAt(nowOf(store));
  const created = await conditionalWrite(() =>
    store.ddb.send(
      new PutCommand({
        TableName: store.tableName,
        Item: { pk: incidentPk(incident.id), sk: META_SK, ...incident, status: 'OPEN', level: 0, createdAt: nowOf(store).toISOString(), expiresAt: ttl },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    ),
  );
  if (!created) return false;
  if (options.index !== false) await indexIncident(store, incident.id, incident.alarmName);
  return true;
}

/** Lists the incident for `incident list` (a plain put: writing it again changes nothing). */
export async function indexIncident(store: IncidentStore, id: string, alarmName: string): Promise<void> {
  await store.ddb.send(new PutCommand({ TableName: store.tableName, Item: { pk: INDEX_PK, sk: id, alarmName, expiresAt: expiresAt(nowOf(store)) } }));
}

/**
 * Claims the alarm's open-incident pointer for `id`. Returns the id that holds it (`holder`): `id`
 * itself, or the open incident the alarm already has (a second ALARM of the same alarm joins that
 * one). A claim for `id` also returns the alarm's last resolved incident (`lastResolved`, written by
 * `releaseOpenPointer`): read in the same write, so the new incident can carry its climb over.
 */
export async function claimOpenPointer(store: IncidentStore, alarmName: string, id: string): Promise<{ holder: string; lastResolved?: string }> {
  try {
    const { Attributes } = await store.ddb.send(
      new UpdateCommand({
        TableName: store.tableName,
        Key: { pk: OPEN_PK, sk: openSk(alarmName) },
        UpdateExpression: 'SET incidentId = :id, expiresAt = :ttl',
        ConditionExpression: 'attribute_not_exists(incidentId) OR incidentId = :id',
        ExpressionAttributeValues: { ':id': id, ':ttl': expiresAt(nowOf(store)) },
        ReturnValues: 'ALL_OLD',
      }),
    );
    return { holder: id, lastResolved: Attributes?.lastIncidentId as string | undefined };
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return { holder: (await openIncidentOf(store, alarmName)) ?? id };
  }
}

export async function openIncidentOf(store: IncidentStore, alarmName: string): Promise<string | undefined> {
  const { Item } = await store.ddb.send(new GetCommand({ TableName: store.tableName, Key: { pk: OPEN_PK, sk: openSk(alarmName) }, ConsistentRead: true }));
  return Item?.incidentId as string | undefined;
}

export async function releaseOpenPointer(store: IncidentStore, alarmName: string, id: string): Promise<void> {
  try {
    await store.ddb.send(
      new UpdateCommand({
        TableName: store.tableName,
        Key: { pk: OPEN_PK, sk: openSk(alarmName) },
        // The incident stays named on the pointer: the alarm's next ALARM may carry its climb over.
        UpdateExpression: 'REMOVE incidentId SET lastIncidentId = :id',
        ConditionExpression: 'incidentId = :id',
        ExpressionAttributeValues: { ':id': id },
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
}

/** Ids of the incidents with an open pointer (automated actions are added to each; the sweep checks each one's run). */
export async function openIncidentIds(store: IncidentStore): Promise<string[]> {
  const ids: string[] = [];
  // Every page: the sweep (sweep.ts) must not miss the incidents past the first 1 MB of pointers.
  for await (const items of queryPages(store, { KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': OPEN_PK }, ConsistentRead: true })) {
    for (const item of items) if (typeof item.incidentId === 'string') ids.push(item.incidentId);
  }
  return ids;
}

/**
 * Adds one timeline entry, once: `key` identifies the fact (a state change's timestamp, an event id,
 * a task token), so a retried or duplicated delivery writes nothing new. `false` when it existed.
 */
export async function recordTimeline(store: IncidentStore, id: string, key: string, entry: TimelineEntry, extra: Record<string, unknown> = {}): Promise<boolean> {
  // A retried put that finds its own entry wrote it (conditionalWriteOnce): "existed" would skip a
  // reminder as already sent, or refuse an acknowledgement link as already used.
  const result = await conditionalWriteOnce(store.ddb, {
    TableName: store.tableName,
    Item: { pk: incidentPk(id), sk: `EVENT#${key}`, ...entry, ...extra, expiresAt: expiresAt(nowOf(store)) },
    ConditionExpression: 'attribute_not_exists(pk)',
  });
  return result.outcome !== 'refused';
}

/** The keys of the incident's timeline entries that start with `prefix` (facts already recorded, e.g. the levels told of the resolution). */
export async function timelineKeys(store: IncidentStore, id: string, prefix: string): Promise<string[]> {
  return (await timelineItems(store, id, prefix)).map((item) => String(item.sk).slice('EVENT#'.length));
}

/** The levels of the incident's timeline entries that start with `prefix` (e.g. the levels reminded), each once, ascending. */
export async function timelineLevels(store: IncidentStore, id: string, prefix: string): Promise<number[]> {
  const levels = (await timelineItems(store, id, prefix)).map((item) => item.level).filter((level): level is number => typeof level === 'number');
  return [...new Set(levels)].sort((a, b) => a - b);
}

/** The key and level of the incident's timeline entries that start with `prefix`. */
async function timelineItems(store: IncidentStore, id: string, prefix: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  const query = {
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :e)',
    ExpressionAttributeValues: { ':pk': incidentPk(id), ':e': `EVENT#${prefix}` },
    ExpressionAttributeNames: { '#level': 'level' },
    ProjectionExpression: 'sk, #level',
    ConsistentRead: true,
  };
  for await (const page of queryPages(store, query)) items.push(...page);
  return items;
}

export async function timeline(store: IncidentStore, id: string): Promise<TimelineEntry[]> {
  const entries: TimelineEntry[] = [];
  const query = { KeyConditionExpression: 'pk = :pk AND begins_with(sk, :e)', ExpressionAttributeValues: { ':pk': incidentPk(id), ':e': 'EVENT#' }, ConsistentRead: true };
  for await (const items of queryPages(store, query)) {
    for (const item of items) entries.push({ at: item.at as string, kind: item.kind as TimelineEntry['kind'], text: item.text as string, level: item.level as number | undefined });
  }
  return entries.sort((a, b) => a.at.localeCompare(b.at) || TIMELINE_RANK[a.kind] - TIMELINE_RANK[b.kind]);
}

/**
 * At the same instant, causes before their effects: an alarm's state change, then what it set off
 * (an automated action, a page or reminder), then what people did, the resolution last ("Alarm
 * state ... -> OK" before "Resolved (alarm OK)"). The entries come in key order otherwise, which
 * says nothing of cause (`EVENT#resolved` sorts before `EVENT#state...`); the sort is stable.
 */
const TIMELINE_RANK: Record<TimelineEntry['kind'], number> = { state: 0, action: 1, page: 2, 'page-failed': 2, reminder: 2, ack: 3, note: 4, resolved: 5 };

/** The items of one query, a page at a time (the caller may stop early). */
async function* queryPages(store: IncidentStore, query: Omit<QueryCommandInput, 'TableName' | 'ExclusiveStartKey'>): AsyncGenerator<Record<string, unknown>[]> {
  let start: Record<string, unknown> | undefined;
  do {
    const page = await store.ddb.send(new QueryCommand({ ...query, TableName: store.tableName, ExclusiveStartKey: start }));
    yield page.Items ?? [];
    start = page.LastEvaluatedKey;
  } while (start);
}

/**
 * Copies the latest joined ALARM's time into `joinRemindedAt` ('' when none joined): in the same
 * write as what tells the level (an acknowledgement, a reminder step's token), so that a join
 * claimed after that write is the one found unreminded, never one claimed before.
 */
const COVER_JOINS = 'joinRemindedAt = if_not_exists(lastJoinedAlarmAt, :noJoin)';

/**
 * Stores the token of the step now waiting, and returns the incident as it is after that write.
 * `remindsJoins`: the step reminds the acknowledging level, which covers every failure joined so far.
 * `pageIntent`: the step pages once it has stored its token (model.ts `pageIntent`); the same write
 * records that page as possibly out, while the incident is OPEN (another status pages nobody).
 */
export async function storeTaskToken(
  store: IncidentStore,
  id: string,
  taskToken: string,
  level?: number,
  options: { remindsJoins?: boolean; pageIntent?: string } = {},
): Promise<Incident> {
  const levelUpdate = level === undefined ? '' : ', #level = if_not_exists(#level, :zero)';
  const intent = options.pageIntent;
  try {
    const { Attributes } = await store.ddb.send(
      new UpdateCommand({
        TableName: store.tableName,
        Key: { pk: incidentPk(id), sk: META_SK },
        UpdateExpression: `SET taskToken = :t${levelUpdate}${options.remindsJoins ? `, ${COVER_JOINS}` : ''}${intent ? ' ADD pageIntents :intent' : ''}`,
        ConditionExpression: `attribute_exists(pk)${intent ? ' AND #status = :open' : ''}`,
        ExpressionAttributeValues: {
          ':t': taskToken,
          ...(level !== undefined && { ':zero': 0 }),
          ...(options.remindsJoins && { ':noJoin': '' }),
          ...(intent && { ':intent': new Set([intent]), ':open': 'OPEN' }),
        },
        ...((level !== undefined || intent) && { ExpressionAttributeNames: { ...(level !== undefined && { '#level': 'level' }), ...(intent && { '#status': 'status' }) } }),
        ReturnValues: 'ALL_NEW',
      }),
    );
    return toIncident(Attributes as Record<string, unknown>);
  } catch (error) {
    // Not OPEN: the step pages nobody (it wakes itself), so the token alone is stored.
    if (!intent || !isConditionFailure(error)) throw error;
    return storeTaskToken(store, id, taskToken, level, { ...options, pageIntent: undefined });
  }
}

/**
 * Adds or withdraws an intent (model.ts `pageIntent`): a reminder's, written before its publish; a
 * page's (written with its step's token, `storeTaskToken`), withdrawn once SNS has refused that page
 * (a 4xx, not a publish whose outcome is unknown: tasks.ts `page`). A withdrawn intent's level was
 * not reached by it, and is not told of the resolution for it.
 */
export async function changeIntent(store: IncidentStore, id: string, set: 'pageIntents' | 'reminderIntents', change: 'ADD' | 'DELETE', intent: string): Promise<void> {
  await store.ddb.send(
    new UpdateCommand({
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: `${change} ${set} :intent`,
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':intent': new Set([intent]) },
    }),
  );
}

/**
 * Records that `level` was paged by the step of `pageKey` (the short hash of its task token): the
 * set of levels to tell at the end, the current level (levels are paged in order, the last one
 * again, so the latest page is the highest) and when it was paged (a flapping alarm's next incident
 * carries its climb over: model.ts `climbToCarryOver`), and the step's page as published, no longer an intent.
 */
export async function recordPagedLevel(store: IncidentStore, id: string, level: number, pageKey?: string): Promise<void> {
  await store.ddb.send(
    new UpdateCommand({
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: `ADD pagedLevels :set${pageKey ? ', publishedPages :page' : ''} SET #level = :l, levelPagedAt = :at${pageKey ? ' DELETE pageIntents :intent' : ''}`,
      ExpressionAttributeNames: { '#level': 'level' },
      ExpressionAttributeValues: { ':set': new Set([level]), ':l': level, ':at': nowOf(store).toISOString(), ...(pageKey && { ':page': new Set([pageKey]), ':intent': new Set([pageIntent(level, pageKey)]) }) },
    }),
  );
}

export async function setExecutionArn(store: IncidentStore, id: string, executionArn: string): Promise<void> {
  await store.ddb.send(
    new UpdateCommand({
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: 'SET executionArn = if_not_exists(executionArn, :a)',
      ExpressionAttributeValues: { ':a': executionArn },
    }),
  );
}

/**
 * Claims the wake of one ALARM state change (its normalized timestamp `at`) joining the incident:
 * `true` for the first delivery of a state change later than every one claimed before. EventBridge
 * delivers at least once and its target retries, and a copy arriving after the woken workflow moved
 * on would find the next step's token and remind the level a second time. One attribute on the
 * incident record (not a set growing with each failure): an alarm goes back through OK between two
 * ALARMs, so a later state change is a new one, and an older one delivered late has been overtaken
 * by the newer one's reminder. Returns the claim to undo with `releaseJoinedAlarm` when the wake fails.
 *
 * Also returns the incident as the claim found it: its status and the token stored then, read in
 * the same write. A step storing its token before the claim is the one to wake; one storing it
 * after finds the join unreminded (`joinAwaitsReminder`) and reminds itself. A read before the claim
 * could see neither: the token of a step that has since stopped waiting, and no join yet.
 */
export async function claimJoinedAlarm(
  store: IncidentStore,
  id: string,
  at: string,
): Promise<{ claimed: true; previous?: string; incident: Incident } | { claimed: false; incident?: Incident }> {
  // A retried claim that finds its own claim made it (conditionalWriteOnce): "not claimed" would
  // leave the acknowledged level unwoken for this failure. The claim it replaced, needed to give it
  // back, came in the lost answer: the write keeps it beside (`previousJoinedAlarmAt`, '' for none);
  // the incident is then the one read back, after the claim.
  const result = await conditionalWriteOnce(store.ddb, {
    TableName: store.tableName,
    Key: { pk: incidentPk(id), sk: META_SK },
    UpdateExpression: 'SET lastJoinedAlarmAt = :at, previousJoinedAlarmAt = if_not_exists(lastJoinedAlarmAt, :none)',
    // Never on a resolved incident: its OK (or a human) closed it before this ALARM was recorded, so
    // the ALARM must open an incident of its own (the caller, told so by the incident read back).
    ConditionExpression: 'attribute_exists(pk) AND #status <> :resolved AND (attribute_not_exists(lastJoinedAlarmAt) OR lastJoinedAlarmAt < :at)',
    ExpressionAttributeNames: { '#status': 'status' },
    ExpressionAttributeValues: { ':at': at, ':none': '', ':resolved': 'RESOLVED' },
    ReturnValues: 'ALL_OLD',
  });
  if (result.outcome === 'refused') return { claimed: false, incident: result.item ? toIncident(result.item) : undefined };
  const item = result.item ?? {};
  const previous = result.outcome === 'written' ? item.lastJoinedAlarmAt : item.previousJoinedAlarmAt;
  return { claimed: true, previous: (previous as string | undefined) || undefined, incident: toIncident(item) };
}

/**
 * Gives back the claim of `claimJoinedAlarm` (the wake it was for failed): the retried delivery
 * claims it again and wakes the workflow. Only while no later state change has claimed it since.
 */
export async function releaseJoinedAlarm(store: IncidentStore, id: string, at: string, previous: string | undefined): Promise<void> {
  await conditionalWrite(() =>
    store.ddb.send(
      new UpdateCommand({
        TableName: store.tableName,
        Key: { pk: incidentPk(id), sk: META_SK },
        UpdateExpression: previous === undefined ? 'REMOVE lastJoinedAlarmAt' : 'SET lastJoinedAlarmAt = :previous',
        ConditionExpression: 'lastJoinedAlarmAt = :at',
        ExpressionAttributeValues: { ':at': at, ...(previous !== undefined && { ':previous': previous }) },
      }),
    ),
  );
}

/** Points the incident at the execution that now escalates it (after a hand-over). */
export async function replaceExecutionArn(store: IncidentStore, id: string, executionArn: string): Promise<void> {
  await store.ddb.send(
    new UpdateCommand({
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: 'SET executionArn = :a',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':a': executionArn },
    }),
  );
}

/**
 * Points the incident at `next` (the execution that restarts its stopped run) only while it still
 * names `current`: of two ALARMs that find the run stopped together, one restarts it, and a slow one
 * never points the incident back at an execution that has since been handed over. `false` when the
 * incident names another execution now (restarted, or handed over, by someone else).
 */
export async function claimExecutionRestart(store: IncidentStore, id: string, current: string, next: string, maxSweepRestarts?: number): Promise<boolean> {
  // The sweep's restarts are counted on the incident and capped (`maxSweepRestarts`): a run that
  // fails for a cause that persists would otherwise be restarted every 5 minutes, each restart paging
  // the next level up to the last. A joined ALARM's restart is not counted nor capped.
  const counted = maxSweepRestarts !== undefined;
  // A retried write that finds its own claim made it (conditionalWriteOnce): "refused" would start nothing.
  const result = await conditionalWriteOnce(
    store.ddb,
    {
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: counted ? 'SET executionArn = :next ADD sweepRestarts :one' : 'SET executionArn = :next',
      ConditionExpression: counted ? 'executionArn = :current AND (attribute_not_exists(sweepRestarts) OR sweepRestarts < :max)' : 'executionArn = :current',
      ExpressionAttributeValues: { ':current': current, ':next': next, ...(counted && { ':one': 1, ':max': maxSweepRestarts }) },
    },
    'restartWriteId',
  );
  return result.outcome !== 'refused';
}

/** Sets `resolutionNotifiedAt` once; `false` when the resolution was already announced. */
export async function claimResolutionNotice(store: IncidentStore, id: string): Promise<boolean> {
  return conditionalWrite(() =>
    store.ddb.send(
      new UpdateCommand({
        TableName: store.tableName,
        Key: { pk: incidentPk(id), sk: META_SK },
        UpdateExpression: 'SET resolutionNotifiedAt = :now',
        ConditionExpression: 'attribute_not_exists(resolutionNotifiedAt)',
        ExpressionAttributeValues: { ':now': nowOf(store).toISOString() },
      }),
    ),
  );
}

/**
 * Wakes the workflow step waiting on `token`. A token that no longer waits (the step timed out or
 * moved on) is not an error: the next step reads the incident's status from the table.
 */
export async function wake(store: IncidentStore, token: string | undefined, output: WakeOutput): Promise<boolean> {
  if (!token) return false;
  try {
    await store.sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) }));
    return true;
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'TaskDoesNotExist' || name === 'TaskTimedOut' || name === 'InvalidToken') return false;
    throw error;
  }
}

/**
 * Wakes as `wake` does, after the acknowledgement or resolution is written. A failed wake goes to
 * `failed` when given (a caller that says what was recorded and what was not: the CLI), else is
 * thrown (a Lambda fails its invocation and is retried).
 */
async function wakeAfterWrite(store: IncidentStore, token: string | undefined, output: WakeOutput, failed?: (error: unknown) => void): Promise<void> {
  try {
    await wake(store, token, output);
  } catch (error) {
    if (!failed) throw error;
    failed(error);
  }
}

/**
 * Moves an existing incident to `to` and stores its record (the acknowledgement or the resolution)
 * in one conditional write: only when its status is `= from` or `<> from`. `undefined` when the
 * incident is unknown or its status did not allow it (the caller explains which).
 *
 * A write retried by the SDK onto its own applied first attempt is this write (conditionalWriteOnce):
 * the caller goes on (wakes the workflow, writes the timeline, releases the open pointer) instead of
 * refusing. Its id is kept per record (`ackWriteId`, `resolutionWriteId`), so an acknowledgement
 * whose retry comes after a resolution still knows itself.
 */
async function changeStatus(
  store: IncidentStore,
  id: string,
  change: {
    to: Incident['status'];
    field: 'ack' | 'resolution';
    record: Acknowledgement | Resolution;
    onlyIf: '= :from' | '<> :from';
    from: Incident['status'];
    /** A further condition of the same write (`ResolveGuard`). */
    guard?: { expression: string; values: Record<string, unknown> };
  },
): Promise<{ changed: Incident } | { refused: Incident | undefined }> {
  // An acknowledgement covers the failures joined while the incident climbed (its pages told of them).
  const coverJoins = change.field === 'ack';
  const result = await conditionalWriteOnce(
    store.ddb,
    {
      TableName: store.tableName,
      Key: { pk: incidentPk(id), sk: META_SK },
      UpdateExpression: `SET #status = :to, #field = :record${coverJoins ? `, ${COVER_JOINS}` : ''}`,
      ConditionExpression: `attribute_exists(pk) AND #status ${change.onlyIf}${change.guard ? ` AND (${change.guard.expression})` : ''}`,
      ExpressionAttributeNames: { '#status': 'status', '#field': change.field },
      ExpressionAttributeValues: { ':to': change.to, ':from': change.from, ':record': change.record, ...(coverJoins && { ':noJoin': '' }), ...change.guard?.values },
      ReturnValues: 'ALL_NEW',
    },
    `${change.field}WriteId`,
  );
  if (result.outcome === 'refused') return { refused: result.item ? toIncident(result.item) : undefined };
  return { changed: toIncident(result.item ?? {}) };
}

async function explainRefusal(store: IncidentStore, id: string, verb: 'acknowledge' | 'resolve'): Promise<never> {
  const incident = await getIncident(store, id);
  if (!incident) throw new OperatorError(`no incident ${id}: check the id with \`${operatorCommand(store.environmentName, 'incident list --open')}\``, 4);
  if (incident.status === 'RESOLVED') {
    const r = incident.resolution;
    throw new OperatorError(`incident ${id} is already resolved${r ? ` (${r.how}, ${utcMinute(Date.parse(r.at))}, by ${r.by})` : ''}: nothing to ${verb}`, 5);
  }
  const a = incident.ack;
  throw new OperatorError(`incident ${id} is already acknowledged${a ? ` by ${a.by} at ${utcMinute(Date.parse(a.at))} (${a.via})` : ''}`, 5);
}

/**
 * Acknowledges an open incident (once): the climb stops and the acknowledging level gets the
 * reminders. Refuses an unknown, already acknowledged or resolved incident with one line.
 */
export async function acknowledgeIncident(store: IncidentStore, id: string, ack: Omit<Acknowledgement, 'at'>, options: { wakeFailed?: (error: unknown) => void } = {}): Promise<Incident> {
  const at = nowOf(store).toISOString();
  const record: Acknowledgement = { ...ack, at };
  const change = await changeStatus(store, id, { to: 'ACKED', field: 'ack', record, onlyIf: '= :from', from: 'OPEN' });
  if (!('changed' in change)) return explainRefusal(store, id, 'acknowledge');
  const incident = change.changed;
  const level = ack.level !== undefined ? ` (level ${ack.level})` : '';
  await recordTimeline(store, id, 'ack', { at, kind: 'ack', text: `Acknowledged by ${ack.by} via ${ack.via}${level}`, level: ack.level });
  await wakeAfterWrite(store, incident.taskToken, { outcome: 'ack' }, options.wakeFailed);
  return incident;
}

/**
 * What must still hold for an automatic resolution: no ALARM of the alarm since the OK it acts on.
 * A state alarm's new ALARM joins the incident still open (`claimJoinedAlarm` records its time), and
 * resolving that incident afterwards would leave the alarm in ALARM with no incident paging anyone.
 * - `okAt`: the OK state change's time (ingest). It resolves only when newer than the incident's own
 *   ALARM and every joined one: a late or redelivered older OK is only recorded.
 * - `joinedAlarmSeen`: the `lastJoinedAlarmAt` the workflow's check read before finding the alarm OK
 *   (`''`: none). It resolves only when no ALARM has joined since.
 */
export type ResolveGuard = { readonly okAt: string } | { readonly joinedAlarmSeen: string };

function guardCondition(guard: ResolveGuard): { expression: string; values: Record<string, unknown> } {
  if ('okAt' in guard) {
    return { expression: 'openedAt < :okAt AND (attribute_not_exists(lastJoinedAlarmAt) OR lastJoinedAlarmAt < :okAt)', values: { ':okAt': guard.okAt } };
  }
  // Any joined time is later than '': none seen means none may have joined.
  return { expression: 'attribute_not_exists(lastJoinedAlarmAt) OR lastJoinedAlarmAt <= :seen', values: { ':seen': guard.joinedAlarmSeen } };
}

/** Resolves an incident (once) and wakes the workflow, which tells every level that was paged. */
export async function resolveIncident(
  store: IncidentStore,
  id: string,
  resolution: Omit<Resolution, 'at'>,
  options: { quietIfResolved?: boolean; wakeFailed?: (error: unknown) => void } = {},
): Promise<Incident | undefined> {
  const outcome = await resolveUnlessAlarmAgain(store, id, resolution, undefined, options.wakeFailed);
  if (outcome.outcome === 'resolved') return outcome.incident;
  if (options.quietIfResolved && outcome.outcome === 'already resolved') return undefined;
  return explainRefusal(store, id, 'resolve');
}

/**
 * Resolves an incident as `resolveIncident` does, under `guard` when given: `alarm again` (nothing
 * written) when an ALARM of the alarm came after the OK the resolution acts on, `already resolved`
 * when someone resolved it. Throws, naming why, for an unknown incident. `wakeFailed`: as for
 * `wakeAfterWrite`.
 */
export async function resolveUnlessAlarmAgain(
  store: IncidentStore,
  id: string,
  resolution: Omit<Resolution, 'at'>,
  guard?: ResolveGuard,
  wakeFailed?: (error: unknown) => void,
): Promise<{ outcome: 'resolved' | 'alarm again'; incident: Incident } | { outcome: 'already resolved' }> {
  const at = nowOf(store).toISOString();
  const record: Resolution = { ...resolution, at };
  const change = await changeStatus(store, id, { to: 'RESOLVED', field: 'resolution', record, onlyIf: '<> :from', from: 'RESOLVED', guard: guard && guardCondition(guard) });
  if ('refused' in change) {
    if (!change.refused) return explainRefusal(store, id, 'resolve');
    if (change.refused.status === 'RESOLVED') return { outcome: 'already resolved' };
    return { outcome: 'alarm again', incident: change.refused };
  }
  const incident = change.changed;
  await recordTimeline(store, id, 'resolved', { at, kind: 'resolved', text: `Resolved (${resolution.how}) by ${resolution.by} via ${resolution.via}${resolution.note ? `; note: ${resolution.note}` : ''}` });
  await releaseOpenPointer(store, incident.alarmName, id);
  await wakeAfterWrite(store, incident.taskToken, { outcome: 'resolved' }, wakeFailed);
  return { outcome: 'resolved', incident };
}

/** Every incident, newest first (the index holds ids, which start with their UTC time). */
export async function listIncidents(store: IncidentStore, options: { open?: boolean; limit?: number } = {}): Promise<Incident[]> {
  const ids: string[] = [];
  for await (const items of queryPages(store, { KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': INDEX_PK }, ScanIndexForward: false })) {
    for (const item of items) ids.push(item.sk as string);
    if (ids.length >= (options.limit ?? 500)) break;
  }
  const incidents: Incident[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100);
    let keys: Record<string, unknown>[] | undefined = chunk.map((id) => ({ pk: incidentPk(id), sk: META_SK }));
    while (keys && keys.length > 0) {
      const result: BatchGetCommandOutput = await store.ddb.send(new BatchGetCommand({ RequestItems: { [store.tableName]: { Keys: keys, ConsistentRead: true } } }));
      for (const item of result.Responses?.[store.tableName] ?? []) incidents.push(toIncident(item));
      keys = result.UnprocessedKeys?.[store.tableName]?.Keys;
    }
  }
  return incidents
    .filter((incident) => !options.open || incident.status !== 'RESOLVED')
    .sort((a, b) => b.id.localeCompare(a.id))
    .slice(0, options.limit ?? 500);
}
