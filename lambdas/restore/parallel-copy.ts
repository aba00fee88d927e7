import type { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { OperatorError, oneLine } from '../shared/errors';

/**
 * One table's rows, loaded by several COPY sessions at once.
 *
 * A table's data is one COPY in the archive, and pg_restore sends it through one session: one
 * backend parses and inserts every row, so the biggest table's load is a single-core critical path
 * however many cores the server has. Here every session runs pg_restore's own session settings
 * and the archive's COPY statement, and the rows go to whichever session has the least data
 * waiting, in batches cut at row ends. In COPY text format a row is one line: a newline inside a
 * value is written `\n`, so every newline byte ends a row.
 *
 * The rows land in a different physical order; the content, the row count and everything built
 * afterwards (indexes, constraints) are the same.
 */

export interface ParallelCopyInput {
  /** The COPY data (text format), in pieces of any size. */
  readonly rows: AsyncIterable<Buffer>;
  /** pg_restore's session settings (parseSessionSettings). */
  readonly settings: readonly string[];
  /** The archive's COPY statement for the table (`COPY s.t (cols) FROM stdin;`). */
  readonly copyStatement: string;
  /** Opens one session on the target database (each session is ended here). */
  readonly connect: () => Promise<Client>;
  readonly sessions: number;
  /** Cut size of the row batches handed to a session. @default 256 KiB */
  readonly batchBytes?: number;
  /** The sessions open (settings, BEGIN) at once, and COPY once this settles (the table exists). */
  readonly startAfter?: Promise<unknown>;
}

const NEWLINE = 0x0a;
/** Enough for pg_dump's end line and its trailing blank lines ("\\.\n\n\n"), after a row's newline. */
const HOLD_BACK = 16;
/** Rows queued per session before the source waits (keeps every backend fed, memory bounded). */
const SESSION_BUFFER = 1 << 20;

/**
 * The session settings of pg_restore's script output (`pg_restore -f -`): its SET and
 * set_config() lines, without comments, blank lines and psql meta-commands (\restrict).
 */
export function parseSessionSettings(script: string): string[] {
  const settings: string[] = [];
  for (const line of script.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('--') || trimmed.startsWith('\\')) continue;
    if (!/^(SET [a-z_]+ = [^;]*|SELECT pg_catalog\.set_config\([^;]*\));$/.test(trimmed)) {
      throw new OperatorError(`unexpected line in pg_restore's session settings: "${oneLine(trimmed).slice(0, 120)}"; restore with --no-parallel-copy`);
    }
    settings.push(trimmed);
  }
  return settings;
}

export interface ParallelCopyResult {
  readonly rows: number;
  /** Rows each session loaded (the server's COPY counts). */
  readonly rowsPerSession: number[];
}

export async function parallelCopy(input: ParallelCopyInput): Promise<ParallelCopyResult> {
  const batchBytes = input.batchBytes ?? 256 * 1024;
  const copyStatement = input.copyStatement.trim().replace(/;$/, '');
  if (!/^COPY .* FROM stdin$/i.test(copyStatement)) throw new OperatorError(`not a COPY ... FROM stdin statement: "${oneLine(copyStatement).slice(0, 120)}"`);
  const clients: Client[] = [];
  let failure: unknown;
  try {
    // Every attempt settles before going on: a session that opens after another failed is ended too.
    const opening = await Promise.allSettled(
      Array.from({ length: Math.max(1, input.sessions) }, async () => {
        const client = await input.connect();
        clients.push(client);
        // One transaction per session, committed only once every session's COPY succeeded: a
        // failed load leaves no rows behind, from any session.
        await client.query([...input.settings, 'BEGIN;'].join('\n'));
        return client;
      }),
    );
    const refused = opening.find((o) => o.status === 'rejected');
    if (refused) throw refused.reason;
    const sessions = clients;
    await input.startAfter;
    const streams = sessions.map((c) => c.query(copyFrom(copyStatement, { highWaterMark: SESSION_BUFFER })));
    const finished = streams.map(
      (stream) =>
        new Promise<number>((resolve, reject) => {
          stream.on('finish', () => resolve(stream.rowCount));
          stream.on('error', (error) => {
            failure ??= error;
            reject(error);
          });
        }),
    );
    for (const f of finished) f.catch(() => undefined);

    // The session with the least data waiting, in turn among equals (a fast server keeps every
    // queue empty). A batch may be several pieces: they go to the same session, in order.
    let turn = 0;
    const send = async (parts: Buffer[]): Promise<void> => {
      turn = (turn + 1) % streams.length;
      let target = streams[turn];
      for (let i = 1; i < streams.length; i += 1) {
        const s = streams[(turn + i) % streams.length];
        if (s.writableLength < target.writableLength) target = s;
      }
      for (const part of parts) target.write(part);
      if (streams.every((s) => s.writableNeedDrain)) {
        // Until any session drains (or one fails); the listeners go with the wait.
        let wake = (): void => undefined;
        const drained = new Promise<void>((resolve) => (wake = resolve));
        for (const s of streams) s.once('drain', wake);
        try {
          await Promise.race([drained, ...finished]);
        } finally {
          for (const s of streams) s.off('drain', wake);
        }
      }
    };

    // Rows not sent yet (an unfinished row, or less than a batch), as pieces of the input: cut at
    // row ends, never copied. The last HOLD_BACK bytes always wait for the end of the data, where
    // pg_dump's `\.` end line is taken off.
    let carry: Buffer[] = [];
    let carryBytes = 0;
    for await (const piece of input.rows) {
      if (failure) break;
      let offset = 0;
      for (;;) {
        const from = offset + Math.max(0, batchBytes - carryBytes - 1);
        const cut = from < piece.length - HOLD_BACK ? piece.indexOf(NEWLINE, from) : -1;
        if (cut < 0 || cut >= piece.length - HOLD_BACK) {
          if (offset < piece.length) {
            carry.push(piece.subarray(offset));
            carryBytes += piece.length - offset;
          }
          break;
        }
        await send([...carry, piece.subarray(offset, cut + 1)]);
        carry = [];
        carryBytes = 0;
        offset = cut + 1;
        if (failure) break;
      }
    }
    if (!failure && carryBytes > 0) {
      const rest = withoutEndLine(Buffer.concat(carry, carryBytes));
      if (rest.length > 0) await send([rest]);
    }
    if (failure) throw failure;
    for (const s of streams) s.end();
    const rowsPerSession = await Promise.all(finished);
    await Promise.all(sessions.map((c) => c.query('COMMIT')));
    return { rows: rowsPerSession.reduce((a, b) => a + b, 0), rowsPerSession };
  } catch (error) {
    const reason = failure ?? error;
    if (reason instanceof OperatorError) throw reason;
    throw new OperatorError(`${copyStatement.replace(/ \(.*$/, '').replace(/ FROM stdin$/i, '')} failed: ${oneLine(reason)}; the target was not touched`);
  } finally {
    // An unfinished COPY rolls back when its session ends.
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/**
 * The data without pg_dump's trailing end line (`\.` then blank lines: COPY's end-of-data marker,
 * which pg_restore leaves to the server). No row can be that line: a backslash in a value is
 * written `\\`.
 */
function withoutEndLine(data: Buffer): Buffer {
  const whole = data.length <= HOLD_BACK;
  const tail = data.toString('latin1', Math.max(0, data.length - HOLD_BACK));
  // At a line start: after a row's newline, or at the very start of the data.
  const end = (whole ? /(?:^|\n)\\\.\n+$/ : /\n\\\.\n+$/).exec(tail);
  if (!end) return data;
  const at = data.length - tail.length + end.index + (tail[end.index] === '\n' ? 1 : 0);
  return data.subarray(0, at);
}
