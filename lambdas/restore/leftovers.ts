/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This is the leftovers, beside the guards, before any
 * download: the names a restore gives the databases beside the target (its staging database, the
 * target set aside by the swap), and what an earlier restore left under them. It creates nothing,
 * and drops nothing but a killed load's staging database; the target's own guards are guards.ts'.
 */

import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { dropDatabaseStatement, quoteIdent, quoteLiteral, reopenDatabaseStatement } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { utcMinute } from '../shared/format';
import { APPLICATION_NAME } from '../shared/pg-connection';
import { CLIENT_SESSION } from './guards';
import { boundedQuery, dropDatabase, GUARD_READ_BOUND_MS, isSuperuser, NoAnswer, stopOnNoAnswer } from './session';

/** Length of a sibling's id: the last 8 base-36 digits of the time in milliseconds, and 2 random ones. */
const SIBLING_ID_LENGTH = 10;
/**
 * Length of a sibling's mark: hex digits of the sha256 of the whole target name. The name is cut
 * to fit 63 bytes, so two targets that begin alike (`..._daily`, `..._hourly`) would otherwise
 * give siblings that look the same, and a restore into one took the other's staging database (a
 * live restore's, which it dropped) or `_old_` (whose RENAME it advised) for its own.
 */
const SIBLING_MARK_LENGTH = 8;

/**
 * `restore`: the staging database; `old`: the target set aside by the swap (what it was before the
 * restore); `undone`: the restored copy set aside by the undo a restore prints, a name of its own so
 * that the next restore does not take it for what the target was.
 */
type SiblingKind = 'restore' | 'old' | 'undone';

const SIBLING_KINDS: readonly SiblingKind[] = ['restore', 'old', 'undone'];

/**
 * A sibling name, unique per run, short enough for PostgreSQL's 63-byte limit:
 * `<target>_<kind>_<mark>_<id>` (`<target>_restore_...` the staging database, `<target>_old_...`
 * the target set aside during the swap, `<target>_undone_...` the restored copy set aside by an
 * undo), the target cut to fit; the mark names the whole target.
 */
export function stagingName(target: string, kind: SiblingKind = 'restore'): string {
  return `${siblingPrefix(target, kind)}${runId()}`;
}

/**
 * An id unique per run, SIBLING_ID_LENGTH base-36 digits: the last 8 of the time `at` (ms), which
 * idTime reads back, and 2 random ones. The restore test's scratch database is named with one too.
 */
export function runId(at = Date.now()): string {
  return `${at.toString(36).slice(-8)}${Math.floor(Math.random() * 1296).toString(36).padStart(2, '0')}`;
}

/** The part of a sibling name known before it is made (`<target>_old_<mark>_`): the restore's prompt names the database to come. */
export function siblingPrefix(target: string, kind: SiblingKind): string {
  const mark = createHash('sha256').update(target).digest('hex').slice(0, SIBLING_MARK_LENGTH);
  const marker = `_${kind}_${mark}_`;
  return `${target.slice(0, 63 - marker.length - SIBLING_ID_LENGTH)}${marker}`;
}

/**
 * The comment a restore refused at swap time gives the staging database it keeps (keepCheckedCopy):
 * how the next restore tells that loaded and checked copy from a load that never finished.
 */
const CHECKED_COPY = 'atmr-dr: checked copy of backup ';

/**
 * Keeps `staging`, loaded and its row counts checked, when the swap's guards refused (a client
 * connected to the target during the load): a new restore would download and load it all again.
 * Marks it with CHECKED_COPY as its comment (the one it had, the target's, is given back by the
 * statements the line names) and returns what the operator reads: where it is, the statements that
 * put it in place (docs/restore.md, "Putting a checked copy in place"), and the DROP when it is not wanted.
 */
export async function keepCheckedCopy(admin: Client, staging: string, target: string, manifestKey: string, superuser: boolean): Promise<string> {
  const { rows } = await boundedQuery<{ comment: string | null }>(
    admin,
    "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
    GUARD_READ_BOUND_MS,
    [staging],
    `the read of the comment of "${staging}"`,
  );
  const comment = rows[0]?.comment ?? null;
  await boundedQuery(admin, `COMMENT ON DATABASE ${quoteIdent(staging)} IS ${quoteLiteral(`${CHECKED_COPY}${manifestKey}, complete, not swapped in`)}`, GUARD_READ_BOUND_MS);
  const aside = stagingName(target, 'old');
  return (
    `the restored copy, loaded and its row counts checked, is kept as "${staging}", not swapped in: to put it in place, connected to another database (psql -d postgres), ` +
    `ALTER DATABASE ${quoteIdent(target)} ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${quoteLiteral(target)} AND backend_type = 'client backend' AND pid <> pg_backend_pid(); ` +
    `ALTER DATABASE ${quoteIdent(target)} RENAME TO ${quoteIdent(aside)}; ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)}; COMMENT ON DATABASE ${quoteIdent(target)} IS ${comment === null ? 'NULL' : quoteLiteral(comment)}; ` +
    `or rerun with --terminate-connections (a new download and load); if it is not wanted, ${dropDatabaseStatement(staging, superuser)}`
  );
}

interface Sibling {
  readonly kind: SiblingKind;
  /** When its id was made (its first 8 base-36 digits): ids sort by it. */
  readonly time: number;
}

/** When a run id (runId) was made, ms. */
export const idTime = (id: string): number => parseInt(id.slice(0, 8), 36);

/** Whether `name` is a sibling of `target`, of which kind. */
export function siblingOf(name: string, target: string): Sibling | undefined {
  for (const kind of SIBLING_KINDS) {
    const prefix = siblingPrefix(target, kind);
    const id = name.slice(prefix.length);
    if (name.startsWith(prefix) && new RegExp(`^[0-9a-z]{${SIBLING_ID_LENGTH}}$`).test(id)) return { kind, time: idTime(id) };
  }
  return undefined;
}

/**
 * What an earlier restore into `target` left behind: when it was killed (kill -9, a crashed runner)
 * before its own cleanup, and the database it replaced, which a restore keeps unless told to drop
 * it. Runs before any download, and creates or drops nothing but a killed load's staging database:
 * - the target is missing and `<target>_old_<mark>_<id>` exists: the restore died between the
 *   swap's two renames and that database holds the data (or a restore kept it and the target was
 *   dropped since). Refused (a new restore would hide it further), with the statements that put it
 *   back or drop it, and the restore into a new name then renamed that puts the backup in its place.
 * - the target exists but does not accept connections (the swap with --terminate-connections closes
 *   it first): refused, with the statement that reopens it.
 * - a staging database still loaded by atmr-dr sessions only: the pg_restore (or psql) of a killed
 *   restore, which goes on loading after a kill -9 of its CLI. The caller holds the target's lock,
 *   so no live restore into this target owns it: it is dropped WITH (FORCE), which ends those
 *   sessions (and only sessions of that database), as the killed restore's own cleanup would have.
 * - any other staging database, `<target>_old_<mark>_<id>` beside the target (a replaced
 *   database kept on purpose, or one whose drop failed), or `<target>_undone_<mark>_<id>` (the
 *   restored copy the printed undo of a restore set aside): a warning with the DROP to run, never
 *   dropped here (a finished load may be wanted, a kept copy is the way back; someone else is
 *   connected to it). The warning counts the sessions connected to it.
 * Its reads have `boundMs` each for their answer (GUARD_READ_BOUND_MS; the tests' is shorter): a
 * server that accepts the connection but does not answer them ends it with one line, and `admin` is
 * ended (boundedQuery: the session connects again before its next statement). So is a leftover's
 * DROP that got no answer: nothing more can be sent on `admin`, and the server is not answering.
 */
export async function checkLeftovers(admin: Client, target: string, warn: (line: string) => void, boundMs = GUARD_READ_BOUND_MS): Promise<void> {
  await stopOnNoAnswer(
    () => checkLeftoversReads(admin, target, warn, boundMs),
    (why) => `cannot look for what an earlier restore into "${target}" left behind: ${why}, then rerun the restore; nothing was created: "${target}" untouched`,
  );
}

async function checkLeftoversReads(admin: Client, target: string, warn: (line: string) => void, boundMs: number): Promise<void> {
  // Only under the lock of openAdminSession: without it, the staging database may be a live restore's.
  // Candidates by prefix (LIKE, with `_` and `%` escaped: target names contain `_`), then exact
  // names in code: the id must be base-36 digits, so `atmr_old_2024_11_30` is not taken for one.
  const prefixes = SIBLING_KINDS.map((kind) => siblingPrefix(target, kind));
  const { rows } = await boundedQuery<{ datname: string; datallowconn: boolean; sessions: number; comment: string | null }>(
    admin,
    `SELECT datname, datallowconn, (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = d.datname AND ${CLIENT_SESSION}) AS sessions,
            shobj_description(d.oid, 'pg_database') AS comment
       FROM pg_database d WHERE datname = $1 OR datname LIKE ANY ($2::text[])
      ORDER BY datname`,
    boundMs,
    [target, prefixes.map((prefix) => `${prefix.replace(/[\\%_]/g, '\\$&')}%`)],
    `the read of the databases named after "${target}" (pg_database, pg_stat_activity)`,
  );
  const targetRow = rows.find((r) => r.datname === target);
  const targetExists = targetRow !== undefined;
  const leftovers = rows
    .filter((r) => r.datname !== target)
    .flatMap((r) => {
      const sibling = siblingOf(r.datname, target);
      // `old` and `undone` are set aside, kept on purpose: only a staging database is ever dropped here.
      return sibling ? [{ ...r, ...sibling, old: sibling.kind === 'old', aside: sibling.kind !== 'restore' }] : [];
    });
  // A restore with --terminate-connections killed during its swap leaves the target closed: the
  // application cannot connect to it, and the guards below could not look inside it either.
  if (targetRow && !targetRow.datallowconn) {
    throw new OperatorError(
      `target database "${target}" does not accept connections (ALLOW_CONNECTIONS false: a restore with --terminate-connections killed during its swap leaves it so, and its clients cannot connect either): reopen it with ${reopenDatabaseStatement(target)}, then rerun the restore`,
      2,
    );
  }
  // The newest `_old_` (by the time its id was made) is the last database the target was.
  const kept = leftovers.filter((r) => r.old).sort((a, b) => a.time - b.time);
  const holder = kept.at(-1);
  if (!targetExists && holder) {
    const reopen = holder.datallowconn ? '' : ` and ${reopenDatabaseStatement(target)}`;
    const when = `set aside ${utcMinute(holder.time)}${kept.length > 1 ? `; ${kept.length} kept copies` : ''}`;
    // A kept copy may be older than the backup being restored: the backup can go in under the
    // target's name without renaming or dropping any kept copy, into a name no database has.
    const restored = await freeRestoredName(admin, target, boundMs);
    throw new OperatorError(
      `target database "${target}" is missing; the newest copy an earlier restore kept is "${holder.datname}" (${when}), left by a restore stopped in the middle of its swap (or kept by a restore that replaced it, if "${target}" was dropped since): put it back with ALTER DATABASE ${quoteIdent(holder.datname)} RENAME TO ${quoteIdent(target)}${reopen}, or if it is not wanted DROP DATABASE ${quoteIdent(holder.datname)}; then rerun the restore; or, to have the backup as "${target}" and leave "${holder.datname}" as it is, restore into a new name (e.g. --target-db ${restored}), then ALTER DATABASE ${quoteIdent(restored)} RENAME TO ${quoteIdent(target)}`,
      2,
    );
  }
  for (const { datname, old, aside, sessions, time, comment } of leftovers) {
    const named = `"${datname}"`;
    // A staging database kept on purpose is complete (keepCheckedCopy marked it); any other one is
    // a load that did not finish (a crash, a kill, a cleanup that failed): maybe incomplete.
    const checked = !aside && comment?.startsWith(CHECKED_COPY) ? comment.slice(CHECKED_COPY.length) : undefined;
    // The time tells the kept copies apart: which one is what the target was before the damage.
    const what = old
      ? `holds what "${target}" was before an earlier restore replaced it (set aside ${utcMinute(time)})`
      : aside
        ? `holds the copy an earlier restore put in place, set aside by its undo (set aside ${utcMinute(time)})`
        : checked !== undefined
        ? `is a checked copy of backup ${checked} (kept by an earlier restore into "${target}" refused at its swap)`
        : `is the staging database of an earlier restore into "${target}"`;
    const clients =
      sessions === 0
        ? []
        : (
            await boundedQuery<{ pid: number; application: string }>(
              admin,
              `SELECT pid, application_name AS application FROM pg_stat_activity WHERE datname = $1 AND ${CLIENT_SESSION} ORDER BY pid`,
              boundMs,
              [datname],
              `the read of the sessions in "${datname}" (pg_stat_activity)`,
            )
          ).rows;
    // Read only when a line below gives a DROP for a database sessions are in (dropDatabaseStatement).
    const drop = async (): Promise<string> => dropDatabaseStatement(datname, await isSuperuser(admin, boundMs));
    if (clients.length === 0) {
      const state = aside ? '' : checked !== undefined ? ' (no session is connected to it)' : ' (no session is connected to it): it may be incomplete, never verified (a load stopped by a crash or a kill, or whose cleanup failed)';
      const use = aside || checked !== undefined ? 'when it is not needed' : 'do not use it';
      warn(`${named} ${what}${state}; left in place: ${use}, DROP DATABASE ${quoteIdent(datname)}`);
      continue;
    }
    if (!aside && checked === undefined && clients.every((c) => c.application === APPLICATION_NAME)) {
      const pids = clients.map((c) => c.pid).join(', ');
      const dropped = await dropDatabase(admin, datname).then(
        (way) => ({ way }),
        (error: unknown) => {
          // Unanswered, it ended `admin` (boundedQuery), which the line below would need.
          if (error instanceof NoAnswer) throw error;
          return { error: oneLine(error) };
        },
      );
      // The line names the statement that ran: WITH (FORCE) is refused to a role that is not a
      // superuser while an autovacuum worker is inside, and then its sessions were ended first.
      const how =
        'way' in dropped && dropped.way === 'plain'
          ? 'ended its sessions (pg_terminate_backend) and dropped it with a plain DROP DATABASE (WITH (FORCE) is refused to this role while an autovacuum worker is inside)'
          : 'dropped it WITH (FORCE)';
      warn(
        'way' in dropped
          ? `"${datname}" ${what} that was killed, and its load was still running (session(s) ${pids}): ${how}, which ended that load`
          : `${named} ${what} that was killed, and its load is still running (session(s) ${pids}); could not drop it (${dropped.error}): to stop that load and drop it, ${await drop()}`,
      );
      continue;
    }
    const who = aside ? 'something still uses it' : `${[...new Set(clients.map((c) => c.application || '?'))].slice(0, 3).join(', ')}: not only a killed restore's`;
    warn(`${named} ${what} and ${clients.length} session(s) are connected to it (${who}); left in place: to stop them and drop it, ${await drop()}`);
  }
}

/**
 * The name a missing target's refusal suggests for the backup: `<target>_restored`, or with a
 * number when that one exists (an earlier restore into it, often), cut to fit 63 characters. A
 * name taken would be refused by the restore's own guard (not empty: --force) or overwrite a copy.
 */
async function freeRestoredName(admin: Client, target: string, boundMs: number): Promise<string> {
  const candidates = ['', ...Array.from({ length: 9 }, (_, i) => `_${i + 2}`), `_${runId()}`].map((n) => `${target.slice(0, 63 - `_restored${n}`.length)}_restored${n}`);
  const { rows } = await boundedQuery<{ datname: string }>(
    admin,
    'SELECT datname FROM pg_database WHERE datname = ANY ($1::text[])',
    boundMs,
    [candidates],
    `the read of the names free for the backup beside "${target}" (pg_database)`,
  );
  const taken = new Set(rows.map((r) => r.datname));
  return candidates.find((name) => !taken.has(name)) ?? candidates[candidates.length - 1];
}
