import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GrowingFile, followFile, planDataLoads } from '../../../lambdas/restore/streamed-load';

const TOC = `;
; Archive created at 2026-11-29 20:00:00 UTC
;
214; 1259 16385 TABLE public customers postgres
215; 1259 16392 TABLE public rides postgres
216; 1259 16400 TABLE Ops Réseau Incidents Été postgres
3350; 0 16385 TABLE DATA public customers postgres
3351; 0 16392 TABLE DATA public rides postgres
3352; 0 16400 TABLE DATA Ops Réseau Incidents Été postgres
3353; 0 0 SEQUENCE SET public rides_id_seq postgres
3354; 0 0 BLOBS - BLOBS
3202; 2606 16391 CONSTRAINT public customers customers_pkey postgres
`;

const TABLES = [
  { schema: 'public', name: 'customers', rows: 200_000 },
  { schema: 'public', name: 'rides', rows: 1_600_000 },
  { schema: 'Ops Réseau', name: 'Incidents Été', rows: 3 },
];

describe('planDataLoads', () => {
  it('puts the biggest table alone and the rest, with every non-table-data entry, on the first list', () => {
    const lists = planDataLoads(TOC, TABLES, 2);

    expect(lists).toHaveLength(2);
    expect(lists[0]).toContain('TABLE DATA public rides');
    expect(lists[0]).not.toContain('TABLE DATA public customers');
    expect(lists[1].split('\n').filter(Boolean)).toEqual([
      '3350; 0 16385 TABLE DATA public customers postgres',
      '3352; 0 16400 TABLE DATA Ops Réseau Incidents Été postgres',
    ]);
    // Sequences, large objects and the schema entries go to the first list only.
    expect(lists[0]).toContain('SEQUENCE SET public rides_id_seq');
    expect(lists[0]).toContain('BLOBS - BLOBS');
    expect(lists[1]).not.toContain('SEQUENCE SET');
    expect(lists[1]).not.toContain(' TABLE public');
  });

  it('keeps the archive order inside every list (a streamed archive is read forward only)', () => {
    const order = (line: string): number => TOC.indexOf(line);
    for (const list of planDataLoads(TOC, TABLES, 3)) {
      const lines = list.split('\n').filter(Boolean);
      expect(lines.map(order)).toEqual([...lines.map(order)].sort((a, b) => a - b));
    }
  });

  it('never makes more lists than TABLE DATA entries, nor fewer than one', () => {
    expect(planDataLoads(TOC, TABLES, 8)).toHaveLength(3);
    expect(planDataLoads(TOC, TABLES, 1)).toHaveLength(1);
    expect(planDataLoads('214; 1259 16385 TABLE public t postgres\n', [], 4)).toEqual(['214; 1259 16385 TABLE public t postgres\n']);
  });

  it('every entry of the archive is on exactly one list', () => {
    const entries = TOC.split('\n').filter((l) => l && !l.startsWith(';'));
    const listed = planDataLoads(TOC, TABLES, 2).flatMap((l) => l.split('\n').filter(Boolean));

    expect([...listed].sort()).toEqual([...entries].sort());
  });
});

describe('followFile', () => {
  it('streams a growing file from its first byte and ends only when it is complete', async () => {
    // Arrange
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-follow-'));
    const file = path.join(dir, 'archive');
    fs.writeFileSync(file, '');
    const growing = new GrowingFile();
    const follower = followFile(file, growing);
    const received: Buffer[] = [];
    let ended = false;
    follower.on('data', (chunk: Buffer) => received.push(chunk));
    follower.on('end', () => (ended = true));
    const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

    // Act: the file grows in two steps, then completes
    fs.appendFileSync(file, 'PGDMP-');
    growing.advance(6);
    await tick();
    fs.appendFileSync(file, 'rest of it');
    // Not yet announced: a follower never reads past the in-order prefix.
    await tick();
    const beforeAnnounce = Buffer.concat(received).toString();
    growing.advance(10);
    await tick();
    const beforeEnd = ended;
    growing.finish();
    await tick();

    // Assert
    expect(beforeAnnounce).toBe('PGDMP-');
    expect(beforeEnd).toBe(false);
    expect(Buffer.concat(received).toString()).toBe('PGDMP-rest of it');
    expect(ended).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fails its readers when the download fails', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-follow-'));
    const file = path.join(dir, 'archive');
    fs.writeFileSync(file, 'abc');
    const growing = new GrowingFile();
    growing.advance(3);
    const follower = followFile(file, growing);
    const failed = new Promise<Error>((resolve) => follower.on('error', resolve));
    follower.resume();

    growing.fail(new Error('object is corrupt'));

    await expect(failed).resolves.toThrow('object is corrupt');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
