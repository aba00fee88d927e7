import type { Client } from 'pg';
import { oneLine } from '../shared/errors';
import { formatSeconds } from '../shared/format';
import { APPLICATION_NAME, connectTo, type PgConnection } from '../shared/pg-connection';

/**
 * What a backup waits for when its dump stands still. pg_dump locks every table it dumps before it
 * writes a byte, and a table another session holds ACCESS EXCLUSIVE (a migration, VACUUM FULL, a
 * LOCK TABLE in a transaction left open) holds it there for up to the lock wait bound: the progress
 * line read "0 B dumped, 0 B/s" for five minutes, saying neither that the run waits nor for whom.
 * This reads it from the server: a session of this run (application_name atmr-dr, this role, this
 * database) waiting on a lock, the table, and the first session that blocks it.
 */
export interface LockWait {
  readonly table: string | null;
  readonly waitedSeconds: number;
  readonly blockerPid: number;
  /** Sessions blocking the waiter besides blockerPid. */
  readonly otherBlockers: number;
  readonly blockerRole: string | null;
  readonly blockerApplication: string | null;
  /** NULL when this role may not read the other session's state (not the same role, no pg_read_all_stats). */
  readonly blockerState: string | null;
  readonly blockerTransactionSeconds: number | null;
}

/** The table session `w` waits to lock, with its schema whatever the search_path (regclass would drop a schema in the path). */
const WAITED_TABLE_SQL = `(SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
          FROM pg_catalog.pg_locks l
          JOIN pg_catalog.pg_class c ON c.oid = l.relation
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE l.pid = w.pid AND NOT l.granted AND l.locktype = 'relation' LIMIT 1) AS table`;

/**
 * The oldest waiter first: pg_dump's LOCK TABLE and the row counts wait on the same table, and the
 * first to queue names it. pg_blocking_pids lists the holders and the requests queued before it.
 */
const LOCK_WAIT_SQL = `
SELECT ${WAITED_TABLE_SQL},
       floor(extract(epoch FROM now() - w.query_start))::int AS waited_seconds,
       blockers[1] AS blocker_pid,
       cardinality(blockers) - 1 AS other_blockers,
       b.usename AS blocker_role,
       b.application_name AS blocker_application,
       b.state AS blocker_state,
       floor(extract(epoch FROM now() - b.xact_start))::int AS blocker_transaction_seconds
FROM pg_catalog.pg_stat_activity w
CROSS JOIN LATERAL pg_catalog.pg_blocking_pids(w.pid) AS blockers
LEFT JOIN pg_catalog.pg_stat_activity b ON b.pid = blockers[1]
WHERE w.datname = current_database() AND w.usename = current_user AND w.application_name = $1
  AND w.pid <> pg_backend_pid() AND w.wait_event_type = 'Lock' AND cardinality(blockers) > 0
ORDER BY w.query_start
LIMIT 1`;

interface LockWaitRow {
  table: string | null;
  waited_seconds: number;
  blocker_pid: number;
  other_blockers: number;
  blocker_role: string | null;
  blocker_application: string | null;
  blocker_state: string | null;
  blocker_transaction_seconds: number | null;
}

export async function readLockWait(client: Client): Promise<LockWait | undefined> {
  const row = (await client.query<LockWaitRow>(LOCK_WAIT_SQL, [APPLICATION_NAME])).rows[0];
  if (!row) return undefined;
  return {
    table: row.table,
    waitedSeconds: row.waited_seconds,
    blockerPid: row.blocker_pid,
    otherBlockers: row.other_blockers,
    blockerRole: row.blocker_role,
    blockerApplication: row.blocker_application,
    blockerState: row.blocker_state,
    blockerTransactionSeconds: row.blocker_transaction_seconds,
  };
}

/**
 * "waiting 14 s for a lock on public.rides held by pid 4242 (role app, application "psql", idle in
 * transaction, transaction open 3 min 2 s); the backup gives up at 5 min: end that session (SELECT
 * pg_terminate_backend(4242)) or wait for it"
 */
export function describeLockWait(wait: LockWait, lockWaitMs: number): string {
  const about = [
    wait.blockerRole && `role ${wait.blockerRole}`,
    wait.blockerApplication && `application "${wait.blockerApplication}"`,
    wait.blockerState,
    wait.blockerTransactionSeconds !== null && `transaction open ${formatSeconds(wait.blockerTransactionSeconds)}`,
  ].filter(Boolean);
  const others = wait.otherBlockers > 0 ? ` and ${wait.otherBlockers} more` : '';
  return (
    `waiting ${formatSeconds(wait.waitedSeconds)} for a lock on ${wait.table ?? 'a table'} held by pid ${wait.blockerPid}${about.length ? ` (${about.join(', ')})` : ''}${others}; ` +
    `the backup gives up at ${formatSeconds(Math.round(lockWaitMs / 1000))}: end that session (SELECT pg_terminate_backend(${wait.blockerPid})) or wait for it`
  );
}

/** The pause after a failed look, doubled by each further failure in a row up to LOOK_RETRY_MAX_MS. */
const LOOK_RETRY_FIRST_MS = 1000;
const LOOK_RETRY_MAX_MS = 30_000;

/** One look: what it reads, and what its owner does when it fails. */
interface Look {
  readonly read: (client: Client) => Promise<void>;
  readonly onFailure: () => void;
}

/**
 * Looks at the server, at most one at a time, on a connection of its own opened at the first look
 * (a backup that never needs one opens none). One per attempt, shared by its watches (the progress
 * line's LockWaitWatch and the LockCycleWatch): a stalled dump watched by a person then holds one
 * side connection, not one per watch. Each watch joins it and leaves it when done; the connection
 * is closed once the last has left (or close() ends the attempt's looks). A look asked for while
 * another watch's is under way runs right after it, so that neither watch's looks are skipped for
 * as long as the other keeps looking. A look that fails (the connection refused, or ended by the
 * server, a look past its statement timeout) never fails the backup: its connection is dropped and
 * the looks pause, 1 s after the first failure in a row, doubling up to LOOK_RETRY_MAX_MS, then a
 * later tick opens a new one. Giving up for good would leave a standoff (LockCycle) to pg_dump's
 * lock wait bound, the application's statement standing still for 5 minutes, after one refused
 * connection (a server briefly at max_connections, a side session someone ended).
 */
export class SideLooks {
  private client: Client | undefined;
  /** The watch whose look is under way, if any. */
  private looking: object | undefined;
  /** The next look of each other watch that asked meanwhile, in the order they asked. */
  private readonly pending = new Map<object, Look>();
  private members = 0;
  private stopped = false;
  /** Failed looks in a row, and when (epoch ms) the looks may resume after the last of them. */
  private failures = 0;
  private resumeAt = 0;

  constructor(private readonly connection: PgConnection) {}

  get closed(): boolean {
    return this.stopped;
  }

  /**
   * Watch `owner` starts using the looks; the returned function is its leave (once is enough, more
   * are ignored), which drops a look of its still waiting for its turn.
   */
  join(owner: object): () => Promise<void> {
    this.members += 1;
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      this.pending.delete(owner);
      this.members -= 1;
      if (this.members === 0) await this.close();
    };
  }

  /**
   * Runs `read` for `owner` now, or once the look under way is done when it is another watch's
   * (`owner`'s own under way answers for this one); `onFailure` when it fails.
   */
  look(owner: object, read: (client: Client) => Promise<void>, onFailure: () => void): void {
    if (this.stopped || this.looking === owner || Date.now() < this.resumeAt) return;
    if (this.looking) {
      this.pending.set(owner, { read, onFailure });
      return;
    }
    this.run(owner, { read, onFailure });
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.pending.clear();
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private run(owner: object, look: Look): void {
    this.looking = owner;
    void this.lookOnce(look).finally(() => {
      this.looking = undefined;
      const next = this.pending.entries().next();
      if (next.done || this.stopped) return;
      if (Date.now() < this.resumeAt) {
        this.pending.clear();
        return;
      }
      const [nextOwner, nextLook] = next.value;
      this.pending.delete(nextOwner);
      this.run(nextOwner, nextLook);
    });
  }

  private async lookOnce({ read, onFailure }: Look): Promise<void> {
    let opened: Client | undefined;
    try {
      if (!this.client) {
        opened = await connectTo(this.connection);
        // A look that cannot answer in 2 s is not worth a line that would arrive stale.
        await opened.query("SET statement_timeout = '2s'");
        // Checked after the SET too: looks closed meanwhile would never end a connection kept now.
        if (this.stopped) {
          await opened.end().catch(() => undefined);
          return;
        }
        this.client = opened;
      }
      if (!this.stopped) await read(this.client);
      this.failures = 0;
    } catch {
      onFailure();
      this.failures += 1;
      this.resumeAt = Date.now() + Math.min(LOOK_RETRY_MAX_MS, LOOK_RETRY_FIRST_MS * 2 ** (this.failures - 1));
      // A connection that failed a look may be dead (ended by the server): the next look opens another.
      const client = this.client ?? opened;
      this.client = undefined;
      await client?.end().catch(() => undefined);
    }
  }
}

/** The progress line's look: what a standing-still dump waits for (readLockWait). */
export class LockWaitWatch {
  private readonly leave: () => Promise<void>;
  private latest: string | undefined;

  constructor(
    private readonly looks: SideLooks,
    private readonly lockWaitMs: number,
  ) {
    this.leave = looks.join(this);
  }

  /** The last look's line, until clear(). */
  get current(): string | undefined {
    return this.latest;
  }

  /** The dump moved: whatever it waited for is over. */
  clear(): void {
    this.latest = undefined;
  }

  look(): void {
    this.looks.look(
      this,
      async (client) => {
        const wait = await readLockWait(client);
        if (!this.looks.closed) this.latest = wait && describeLockWait(wait, this.lockWaitMs);
      },
      () => (this.latest = undefined),
    );
  }

  /** Done looking (the side connection closes once the other watch is done too). */
  close(): Promise<void> {
    return this.leave();
  }
}

/**
 * A wait PostgreSQL's deadlock detector does not see. The run's snapshot session holds every table
 * ACCESS SHARE from before pg_dump starts (counted-snapshot.ts). A TRUNCATE, or an ALTER TABLE that
 * rewrites, issued by the application in between queues behind that lock; pg_dump's own ACCESS
 * SHARE request on the same table then queues behind the TRUNCATE (the server grants in queue
 * order). The snapshot session waits for pg_dump, pg_dump for the TRUNCATE, the TRUNCATE for the
 * snapshot session: nobody moves, and the detector sees no cycle, because the snapshot session is
 * not waiting on a lock but on its client. The TRUNCATE, and every query of the application queued
 * behind it on that table, stood still until pg_dump's lock wait bound (5 minutes) failed the run.
 */
export interface LockCycle {
  /** The table pg_dump waits for. */
  readonly table: string | null;
  /** The session between them (the application's TRUNCATE). */
  readonly pid: number;
  /** Its statement; NULL when this role may not read it (not the same role, no pg_read_all_stats). */
  readonly query: string | null;
  readonly application: string | null;
}

/**
 * A session of this tool (pg_dump: application_name atmr-dr, this role, this database, not the
 * snapshot session `$2`) waiting on a lock, held up by a session (holder or request queued before
 * it, pg_blocking_pids) that is itself held up by the snapshot session. Another backup's pg_dump
 * of the same database matches too: the session between them waits for this run all the same, and
 * the cost of ending this attempt for it is one new snapshot.
 */
const LOCK_CYCLE_SQL = `
SELECT ${WAITED_TABLE_SQL},
       x.pid,
       CASE WHEN x.query LIKE '<%' THEN NULL ELSE x.query END AS query,
       x.application_name AS application
FROM pg_catalog.pg_stat_activity w
JOIN pg_catalog.pg_stat_activity x ON x.pid = ANY (pg_catalog.pg_blocking_pids(w.pid))
WHERE w.datname = current_database() AND w.usename = current_user AND w.application_name = $1
  AND w.pid <> $2 AND w.wait_event_type = 'Lock'
  AND $2 = ANY (pg_catalog.pg_blocking_pids(x.pid))
LIMIT 1`;

export async function readLockCycle(client: Client, snapshotPid: number): Promise<LockCycle | undefined> {
  return (await client.query<LockCycle>(LOCK_CYCLE_SQL, [APPLICATION_NAME, snapshotPid])).rows[0];
}

/** "pg_dump's lock on public.t queued behind pid 4242 (TRUNCATE t), which waits for this run's own lock on it" */
export function describeLockCycle(cycle: LockCycle): string {
  const statement = cycle.query ? oneLine(cycle.query).slice(0, 200) : cycle.application ? `application "${cycle.application}"` : 'its statement not visible to this role';
  return `pg_dump's lock on ${cycle.table ?? 'a table'} queued behind pid ${cycle.pid} (${statement}), which waits for this run's own lock on it`;
}

/** A cycle found: this attempt is ended (the snapshot's transaction with it) so that the statement between them can run. */
export class LockCycleError extends Error {
  constructor(readonly cycle: LockCycle) {
    super(describeLockCycle(cycle));
    this.name = 'LockCycleError';
  }
}

/** Looks for a LockCycle of the snapshot session `snapshotPid` each time it is asked to. */
export class LockCycleWatch {
  private readonly leave: () => Promise<void>;

  constructor(
    private readonly looks: SideLooks,
    private readonly snapshotPid: number,
  ) {
    this.leave = looks.join(this);
  }

  look(onCycle: (cycle: LockCycle) => void): void {
    this.looks.look(
      this,
      async (client) => {
        const cycle = await readLockCycle(client, this.snapshotPid);
        if (cycle && !this.looks.closed) onCycle(cycle);
      },
      () => undefined,
    );
  }

  /** Done looking (the side connection closes once the other watch is done too). */
  close(): Promise<void> {
    return this.leave();
  }
}
