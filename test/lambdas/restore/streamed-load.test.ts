import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GrowingFile, followFile, planDataLoads, planPostData, postDataTables, tablesOfList } from '../../../lambdas/restore/streamed-load';

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
