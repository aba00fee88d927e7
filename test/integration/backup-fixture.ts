/**
 * The integration fixture of the backup tests: every object kind the backup must carry
 * (the backup core's subject), and a content digest query to compare a restored database with its source.
 */

/** Schema and data: several schemas, enum, domain, jsonb, bytea, arrays, a partitioned table, a
 * materialized view, a trigger, a sequence with a set value, a quoted mixed-case accented table name,
 * and a large object. */
export const FIXTURE_SQL = `
CREATE SCHEMA billing;
CREATE SCHEMA "Ops Réseau";
CREATE TYPE public.ride_status AS ENUM ('requested', 'assigned', 'done', 'cancelled');
CREATE DOMAIN billing.positive_cents AS bigint CHECK (VALUE >= 0);
CREATE SEQUENCE billing.invoice_number START 1000;
SELECT setval('billing.invoice_number', 4242, true);

CREATE TABLE public.rides (
  id bigserial PRIMARY KEY,
  status public.ride_status NOT NULL,
  payload jsonb NOT NULL,
  photo bytea,
  tags text[] NOT NULL DEFAULT '{}',
  scores integer[],
  created_at timestamptz NOT NULL,
  updated_at timestamptz
);
CREATE INDEX rides_payload_gin ON public.rides USING gin (payload);

CREATE FUNCTION public.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := '2026-01-01 00:00:00+00'; RETURN NEW; END $$;
CREATE TRIGGER rides_touch BEFORE INSERT OR UPDATE ON public.rides FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

INSERT INTO public.rides (status, payload, photo, tags, scores, created_at)
SELECT (ARRAY['requested','assigned','done','cancelled'])[1 + i % 4]::public.ride_status,
       jsonb_build_object('i', i, 'from', 'Genève', 'to', E'Lausanne "centre"\\\\n', 'stops', jsonb_build_array(i, i * 2), 'note', NULL),
       CASE WHEN i % 3 = 0 THEN NULL ELSE decode(md5(i::text) || '00ff0a0d', 'hex') END,
       ARRAY['tag-' || (i % 7), E'quote''s', 'comma,brace{}'],
       CASE WHEN i % 5 = 0 THEN NULL ELSE ARRAY[i, -i, 0] END,
       '2026-01-01 00:00:00+00'::timestamptz + i * interval '17 minutes'
FROM generate_series(1, 2000) AS i;
UPDATE public.rides SET status = 'done' WHERE id % 10 = 0;

CREATE TABLE billing.invoices (
  number bigint NOT NULL DEFAULT nextval('billing.invoice_number'),
  ride_id bigint NOT NULL REFERENCES public.rides (id),
  amount billing.positive_cents NOT NULL,
  issued_on date NOT NULL,
  PRIMARY KEY (number, issued_on)
) PARTITION BY RANGE (issued_on);
CREATE TABLE billing.invoices_2026_h1 PARTITION OF billing.invoices FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE billing.invoices_2026_h2 PARTITION OF billing.invoices FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE TABLE billing.invoices_default PARTITION OF billing.invoices DEFAULT;
INSERT INTO billing.invoices (number, ride_id, amount, issued_on)
SELECT 1000 + i, i, i * 137 % 100000, DATE '2026-01-01' + (i % 500)
FROM generate_series(1, 1500) AS i;

CREATE MATERIALIZED VIEW billing.revenue_by_month AS
  SELECT date_trunc('month', issued_on)::date AS month, sum(amount) AS cents, count(*) AS invoices
  FROM billing.invoices GROUP BY 1;

CREATE TABLE "Ops Réseau"."Incidents Été" ("Id" integer PRIMARY KEY, "Résumé" text NOT NULL, severity smallint);
INSERT INTO "Ops Réseau"."Incidents Été" VALUES (1, 'Panne OSRM à Zürich', 2), (2, E'tab\\there', NULL), (3, 'ligne
deux', 1);

CREATE TABLE public.empty_table (id int);

CREATE TABLE public.documents (id int PRIMARY KEY, blob oid NOT NULL);
INSERT INTO public.documents VALUES (1, lo_from_bytea(0, convert_to(repeat('contrat signé ', 5000), 'UTF8')));
`;

/**
 * One row per table, sequence, materialized view and large object: `kind|name|digest`. Table digests
 * are md5 over the rows' text in a total order; they are equal only when every value is.
 */
export const DIGEST_SQL = `
CREATE TEMP TABLE digest_out (kind text, name text, digest text);
DO $$
DECLARE r record; d text;
BEGIN
  FOR r IN
    SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS qname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  LOOP
    IF r.relkind = 'S' THEN
      EXECUTE format('SELECT last_value::text || '','' || is_called::text FROM %s', r.qname) INTO d;
    ELSE
      EXECUTE format('SELECT count(*)::text || '':'' || coalesce(md5(string_agg(t::text, E''\\n'' ORDER BY t::text)), '''') FROM %s AS t', r.qname) INTO d;
    END IF;
    INSERT INTO digest_out VALUES (r.relkind::text, r.qname, d);
  END LOOP;
  INSERT INTO digest_out
    SELECT 'lo', m.oid::text, md5(lo_get(m.oid)) FROM pg_largeobject_metadata m;
  -- Objects without rows: the enum's labels, the domain's check, the trigger, the schemas.
  INSERT INTO digest_out
    SELECT 'enum', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid GROUP BY t.typname;
  INSERT INTO digest_out
    SELECT 'domain', t.typname, pg_get_constraintdef(c.oid)
    FROM pg_type t JOIN pg_constraint c ON c.contypid = t.oid WHERE t.typtype = 'd';
  INSERT INTO digest_out
    SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal;
  INSERT INTO digest_out
    SELECT 'schema', nspname, '' FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema';
END $$;
SELECT kind || '|' || name || '|' || digest FROM digest_out ORDER BY kind, name;
`;
