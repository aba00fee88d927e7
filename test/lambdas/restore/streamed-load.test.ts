import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DownloadFollowers, GrowingDownload, planDataLoads, planPostData, postDataTables, splitTable, tablesOfList } from '../../../lambdas/restore/streamed-load';

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

describe('DownloadFollowers', () => {
  const collect = (child: import('node:child_process').ChildProcess): Promise<{ data: string; code: number | null; signal: NodeJS.Signals | null }> =>
    new Promise((resolve) => {
      let data = '';
      child.stdout!.setEncoding('latin1').on('data', (d: string) => (data += d));
      child.on('close', (code, signal) => resolve({ data, code, signal }));
    });
  const tick = (ms = 150): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  it('streams the growing file from its first byte and ends only once the download is finished', async () => {
    // Arrange
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-follow-'));
    const file = path.join(dir, 'archive');
    fs.writeFileSync(file, '');
    const followers = new DownloadFollowers(file);
    const early = collect(followers.follow());
    let ended = false;
    void early.then(() => (ended = true));

    // Act: the file grows in two steps, then the download is declared complete
    fs.appendFileSync(file, 'PGDMP-');
    await tick();
    const late = collect(followers.follow()); // a follower started mid-way still reads from byte 0
    fs.appendFileSync(file, 'rest of it');
    await tick();
    const endedBeforeFinish = ended;
    followers.finish();

    // Assert
    expect(endedBeforeFinish).toBe(false);
    await expect(early).resolves.toEqual({ data: 'PGDMP-rest of it', code: 0, signal: null });
    await expect(late).resolves.toEqual({ data: 'PGDMP-rest of it', code: 0, signal: null });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('kills its followers when the download fails: their readers never see a clean end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-follow-'));
    const file = path.join(dir, 'archive');
    fs.writeFileSync(file, 'abc');
    const followers = new DownloadFollowers(file);
    const follower = collect(followers.follow());
    await tick();

    followers.abort();

    await expect(follower).resolves.toMatchObject({ signal: 'SIGKILL' });
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

/** What `pg_restore -f - --section=post-data` prints (PostgreSQL 15), trimmed. */
const POST_DATA_SCRIPT = `--
-- PostgreSQL database dump
--

SET statement_timeout = 0;

--
-- Name: customers customers_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);


--
-- Name: Incidents Été Incidents Été_pkey; Type: CONSTRAINT; Schema: Ops Réseau; Owner: postgres
--

ALTER TABLE ONLY "Ops Réseau"."Incidents Été"
    ADD CONSTRAINT "Incidents Été_pkey" PRIMARY KEY (id);


--
-- Name: rides_customer; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX rides_customer ON public.rides USING btree (customer_id);


--
-- Name: rides rides_touch; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER rides_touch BEFORE INSERT OR UPDATE ON public.rides FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();


--
-- Name: rides rides_customer_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.rides
    ADD CONSTRAINT rides_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id);
`;

const POST_TOC = `3202; 2606 16391 CONSTRAINT public customers customers_pkey postgres
3208; 2606 16401 CONSTRAINT Ops Réseau Incidents Été Incidents Été_pkey postgres
3203; 1259 16404 INDEX public rides_customer postgres
3209; 2620 16410 TRIGGER public rides rides_touch postgres
3207; 2606 16399 FK CONSTRAINT public rides rides_customer_id_fkey postgres
3400; 0 16420 MATERIALIZED VIEW DATA billing revenue_by_month postgres
`;

describe('post-data planning', () => {
  it('finds the table of each index, constraint and trigger in the post-data script, quoted names included', () => {
    const owners = postDataTables(POST_DATA_SCRIPT);

    expect(Object.fromEntries(owners)).toEqual({
      'CONSTRAINT public customers customers_pkey ': JSON.stringify(['public', 'customers']),
      'CONSTRAINT Ops Réseau Incidents Été Incidents Été_pkey ': JSON.stringify(['Ops Réseau', 'Incidents Été']),
      'INDEX public rides_customer ': JSON.stringify(['public', 'rides']),
      'TRIGGER public rides rides_touch ': JSON.stringify(['public', 'rides']),
    });
  });

  it('runs each table\'s entries after the process that loaded it, and foreign keys and the rest last', () => {
    const lists = ['3351; 0 16392 TABLE DATA public rides postgres\n', '3350; 0 16385 TABLE DATA public customers postgres\n3352; 0 16400 TABLE DATA Ops Réseau Incidents Été postgres\n'];
    const tablesByProcess = lists.map((l) => tablesOfList(l, TABLES));

    const plan = planPostData(POST_TOC, postDataTables(POST_DATA_SCRIPT), tablesByProcess);

    expect(tablesByProcess).toEqual([[JSON.stringify(['public', 'rides'])], [JSON.stringify(['public', 'customers']), JSON.stringify(['Ops Réseau', 'Incidents Été'])]]);
    expect(plan.perProcess[0]).toBe('3203; 1259 16404 INDEX public rides_customer postgres\n3209; 2620 16410 TRIGGER public rides rides_touch postgres\n');
    expect(plan.perProcess[1]).toBe(
      '3202; 2606 16391 CONSTRAINT public customers customers_pkey postgres\n3208; 2606 16401 CONSTRAINT Ops Réseau Incidents Été Incidents Été_pkey postgres\n',
    );
    expect(plan.last).toBe('3207; 2606 16399 FK CONSTRAINT public rides rides_customer_id_fkey postgres\n3400; 0 16420 MATERIALIZED VIEW DATA billing revenue_by_month postgres\n');
  });

  it('leaves the entries of a table no data process loaded (an empty table, a partitioned parent) for last', () => {
    const plan = planPostData(POST_TOC, postDataTables(POST_DATA_SCRIPT), [[JSON.stringify(['public', 'rides'])]]);

    expect(plan.last).toContain('CONSTRAINT public customers customers_pkey');
    expect(plan.perProcess[0]).not.toContain('customers');
  });
});

describe('DownloadFollowers lifetime', () => {
  it('followers end (after copying what is there) when the process that started them dies', async () => {
    // Arrange: a child node process starts a follower of a file, prints its pid, then is killed
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-follow-'));
    const file = path.join(dir, 'archive');
    fs.writeFileSync(file, 'partial');
    const script = `
      const { DownloadFollowers } = require(${JSON.stringify(path.join(__dirname, '..', '..', '..', 'lambdas', 'restore', 'streamed-load'))});
      const followers = new DownloadFollowers(${JSON.stringify(file)});
      const tail = followers.follow();
      tail.stdout.resume();
      process.stdout.write(String(tail.pid) + '\\n');
      setInterval(() => undefined, 1000);`;
    const { spawn } = await import('node:child_process');
    // One process (tsx as a require hook, not its launcher): SIGKILL must hit the follower's owner.
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: path.join(__dirname, '..', '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
    const tailPid = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };

    // Act
    child.kill('SIGKILL');
    const deadline = Date.now() + 5000;
    while (alive(tailPid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));

    // Assert
    expect(alive(tailPid)).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('splitTable (which table gets parallel COPY)', () => {
  it('picks the biggest table when it has at least minRows and at least as many rows as all the others', () => {
    // Arrange: rides 1.6M rows against 200003 for the others
    // Act
    const split = splitTable(TOC, TABLES, 2, 100_000);

    // Assert
    expect(split?.line).toBe('3351; 0 16392 TABLE DATA public rides postgres');
    expect(split?.rest).not.toContain('TABLE DATA public rides');
    expect(split?.rest).toContain('TABLE DATA public customers');
    expect(split?.rest).toContain('SEQUENCE SET public rides_id_seq');
  });

  it('splits nothing when the biggest table is under minRows, smaller than the others together, or with one job', () => {
    expect(splitTable(TOC, TABLES, 2, 2_000_000)).toBeUndefined();
    const balanced = [
      { schema: 'public', name: 'customers', rows: 1_000_000 },
      { schema: 'public', name: 'rides', rows: 1_600_000 },
      { schema: 'Ops Réseau', name: 'Incidents Été', rows: 700_000 },
    ];
    expect(splitTable(TOC, balanced, 2, 1)).toBeUndefined();
    expect(splitTable(TOC, TABLES, 1, 1)).toBeUndefined();
    expect(splitTable('214; 1259 16385 TABLE public t postgres\n', [], 2, 1)).toBeUndefined();
  });
});

describe('GrowingDownload (node reads of the download in progress)', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-growing-'));
    file = path.join(dir, 'archive.dump');
    fs.writeFileSync(file, '');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('answers a read only once its bytes are written, and short at the end of a finished download', async () => {
    // Arrange
    const download = new GrowingDownload(file);
    const readBytes = async (position: number, length: number): Promise<string> => {
      const target = Buffer.alloc(length);
      return target.toString('utf8', 0, await download.readInto(target, 0, length, position));
    };
    const read = readBytes(2, 4);
    let answered = false;
    void read.then(() => (answered = true));

    // Act: 3 bytes are not enough for bytes 2..5; 8 are
    fs.writeFileSync(file, 'abc');
    download.progress(3);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const early = answered;
    fs.writeFileSync(file, 'abcdefgh');
    download.progress(8);

    // Assert
    expect(early).toBe(false);
    expect(await read).toBe('cdef');
    download.finish();
    expect(await readBytes(6, 100)).toBe('gh');
    expect(await readBytes(8, 100)).toBe('');
    await download.close();
  });

  it('fails a waiting read, and every later one, with the failure of the download', async () => {
    // Arrange
    const download = new GrowingDownload(file);
    const read = download.readInto(Buffer.alloc(10), 0, 10, 0);

    // Act
    download.fail(new Error('sha256 mismatch'));

    // Assert
    await expect(read).rejects.toThrow('sha256 mismatch');
    await expect(download.readInto(Buffer.alloc(1), 0, 1, 0)).rejects.toThrow('sha256 mismatch');
    await download.close();
  });
});
