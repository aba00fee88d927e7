import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { igzipArgs, parsePlainCompressorPreference, resolvePlainCompressor } from '../../../lambdas/backup/compressor';

describe('plain-SQL compressor choice', () => {
  const missing = path.join(os.tmpdir(), 'atmr-dr-no-such-igzip');
  let fakeIgzip: string;

  beforeAll(() => {
    // A program that answers --version like igzip does: the choice only needs it to run.
    fakeIgzip = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-compressor-')), 'igzip');
    fs.writeFileSync(fakeIgzip, '#!/bin/sh\necho "igzip command line interface 2.30.0"\n', { mode: 0o755 });
  });

  it('auto picks igzip at levels 1-3 when it runs', async () => {
    await expect(resolvePlainCompressor(1, 'auto', fakeIgzip)).resolves.toEqual({ kind: 'igzip', path: fakeIgzip, level: 1 });
    await expect(resolvePlainCompressor(3, 'auto', fakeIgzip)).resolves.toEqual({ kind: 'igzip', path: fakeIgzip, level: 3 });
  });

  it('auto falls back to zlib when igzip is absent, or the level is one igzip does not have', async () => {
    await expect(resolvePlainCompressor(1, 'auto', missing)).resolves.toEqual({ kind: 'zlib', level: 1 });
    await expect(resolvePlainCompressor(0, 'auto', fakeIgzip)).resolves.toEqual({ kind: 'zlib', level: 0 });
    await expect(resolvePlainCompressor(6, 'auto', fakeIgzip)).resolves.toEqual({ kind: 'zlib', level: 6 });
  });

  it('zlib never looks for igzip', async () => {
    await expect(resolvePlainCompressor(1, 'zlib', missing)).resolves.toEqual({ kind: 'zlib', level: 1 });
  });

  it('a forced igzip that cannot be used is a clear error naming the fix', async () => {
    await expect(resolvePlainCompressor(1, 'igzip', missing)).rejects.toThrow(`igzip not found (${missing}): install ISA-L's igzip (Debian: apt-get install isal) or use the zlib compressor`);
    await expect(resolvePlainCompressor(6, 'igzip', fakeIgzip)).rejects.toThrow('igzip compresses at levels 1-3, not 6: choose such a level or the zlib compressor');
  });

  it('parses the preference, refusing unknown names', () => {
    expect(parsePlainCompressorPreference('igzip')).toBe('igzip');
    expect(() => parsePlainCompressorPreference('pigz')).toThrow('invalid plain-SQL compressor "pigz": use auto, igzip or zlib');
  });

  it('igzip writes a gzip stream to stdout with no file name in its header', () => {
    expect(igzipArgs(2)).toEqual(['-2', '--no-name', '--stdout']);
  });
});
