import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflate } from 'node:zlib';

/**
 * A reader for the parts of pg_dump's custom archive format that the parallel COPY needs: the
 * header, the table of contents, and the framing of the data blocks (pg_backup_archiver.c
 * ReadHead/ReadToc, pg_backup_custom.c). Everything else about an archive is left to pg_restore.
 *
 *   header   "PGDMP", version (major, minor, revision), int size, offset size, format (1 = custom),
 *            compression (an int level before 1.15, an algorithm byte from 1.15), creation time
 *            (7 ints), database name, server version, pg_dump version
 *   TOC      entry count, then per entry: dump id, had-dumper, table oid, oid, tag, desc, section,
 *            defn, drop statement, copy statement, namespace, tablespace, table AM (1.14+),
 *            relkind (1.16+), owner, "with oids", dependencies (NULL-terminated), data offset
 *   data     blocks in TOC order: type byte (1 = table data, 3 = large objects), dump id, then
 *            chunks (int length, bytes) up to a zero length
 *
 * An int is a sign byte and `intSize` little-endian bytes; a string is an int length (-1: NULL) and
 * its bytes. Only archive versions 1.14 to 1.16 (pg_dump 12 to 18) are read here.
 */

export const MIN_VERSION = version(1, 14, 0);
export const MAX_VERSION = version(1, 16, 0);
const BLOCK_TABLE_DATA = 1;
const BLOCK_LARGE_OBJECTS = 3;

export type ArchiveCompression = 'none' | 'gzip' | 'lz4' | 'zstd';

export interface ArchiveTocEntry {
  readonly dumpId: number;
  readonly desc: string;
  readonly tag: string;
  readonly namespace: string | null;
  readonly defn: string | null;
  readonly copyStatement: string | null;
  readonly hasData: boolean;
}

export interface ArchiveLayout {
  readonly version: string;
  readonly compression: ArchiveCompression;
  readonly entries: ArchiveTocEntry[];
  /** Offset of the first data block (just after the TOC). */
  readonly dataStart: number;
  readonly intSize: number;
}

/** Not enough bytes yet: read more of the archive and try again. */
export class NeedMoreBytes extends Error {
  constructor() {
    super('the archive is shorter than its own framing says');
  }
}

/** The archive cannot be read here (not custom format, unknown version or layout). */
export class UnsupportedArchive extends Error {}

function version(major: number, minor: number, revision: number): number {
  return (major * 256 + minor) * 256 + revision;
}

/** A cursor over bytes that may end early (NeedMoreBytes). */
class Cursor {
  constructor(
    private readonly bytes: Buffer,
    public offset: number,
    public intSize = 4,
  ) {}

  byte(): number {
    if (this.offset >= this.bytes.length) throw new NeedMoreBytes();
    return this.bytes[this.offset++];
  }

  int(): number {
    const sign = this.byte();
    let value = 0;
    for (let i = 0; i < this.intSize; i += 1) value += this.byte() * 2 ** (8 * i);
    return sign ? -value : value;
  }

  str(): string | null {
    const length = this.int();
    if (length < 0) return null;
    if (this.offset + length > this.bytes.length) throw new NeedMoreBytes();
    const text = this.bytes.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return text;
  }

  skip(length: number): void {
    this.offset += length;
  }
}

/**
 * Reads the header and TOC from the archive's first bytes. Throws NeedMoreBytes when `bytes` ends
 * before the TOC does, UnsupportedArchive when this is not an archive this reader knows.
 */
export function readLayout(bytes: Buffer): ArchiveLayout {
  if (bytes.length < 5) throw new NeedMoreBytes();
  if (bytes.toString('latin1', 0, 5) !== 'PGDMP') throw new UnsupportedArchive('not a pg_dump custom archive (no PGDMP magic)');
  const c = new Cursor(bytes, 5);
  const [major, minor, revision] = [c.byte(), c.byte(), c.byte()];
  const archiveVersion = version(major, minor, revision);
  const versionText = `${major}.${minor}.${revision}`;
  if (archiveVersion < MIN_VERSION || archiveVersion > MAX_VERSION) throw new UnsupportedArchive(`archive version ${versionText} is not read here (1.14 to 1.16)`);
  c.intSize = c.byte();
  if (c.intSize < 1 || c.intSize > 8) throw new UnsupportedArchive(`archive int size ${c.intSize} is not plausible`);
  const offSize = c.byte();
  if (c.byte() !== 1) throw new UnsupportedArchive('not a custom-format archive');
  let compression: ArchiveCompression;
  if (archiveVersion >= version(1, 15, 0)) {
    const algorithm = c.byte();
    const names: Record<number, ArchiveCompression> = { 0: 'none', 1: 'gzip', 2: 'lz4', 3: 'zstd' };
    if (!(algorithm in names)) throw new UnsupportedArchive(`unknown compression algorithm ${algorithm}`);
    compression = names[algorithm];
  } else {
    compression = c.int() !== 0 ? 'gzip' : 'none';
  }
  for (let i = 0; i < 7; i += 1) c.int(); // creation time
  c.str(); // database name
  c.str(); // server version
  c.str(); // pg_dump version

  const count = c.int();
  if (count < 0) throw new UnsupportedArchive('negative TOC entry count');
  const entries: ArchiveTocEntry[] = [];
  for (let i = 0; i < count; i += 1) {
    const dumpId = c.int();
    if (dumpId <= 0) throw new UnsupportedArchive(`TOC entry id ${dumpId} out of range`);
    const hadDumper = c.int() !== 0;
    c.str(); // table oid
    c.str(); // oid
    const tag = c.str() ?? '';
    const desc = c.str() ?? '';
    c.int(); // section
    const defn = c.str();
    c.str(); // drop statement
    const copyStatement = c.str();
    const namespace = c.str();
    c.str(); // tablespace
    c.str(); // table access method (1.14+)
    if (archiveVersion >= version(1, 16, 0)) c.int(); // relkind
    c.str(); // owner
    c.str(); // "with oids"
    while (c.str() !== null); // dependencies
    const flag = c.byte(); // data offset: flag, then offSize bytes
    c.skip(offSize);
    // K_OFFSET_NO_DATA (3): the entry has no data block.
    entries.push({ dumpId, desc, tag, namespace, defn, copyStatement, hasData: hadDumper && flag !== 3 });
  }
  if (c.offset > bytes.length) throw new NeedMoreBytes();
  return { version: versionText, compression, entries, dataStart: c.offset, intSize: c.intSize };
}

/** Random access to the archive's bytes as they become available (the download in progress). */
export interface ArchiveSource {
  /**
   * Copies up to `length` bytes at `position` into `target` at `offset`; fewer only at the end of
   * the archive. Resolves to the number of bytes copied.
   */
  readInto(target: Buffer, offset: number, length: number, position: number): Promise<number>;
}

/** An ArchiveSource over bytes already in memory. */
export function bufferSource(bytes: Buffer): ArchiveSource {
  return {
    readInto: async (target, offset, length, position) => bytes.copy(target, offset, position, Math.min(bytes.length, position + length)),
  };
}

/**
 * The compressed chunks of one entry's data block, in order: skips the blocks before it by their
 * framing (blocks follow the TOC's order; a pipe-written archive records no offsets). A yielded
 * chunk is a view of the reader's window, valid until the next one is asked for.
 */
export async function* dataChunks(source: ArchiveSource, layout: ArchiveLayout, dumpId: number, windowBytes = 1 << 20): AsyncGenerator<Buffer> {
  const reader = new WindowReader(source, layout.dataStart, windowBytes, layout.intSize);
  for (;;) {
    const type = await reader.byteOrEnd();
    if (type === undefined) throw new UnsupportedArchive(`data block ${dumpId} not found in the archive`);
    const id = await reader.int();
    if (type !== BLOCK_TABLE_DATA && type !== BLOCK_LARGE_OBJECTS) throw new UnsupportedArchive(`unknown data block type ${type} (block ${id})`);
    if (id === dumpId) {
      if (type !== BLOCK_TABLE_DATA) throw new UnsupportedArchive(`block ${id} holds large objects, not table data`);
      for (let length = await reader.int(); length !== 0; length = await reader.int()) {
        if (length < 0) throw new UnsupportedArchive(`negative chunk length in block ${id}`);
        yield await reader.bytes(length);
      }
      return;
    }
    if (type === BLOCK_TABLE_DATA) await skipChunks(reader);
    else for (let oid = await reader.int(); oid !== 0; oid = await reader.int()) await skipChunks(reader);
  }
}

async function skipChunks(reader: WindowReader): Promise<void> {
  for (let length = await reader.int(); length !== 0; length = await reader.int()) {
    if (length < 0) throw new UnsupportedArchive('negative chunk length');
    reader.skip(length);
  }
}

/**
 * Sequential reads through one reused window (one read per window, not per field, and no
 * allocation per window: the whole archive passes through the same memory).
 */
class WindowReader {
  private window: Buffer;
  /** Archive position of window[0], and how many window bytes are valid. */
  private windowStart: number;
  private filled = 0;

  constructor(
    private readonly source: ArchiveSource,
    private position: number,
    windowBytes: number,
    private readonly intSize: number,
  ) {
    this.window = Buffer.allocUnsafe(windowBytes);
    this.windowStart = position;
  }

  /** Makes `length` bytes at the position available in the window; false at the archive's end. */
  private async ensure(length: number): Promise<boolean> {
    if (this.position + length <= this.windowStart + this.filled) return true;
    // Keep the unread bytes, at the front (past the window: start empty at the position).
    const unread = Math.max(0, this.windowStart + this.filled - this.position);
    if (length > this.window.length) {
      const bigger = Buffer.allocUnsafe(length);
      this.window.copy(bigger, 0, this.filled - unread, this.filled);
      this.window = bigger;
    } else if (unread > 0) {
      this.window.copyWithin(0, this.filled - unread, this.filled);
    }
    this.windowStart = this.position;
    this.filled = unread;
    while (this.filled < length) {
      const got = await this.source.readInto(this.window, this.filled, this.window.length - this.filled, this.windowStart + this.filled);
      if (got === 0) return false;
      this.filled += got;
    }
    return true;
  }

  async byteOrEnd(): Promise<number | undefined> {
    if (!(await this.ensure(1))) return undefined;
    return this.window[this.position++ - this.windowStart];
  }

  async int(): Promise<number> {
    if (!(await this.ensure(1 + this.intSize))) throw new UnsupportedArchive('the archive ends inside a data block');
    const at = this.position - this.windowStart;
    let value = 0;
    for (let i = 0; i < this.intSize; i += 1) value += this.window[at + 1 + i] * 2 ** (8 * i);
    this.position += 1 + this.intSize;
    return this.window[at] ? -value : value;
  }

  async bytes(length: number): Promise<Buffer> {
    if (!(await this.ensure(length))) throw new UnsupportedArchive('the archive ends inside a data block');
    const at = this.position - this.windowStart;
    this.position += length;
    return this.window.subarray(at, at + length);
  }

  /** Moves past `length` bytes; bytes past the window are never read. */
  skip(length: number): void {
    this.position += length;
  }
}

/**
 * The COPY data of one entry's data block as pg_dump stored it (the rows, then COPY's `\.` end
 * line), decompressed (zlib for gzip archives, as pg_dump writes them). The compressed chunks
 * (4 KiB each) are copied into batches of `batchBytes` for zlib.
 */
export function tableRows(source: ArchiveSource, layout: ArchiveLayout, dumpId: number, batchBytes = 1024 * 1024): AsyncIterable<Buffer> {
  if (layout.compression !== 'none' && layout.compression !== 'gzip') throw new UnsupportedArchive(`${layout.compression} compression is not read here`);
  async function* batches(): AsyncGenerator<Buffer> {
    let batch = Buffer.allocUnsafe(batchBytes);
    let used = 0;
    for await (const chunk of dataChunks(source, layout, dumpId)) {
      // The chunk is a view of the reader's window: copied before the next one is read.
      if (used + chunk.length > batch.length && used > 0) {
        yield batch.subarray(0, used);
        batch = Buffer.allocUnsafe(Math.max(batchBytes, chunk.length));
        used = 0;
      }
      if (chunk.length > batch.length) batch = Buffer.allocUnsafe(chunk.length);
      used += chunk.copy(batch, used);
    }
    if (used > 0) yield batch.subarray(0, used);
  }
  if (layout.compression === 'none') return batches();
  const inflate = createInflate({ chunkSize: batchBytes });
  // pipeline() ends or destroys the inflater with the source; iterating it reads its output.
  pipeline(Readable.from(batches()), inflate).catch(() => undefined);
  return inflate;
}
