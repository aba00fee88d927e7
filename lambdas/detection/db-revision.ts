import type { ECSClient } from '@aws-sdk/client-ecs';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Client } from 'pg';
import { currentTaskDefinition, describeRelease, describeService } from '../backout/ecs';
import { downgradeCommandLine } from '../backout/revision';
import type { BackoutSettings } from '../backout/settings';
import { latestLastKnownGood } from '../backout/state';
import { asOperatorError } from '../shared/aws-errors';
import { OperatorError } from '../shared/errors';
import type { PgConnection } from '../shared/pg-connection';
import { sqlState, UNDEFINED_TABLE } from '../shared/pg-errors';
import { queryOneStatementReadOnly } from '../shared/postgres';

/** Where the schema's revision is, as `flask db current` reads it. */
export const ALEMBIC_REVISION_SQL = 'SELECT version_num FROM alembic_version ORDER BY version_num';

/**
 * The Alembic revisions the database is at (`flask db current`): one, or one per head when the
 * migrations branch. Read in a READ ONLY transaction that is rolled back: nothing this command
 * runs may write the database it reports on. No Alembic table (exit 4) and an empty one are one
 * line each: the wrong database, or one no migration ever ran on.
 */
export async function alembicRevisions(client: Client, connection: PgConnection): Promise<string[]> {
  let rows: { version_num: string }[];
  try {
    rows = await queryOneStatementReadOnly<{ version_num: string }>(client, ALEMBIC_REVISION_SQL);
  } catch (error) {
    if (sqlState(error) !== UNDEFINED_TABLE) throw error;
    throw new OperatorError(`db revision: the database ${connection.database} on ${connection.host} has no Alembic table (alembic_version): is PGDATABASE (or --database-secret) the API's database?`, 4);
  }
  if (rows.length === 0) {
    throw new OperatorError(`db revision: the Alembic table of ${connection.database} on ${connection.host} is empty: no migration is applied (base); is PGDATABASE (or --database-secret) the API's database?`, 4);
  }
  return rows.map((row) => row.version_num);
}

/** A release and the Alembic head it declares (null: it declares none). */
export interface ReleaseHead {
  readonly taskDefinitionArn: string;
  readonly alembicHead: string | null;
}

/** What the backout knows of the API's releases; `error` when it could not be read. */
export interface RecordedHeads {
  /** The API's newest last known good (the default target of `rollback service`), null when none is recorded. */
  readonly lastKnownGood: ReleaseHead | null | { readonly error: string };
  /** The release the API service runs now (its primary deployment), with the head its task definition declares. */
  readonly running: ReleaseHead | { readonly error: string };
}

/** What recordedHeads reads: the backout's settings of the API, with the names the CLI resolved. */
export type RecordsSettings = Pick<BackoutSettings, 'environmentName' | 'clusterName' | 'tableName' | 'alembicHead'> & { readonly api: Pick<BackoutSettings['api'], 'serviceName' | 'containerName'> };

/** The API's last known good from the ops-state table and its running release from ECS, each failure kept as its line. */
export async function recordedHeads(deps: { readonly ecs: ECSClient; readonly doc: DynamoDBDocumentClient }, settings: RecordsSettings): Promise<RecordedHeads> {
  const service = settings.api.serviceName;
  const lastKnownGood = await latestLastKnownGood(deps.doc, settings.tableName, service).then(
    (record) => record && { taskDefinitionArn: record.taskDefinitionArn, alembicHead: record.alembicHead },
    (error: unknown) => ({ error: `the ops-state table ${settings.tableName} could not be read: ${asOperatorError(error).message}` }),
  );
  const running = await describeService(deps.ecs, settings, service)
    .then((ecsService) => describeRelease(deps.ecs, settings, currentTaskDefinition(ecsService), settings.api.containerName))
    .then(
      (release) => ({ taskDefinitionArn: release.taskDefinitionArn, alembicHead: release.alembicHead }),
      (error: unknown) => ({ error: `the release ${service} runs could not be read: ${asOperatorError(error).message}` }),
    );
  return { lastKnownGood, running };
}

/**
 * Where the schema stands against the last known good's head, for a script (`db revision --json`):
 * `equal` at its head; `ahead` at the head of the running release, another one; `different` at a
 * revision that is neither (Alembic ids have no order: flask db history tells whether it is ahead);
 * `not-compared` when the records do not say (not read, no last known good, no head declared).
 */
export type RevisionComparison = 'equal' | 'ahead' | 'different' | 'not-compared';

/** The line after the revision, what it says for a script, and the downgrade it gives (null: none). */
export interface PlacedRevision {
  readonly comparison: RevisionComparison;
  readonly line: string;
  readonly downgrade: string | null;
}

/**
 * The line after the revision: where it stands against the last known good's head, and the
 * downgrade to run when the schema is ahead of it. Alembic revisions are ids with no order, so
 * "ahead" is said only when the schema is at the head of the running release, a release other than
 * the last known good; a revision that is neither head is named as such, and the downgrade is given
 * for the case it is ahead (flask db history tells). A branched schema (one row per head) has each
 * head placed the same way, the ones that are not the last known good's named.
 */
export function compareWithRecords(revisions: readonly string[], heads: RecordedHeads, headSetting: string, environmentName: string): PlacedRevision {
  const lkg = heads.lastKnownGood;
  if (lkg && 'error' in lkg) return notCompared(revisions, `not compared with the last known good: ${lkg.error}`);
  if (!lkg) return notCompared(revisions, 'not compared: no last known good of the API is recorded (a release becomes one after a clean bake)');
  if (!lkg.alembicHead) return notCompared(revisions, `not compared: the last known good ${lkg.taskDefinitionArn} declares no Alembic head (${headSetting})`);
  const running = 'error' in heads.running || heads.running.taskDefinitionArn === lkg.taskDefinitionArn ? null : heads.running;
  const downgrade = downgradeCommandLine(lkg.alembicHead, running?.taskDefinitionArn ?? '<the failing release>', environmentName);
  if (revisions.length > 1) {
    const others = revisions.filter((revision) => revision !== lkg.alembicHead);
    const atRunning = (revision: string): string => (running && revision === running.alembicHead ? ` (the head of the running release ${running.taskDefinitionArn})` : '');
    if (others.length === revisions.length) {
      return { comparison: 'different', line: `${branch(revisions)}: none is the last known good's head (${lkg.alembicHead}); if they are ahead (flask db history), downgrade with ${downgrade}`, downgrade };
    }
    const named = others.map((revision) => `${revision}${atRunning(revision)}`).join(', ');
    const ahead = others.every((revision) => atRunning(revision) !== '');
    return {
      comparison: ahead ? 'ahead' : 'different',
      line: `${branch(revisions)}: ${lkg.alembicHead} is the last known good's head, ${named} ${others.length > 1 ? 'are' : 'is'} not; ${ahead ? '' : `if ${others.length > 1 ? 'they are' : 'it is'} ahead (flask db history), `}downgrade with ${downgrade}`,
      downgrade,
    };
  }
  const [revision] = revisions;
  if (revision === lkg.alembicHead) return { comparison: 'equal', line: `= the last known good's head (${lkg.taskDefinitionArn})`, downgrade: null };
  if (running && revision === running.alembicHead) {
    return { comparison: 'ahead', line: `ahead of the last known good (${lkg.alembicHead}): at the head of the running release ${running.taskDefinitionArn}; downgrade with ${downgrade}`, downgrade };
  }
  const runningNote =
    'error' in heads.running
      ? `; ${heads.running.error}`
      : heads.running.taskDefinitionArn === lkg.taskDefinitionArn
        ? ', which the service runs'
        : `; the running release ${heads.running.taskDefinitionArn} declares ${heads.running.alembicHead ?? 'no head'}`;
  return { comparison: 'different', line: `not the last known good's head (${lkg.alembicHead}${runningNote}): if it is ahead (flask db history), downgrade with ${downgrade}`, downgrade };
}

/**
 * A revision that could not be placed against the last known good: `why` says why. A branched
 * schema says so first, with its heads, in the same line.
 */
export function notCompared(revisions: readonly string[], why: string): PlacedRevision {
  return { comparison: 'not-compared', line: revisions.length > 1 ? `${branch(revisions)}, ${why}` : why, downgrade: null };
}

function branch(revisions: readonly string[]): string {
  return `${revisions.length} heads (the migrations branch: ${revisions.join(', ')})`;
}
