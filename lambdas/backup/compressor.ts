import { spawn } from 'node:child_process';
import { OperatorError } from '../shared/errors';

/**
 * Who gzips the plain SQL (`.sql.gz`). pg_restore writes ~3.5x more SQL text than the custom
 * archive it reads, so this is the pipeline's largest CPU cost:
 *  - `igzip` (Intel ISA-L, shipped in the runner image, Debian package `isal`): levels 1-3, a
 *    separate process fed by pg_restore through an OS pipe; ~6x less CPU than zlib level 1 for a
 *    slightly smaller file on the bench (docs/backups.md), and the SQL never enters node;
 *  - `zlib` (node's): any level 0-9, on node's thread pool; the fallback where igzip is absent.
 */
export type PlainCompressorKind = 'igzip' | 'zlib';
export type PlainCompressor = { readonly kind: 'igzip'; readonly path: string; readonly level: number } | { readonly kind: 'zlib'; readonly level: number };
export type PlainCompressorPreference = PlainCompressorKind | 'auto';

/** igzip's levels; 0 is its fastest level, not "stored", so level 0 (no compression) stays with zlib. */
const IGZIP_LEVELS = { min: 1, max: 3 } as const;

export function parsePlainCompressorPreference(value: string): PlainCompressorPreference {
  if (value === 'auto' || value === 'igzip' || value === 'zlib') return value;
  throw new OperatorError(`invalid plain-SQL compressor "${value}": use auto, igzip or zlib`, 2);
}

/**
 * `auto`: igzip when the level is one it has (1-3) and the program runs, else zlib. `igzip`
 * insists (a clear error when it cannot be used); `zlib` never spawns anything.
 */
export async function resolvePlainCompressor(
  level: number,
  preference: PlainCompressorPreference = 'auto',
  igzipPath = 'igzip',
): Promise<PlainCompressor> {
  if (preference === 'zlib') return { kind: 'zlib', level };
  const levelFits = level >= IGZIP_LEVELS.min && level <= IGZIP_LEVELS.max;
  if (preference === 'igzip' && !levelFits) {
    throw new OperatorError(`igzip compresses at levels ${IGZIP_LEVELS.min}-${IGZIP_LEVELS.max}, not ${level}: choose such a level or the zlib compressor`, 2);
  }
  if (!levelFits) return { kind: 'zlib', level };
  const available = await runs(igzipPath);
  if (available) return { kind: 'igzip', path: igzipPath, level };
  if (preference === 'igzip') {
    throw new OperatorError(`igzip not found (${igzipPath}): install ISA-L's igzip (Debian: apt-get install isal) or use the zlib compressor`, 2);
  }
  return { kind: 'zlib', level };
}

function runs(program: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(program, ['--version'], { stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}

/** igzip's command line: level, to stdout, from stdin; no file name or time stamp in the header. */
export function igzipArgs(level: number): string[] {
  return [`-${level}`, '--no-name', '--stdout'];
}
