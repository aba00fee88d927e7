import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { RecoveryRecord, RecoveryRequest } from '../../lambdas/recovery/contract';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { beginRecovery, recordKey, updateRecovery } from '../../lambdas/recovery/store';
import { afterCutoverSteps } from '../../bin/cli/recover';
import { endpointWriteCommand } from '../../lambdas/recovery/cutover';
import { parseEnvironmentConfig } from '../../lib/config';
import { exampleEnvironment } from '../support/app';
import { startCloudFormationWithoutStacks, startSilentEndpoint } from '../support/aws-endpoints';
import { clockShiftEnv } from '../support/clock-shift';
import { startLocalTable } from '../support/dynalite';
import { LocalDynamo, startLocalDynamo } from '../support/dynamodb';
import { formatAge, utcMinute } from '../../lambdas/shared/format';

const ROOT = path.join(__dirname, '..', '..');

/**
 * `atmr-dr recover` as an operator runs it (a child process). The ops-state table is dynalite;
 * every other AWS endpoint points at a closed local port, so a command that reached AWS would fail
 * loudly instead of passing by accident.
 */
let dynamo: LocalDynamo;
let env: Record<string, string>;

/** Asynchronous: dynalite runs in this process and must keep answering while the CLI runs. */
function atmrDr(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['bin/atmr-dr.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.end();
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/**
 * `atmr-dr recover <args>` with one AWS service (`AWS_ENDPOINT_URL_<service>`) answered by a local
 * responder on 127.0.0.1 (the others stay on the closed port); returns the run and the request
 * bodies the responder received.
 */
async function atmrDrWith(service: 'SFN' | 'RDS', answer: { contentType: string; body: string; status?: number }, args: string[]): Promise<{ run: Awaited<ReturnType<typeof atmrDr>>; asked: string[] }> {
  const asked: string[] = [];
  const responder = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      asked.push(body);
      res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
  const saved = env;
  env = { ...env, [`AWS_ENDPOINT_URL_${service}`]: `http://127.0.0.1:${(responder.address() as AddressInfo).port}` };
  try {
    return { run: await atmrDr(args), asked };
  } finally {
    env = saved;
    await new Promise((resolve) => responder.close(resolve));
  }
}

/** DescribeExecution's answer for the recovery `id`'s execution, ended with `status`. */
const executionEnded = (id: string, status: string) => ({
  contentType: 'application/x-amz-json-1.0',
  body: JSON.stringify({ executionArn: `arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}`, stateMachineArn: 'arn:aws:states:eu-west-3:111111111111:stateMachine:recovery', status, startDate: 1_780_000_000 }),
});

/** The step once production runs on a copy restored without deletion protection. */
const DELETION_PROTECTION_STEP =
  'next: turn deletion protection on for atmr-prod-pitr-202611301402, production now (restored without it, so that abandon could delete it): aws rds modify-db-instance --db-instance-identifier atmr-prod-pitr-202611301402 --deletion-protection --apply-immediately';

const request = (id: string): RecoveryRequest & { sourceInstance: string } => ({
  recoveryId: id,
  toTime: '2026-11-30T14:02:00.000Z',
  newInstance: 'atmr-prod-pitr-202611301402',
  actor: 'alice',
  reason: 'bookings deleted',
  requestedAt: '2026-11-30T14:30:00.000Z',
  sourceInstance: 'atmr-prod',
});

/**
 * RDS (on this process's clock, as AWS is) with atmr-prod restorable from a day ago up to a minute
 * ago, and any other instance not found (a copy's name is free): what a dry run reads.
 */
async function restorableRds(): Promise<http.Server> {
  const iso = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
  const responder = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const xml = (action: string, result: string) =>
        `<${action}Response xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></${action}Response>`;
      if (body.includes('Action=DescribeDBInstanceAutomatedBackups')) {
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(xml('DescribeDBInstanceAutomatedBackups', `<DBInstanceAutomatedBackups><DBInstanceAutomatedBackup><Status>active</Status><RestoreWindow><EarliestTime>${iso(86_400_000)}</EarliestTime><LatestTime>${iso(60_000)}</LatestTime></RestoreWindow></DBInstanceAutomatedBackup></DBInstanceAutomatedBackups>`));
      } else if (body.includes('DBInstanceIdentifier=atmr-prod&') || body.endsWith('DBInstanceIdentifier=atmr-prod')) {
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(xml('DescribeDBInstances', `<DBInstances><DBInstance><DBInstanceIdentifier>atmr-prod</DBInstanceIdentifier><DBInstanceClass>db.t4g.medium</DBInstanceClass><MultiAZ>false</MultiAZ><BackupRetentionPeriod>7</BackupRetentionPeriod><LatestRestorableTime>${iso(60_000)}</LatestRestorableTime></DBInstance></DBInstances>`));
      } else {
        res.writeHead(404, { 'content-type': 'text/xml' });
        res.end('<ErrorResponse><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>not found</Message></Error><RequestId>r2</RequestId></ErrorResponse>');
      }
    });
  });
  await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
  return responder;
}

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  env = {
    AWS_REGION: 'eu-west-3',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_MAX_ATTEMPTS: '1',
    ATMR_OPS_TABLE: dynamo.tableName,
    ATMR_RECOVERY_STATE_MACHINE: 'arn:aws:states:eu-west-3:111111111111:stateMachine:recovery',
  };
  const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
  await beginRecovery(store, request('r20261130143000-aaaa'));
  await updateRecovery(store, 'r20261130143000-aaaa', {
    status: 'verified',
    newInstanceHost: 'new.rds',
    verification: { ok: true, checkedAt: '2026-11-30T15:00:00.000Z', problems: [], rows: [{ check: 'rows in booking', production: '120', recovered: '100 (-20)', outcome: 'differs' }] },
  });
});

afterAll(async () => dynamo.stop());

describe('atmr-dr recover', () => {
  it('requires --reason, before any AWS call', async () => {
    const run = await atmrDr(['recover', '--to-time', '5 minutes ago']);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('atmr-dr: recover: required option not given: --reason <text> (why, e.g. "bookings deleted by migration 4f2a at 14:05": recorded with who asked) (see npx --no atmr-dr recover --help)\n');
  });

  it('a time ago ("5 min ago", as --expires takes "5m") counts back from RDS\'s clock, not a laptop\'s an hour ahead, and says the UTC time it is', async () => {
    // Arrange: RDS (on this process's clock, as AWS is) with atmr-prod restorable up to a minute
    // ago, its copy's name free; the CLI on a laptop whose clock is an hour ahead.
    const responder = await restorableRds();
    // STS silent: a dry run records no one, so it is not asked (it held the plan 6 s before).
    const sts = await startSilentEndpoint();
    const saved = env;
    env = { ...env, AWS_ENDPOINT_URL_RDS: `http://127.0.0.1:${(responder.address() as AddressInfo).port}`, AWS_ENDPOINT_URL_STS: sts.url, ...clockShiftEnv(fs.mkdtempSync(path.join(os.tmpdir(), 'recover-clock-')), 3_600_000) };
    try {
      // Act
      const before = Date.now();
      const run = await atmrDr(['recover', '--to-time', '5 min ago', '--reason', 'bookings deleted', '--dry-run']);
      const after = Date.now();

      // Assert: 5 min before RDS's now (its Date header is to the second), and said as such
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      expect(sts.received()).toBe(0);
      const [said, plan] = run.stdout.split('\n');
      const toTime = /^--to-time "5 min ago" is (\S+) \(UTC, by RDS's clock\)$/.exec(said)?.[1];
      expect(Date.parse(toTime ?? '')).toBeGreaterThanOrEqual(before - 300_000 - 1_000);
      expect(Date.parse(toTime ?? '')).toBeLessThanOrEqual(after - 300_000);
      expect(plan).toContain(`as of ${toTime} -> new instance atmr-prod-pitr-`);
    } finally {
      env = saved;
      await sts.stop();
      await new Promise((resolve) => responder.close(resolve));
    }
  });

  it('a dry run names no actor it cannot know offline: --json gives actor null and what the start records instead, the text no name', async () => {
    // A login name and ATMR_OPERATOR set, STS silent: the start would record the STS caller ARN
    // (ATMR_OPERATOR, then USER, only if STS cannot be read), which a dry run does not ask for.
    const responder = await restorableRds();
    const sts = await startSilentEndpoint();
    const saved = env;
    env = { ...env, AWS_ENDPOINT_URL_RDS: `http://127.0.0.1:${(responder.address() as AddressInfo).port}`, AWS_ENDPOINT_URL_STS: sts.url, USER: 'alice', ATMR_OPERATOR: 'Jean Dupont' };
    try {
      const json = await atmrDr(['recover', '--to-time', '5 minutes ago', '--reason', 'bookings deleted', '--dry-run', '--json']);
      const text = await atmrDr(['recover', '--to-time', '5 minutes ago', '--reason', 'bookings deleted', '--dry-run']);

      expect([json.status, json.stderr, text.status, text.stderr]).toEqual([0, '', 0, '']);
      expect(sts.received()).toBe(0);
      const plan = JSON.parse(json.stdout) as { dryRun: boolean; request: Record<string, unknown>; actorAtStart: string };
      expect(plan).toMatchObject({ dryRun: true, request: { actor: null, reason: 'bookings deleted' } });
      expect(Object.keys(plan.request)).toEqual(['recoveryId', 'toTime', 'newInstance', 'actor', 'reason', 'requestedAt']);
      expect(plan.actorAtStart).toBe('your STS caller ARN, read when the recovery starts; when STS cannot be read, $ATMR_OPERATOR, else $USER, else $LOGNAME, else unknown-operator');
      expect(`${json.stdout}${text.stdout}`).not.toMatch(/alice|Jean Dupont/);
      expect(text.stdout).toMatch(/^dry run, nothing started: atmr-prod/m);
    } finally {
      env = saved;
      await sts.stop();
      await new Promise((resolve) => responder.close(resolve));
    }
  });

  it('a dry run ends with the command that starts what it planned: the options given, the time as the plan\'s UTC instant, the reason as one shell word', async () => {
    // Arrange: RDS answering the plan's reads; a time ago, which run later as typed would restore a later time
    const responder = await restorableRds();
    const saved = env;
    env = { ...env, AWS_ENDPOINT_URL_RDS: `http://127.0.0.1:${(responder.address() as AddressInfo).port}` };
    const reason = "bookings deleted by migration 4f2a at 14:05, l'équipe prévenue";
    try {
      // Act
      const run = await atmrDr(['recover', '--env', 'example', '--to-time', '5 min ago', '--reason', reason, '--no-follow', '--dry-run']);

      // Assert: the last line, read by a shell as the operator's would, is the same recovery without --dry-run
      expect([run.status, run.stderr]).toEqual([0, '']);
      const lines = run.stdout.trimEnd().split('\n');
      const toTime = /as of (\S+) -> new instance/.exec(lines.at(-2) ?? '')?.[1];
      expect(lines.at(-2)).toMatch(/^dry run, nothing started: atmr-prod/);
      expect(lines.at(-1)).toMatch(/^next: npx --no atmr-dr recover /);
      const argv = spawnSync('sh', ['-c', `for a in ${lines.at(-1)!.replace(/^next: /, '')}; do printf '%s\\0' "$a"; done`], { encoding: 'utf8' }).stdout.split('\0').slice(0, -1);
      expect(argv).toEqual(['npx', '--no', 'atmr-dr', 'recover', '--env', 'example', '--to-time', toTime, '--no-follow', '--reason', reason]);
      // Given its own --dry-run, the printed command plans the very same recovery (time and name;
      // the restore window, RDS's, has moved on meanwhile)
      const again = await atmrDr([...argv.slice(3), '--dry-run']);
      const planned = (line: string | undefined) => line?.replace(/; restore window .*$/, '');
      expect(planned(again.stdout.split('\n').find((line) => line.startsWith('dry run')))).toBe(planned(lines.at(-2)));
    } finally {
      env = saved;
      await new Promise((resolve) => responder.close(resolve));
    }
  });

  it('refuses a time without a zone on a machine in Europe/Paris (TZ) offering 14:02 Paris time first, then Z', async () => {
    const saved = env;
    env = { ...env, TZ: 'Europe/Paris' };
    try {
      const run = await atmrDr(['recover', '--to-time', '2026-12-06T14:02', '--reason', 'x']);
      expect(run.status).toBe(2);
      expect(run.stderr).toBe('atmr-dr: recover: --to-time "2026-12-06T14:02" has no time zone: 14:02 in Europe/Paris is 2026-12-06T14:02+01:00 (13:02Z); or add Z for UTC (2026-12-06T14:02Z)\n');
    } finally {
      env = saved;
    }
  });

  it("a recovery started after a cutover whose old instance the config still names, production's endpoint unreadable (SSM unreachable), is refused: exit 2, one line naming that cutover, its copy and when, the cdk.json keys and why the endpoint could not tell; nothing started", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const before = (await dynamo.ddb.send(new GetCommand({ TableName: dynamo.tableName, Key: recordKey('r20261130143000-aaaa') }))).Item!.status as RecoveryRecord['status'];
    await updateRecovery(store, 'r20261130143000-aaaa', { status: 'cut-over', journal: [{ step: 'killswitch back', state: 'done', startedAt: '2026-11-30T15:19:00.000Z', finishedAt: '2026-11-30T15:20:00.000Z', by: 'alice' }] });
    // The tests after this one read the recovery as it was. Not a dry run: every AWS endpoint is closed, a start that went on would fail there.
    const run = await atmrDr(['recover', '--to-time', new Date(Date.now() - 3_600_000).toISOString(), '--reason', 'x']).finally(() => updateRecovery(store, 'r20261130143000-aaaa', { status: before, journal: [] }));
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      "atmr-dr: recover: recovery r20261130143000-aaaa cut production (example) over to atmr-prod-pitr-202611301402 at 2026-11-30T15:20:00.000Z, replacing atmr-prod: database.instanceIdentifier still names atmr-prod: a recovery would restore it, not production; set database.instanceIdentifier and database.host to atmr-prod-pitr-202611301402 in cdk.json, then start it again; production's endpoint (parameter /atmr/example/database-host) could not be read (Error: connect ECONNREFUSED 127.0.0.1:9): if production was taken back to atmr-prod by hand, check that endpoint and your right to read it, then run the command again\n",
    );
  });

  it("a recovery started after a cutover that production was taken back from by hand (the endpoint names the old instance again) goes on: one stderr line says so, then the plan", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const before = (await dynamo.ddb.send(new GetCommand({ TableName: dynamo.tableName, Key: recordKey('r20261130143000-aaaa') }))).Item!.status as RecoveryRecord['status'];
    const old = 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com:5432';
    await updateRecovery(store, 'r20261130143000-aaaa', {
      status: 'cut-over',
      journal: [
        { step: 'switch database endpoint', state: 'done', startedAt: '2026-11-30T15:10:00.000Z', finishedAt: '2026-11-30T15:10:01.000Z', by: 'alice', undo: { endpoint: { previous: old, target: 'new.rds:5432' } } },
        { step: 'killswitch back', state: 'done', startedAt: '2026-11-30T15:19:00.000Z', finishedAt: '2026-11-30T15:20:00.000Z', by: 'alice' },
      ],
    });
    // SSM holds the endpoint parameter as the commands going back by hand left it.
    const ssm = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        const input = JSON.parse(body || '{}') as { Name?: string };
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ Parameter: { Name: input.Name, Type: 'String', Value: old, Version: 7 } }));
      });
    });
    await new Promise<void>((resolve) => ssm.listen(0, '127.0.0.1', resolve));
    const rds = await restorableRds();
    const saved = env;
    const port = (server: http.Server) => (server.address() as AddressInfo).port;
    env = { ...env, AWS_ENDPOINT_URL_SSM: `http://127.0.0.1:${port(ssm)}`, AWS_ENDPOINT_URL_RDS: `http://127.0.0.1:${port(rds)}` };
    try {
      const run = await atmrDr(['recover', '--to-time', new Date(Date.now() - 3_600_000).toISOString(), '--reason', 'x', '--dry-run']);

      expect(run.stderr).toBe(
        `atmr-dr: recover: recovery r20261130143000-aaaa cut production (example) over to atmr-prod-pitr-202611301402 at 2026-11-30T15:20:00.000Z, and production's endpoint (parameter /atmr/example/database-host: ${old}) names atmr-prod again (taken back by hand): the recovery proceeds from atmr-prod\n`,
      );
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(/^dry run, nothing started: atmr-prod /);
    } finally {
      env = saved;
      await updateRecovery(store, 'r20261130143000-aaaa', { status: before, journal: [] });
      await new Promise((resolve) => ssm.close(resolve));
      await new Promise((resolve) => rds.close(resolve));
    }
  });

  it('Ctrl-C while it follows a recovery it started says the recovery keeps running and how to follow it, exit 130', async () => {
    // Arrange: a store of its own (no recovery in progress), RDS restorable, Step Functions starting
    // the workflow and answering RUNNING to every DescribeExecution.
    const own = await startLocalDynamo('ops-state-follow');
    const rds = await restorableRds();
    const sfn = http.createServer((req, res) => {
      req.resume().on('end', () => {
        const target = String(req.headers['x-amz-target'] ?? '');
        const executionArn = 'arn:aws:states:eu-west-3:111111111111:execution:recovery:started';
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify(target.endsWith('.StartExecution') ? { executionArn, startDate: Date.now() / 1000 } : { executionArn, status: 'RUNNING', startDate: Date.now() / 1000 }));
      });
    });
    await new Promise<void>((resolve) => sfn.listen(0, '127.0.0.1', resolve));
    const port = (server: http.Server) => (server.address() as AddressInfo).port;
    const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['bin/atmr-dr.ts', 'recover', '--to-time', '10 min ago', '--reason', 'bookings deleted'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        ...env,
        USER: 'alice',
        AWS_ENDPOINT_URL_DYNAMODB: own.endpoint,
        ATMR_OPS_TABLE: own.tableName,
        AWS_ENDPOINT_URL_RDS: `http://127.0.0.1:${port(rds)}`,
        AWS_ENDPOINT_URL_SFN: `http://127.0.0.1:${port(sfn)}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      output += chunk.toString();
    });
    try {
      // Act: stopped once the workflow is started and followed (its first status line is out)
      await new Promise<void>((resolve, reject) => {
        const timer = setInterval(() => {
          if (/ recovery r\S+: \S+/.test(stderr)) {
            clearInterval(timer);
            child.kill('SIGINT');
            resolve();
          }
        }, 50);
        child.on('close', () => {
          clearInterval(timer);
          reject(new Error(`ended before it followed: ${output}`));
        });
      });
      const status = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('close', resolve)));

      // Assert
      const id = /recovery (r\d{14}-[0-9a-f]{4}) started/.exec(output)?.[1];
      expect(id).toBeDefined();
      expect(stderr.trimEnd().split('\n').pop()).toBe(
        `atmr-dr: recover interrupted (received SIGINT) while following: recovery ${id} keeps running (the workflow does not need this process): npx --no atmr-dr recover status ${id}`,
      );
      expect(status).toBe(130);
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => rds.close(resolve));
      await new Promise((resolve) => sfn.close(resolve));
      await own.stop();
    }
  });

  it('refuses a time without a zone in one line', async () => {
    const saved = env;
    env = { ...env, TZ: 'UTC' };
    const run = await atmrDr(['recover', '--to-time', '2026-11-30 14:02', '--reason', 'x']).finally(() => (env = saved));
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('atmr-dr: recover: --to-time "2026-11-30 14:02" has no time zone: add Z for UTC (2026-11-30T14:02Z) or an offset (2026-11-30T14:02+01:00)\n');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('status shows the recovery, its verification side by side and the next step', async () => {
    const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-aaaa', 'SUCCEEDED'), ['recover', 'status', 'r20261130143000-aaaa']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/recovery r20261130143000-aaaa: verified; atmr-prod as of 2026-11-30T14:02:00.000Z -> atmr-prod-pitr-202611301402/);
    expect(run.stdout).toMatch(/rows in booking\s+120\s+100 \(-20\)\s+differs/);
    expect(run.stdout).toMatch(/next: npx --no atmr-dr recover cutover r20261130143000-aaaa --yes/);
  });

  it('status without an id shows the recovery in progress', async () => {
    const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-aaaa', 'SUCCEEDED'), ['recover', 'status', '--json']);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ recoveryId: 'r20261130143000-aaaa', status: 'verified', actor: 'alice', reason: 'bookings deleted' });
  });

  it('status reads each recovery record once (its own, and the recent ones looked at for a cutover) and lists the recoveries once', async () => {
    // Arrange: the ops-state table behind a forwarder that notes each DynamoDB call and the record it reads
    const calls: string[] = [];
    const forwarder = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const action = String(req.headers['x-amz-target']).replace(/^DynamoDB_20120810\./, '');
        const key = (JSON.parse(body.toString()) as { Key?: { pk?: { S?: string } } }).Key?.pk?.S;
        calls.push(key === undefined ? action : `${action} ${key}`);
        const upstream = http.request(dynamo.endpoint, { method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.end(body);
      });
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    const saved = env;
    env = { ...env, AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}` };
    try {
      for (const args of [['recover', 'status', 'r20261130143000-aaaa'], ['recover', 'status']]) {
        calls.length = 0;

        // Act
        const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-aaaa', 'SUCCEEDED'), args);

        // Assert
        expect([run.status, run.stderr]).toEqual([0, '']);
        expect(run.stdout).toMatch(/^recovery r20261130143000-aaaa: verified;/m);
        const reads = calls.filter((call) => call.startsWith('GetItem ') && call !== 'GetItem RECOVERY#ACTIVE');
        expect(reads).toContain('GetItem RECOVERY#r20261130143000-aaaa');
        expect(reads).toEqual([...new Set(reads)]);
        expect(calls.filter((call) => call === 'Query')).toEqual(['Query']);
      }
    } finally {
      env = saved;
      await new Promise((resolve) => forwarder.close(resolve));
    }
  });

  it('status --json with no recovery recorded prints null (valid JSON), the text form says so in words', async () => {
    const empty = await startLocalTable('ops-state-without-recoveries');
    const saved = env;
    env = { ...env, AWS_ENDPOINT_URL_DYNAMODB: empty.endpoint, ATMR_OPS_TABLE: empty.tableName };
    try {
      const json = await atmrDr(['recover', 'status', '--json']);
      const text = await atmrDr(['recover', 'status']);

      expect([json.status, json.stderr, JSON.parse(json.stdout) as unknown]).toEqual([0, '', null]);
      expect([text.status, text.stdout]).toEqual([0, 'no recovery recorded\n']);
    } finally {
      env = saved;
      await empty.close();
    }
  });

  it('cutover refuses without --yes when standard input is not a terminal, changing nothing', async () => {
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa']);
    expect(run.status).toBe(2);
    // Which writes the cutover leaves behind is part of the question: the copy stops at the restore time.
    expect(run.stderr).toMatch(
      /^atmr-dr: recover cutover: put production \(example\) on atmr-prod-pitr-202611301402 \(as of 2026-11-30T14:02:00.000Z\); production's writes after 2026-11-30T14:02:00Z \((\d+ (?:min|h|d)|\d+\.\d h) ago\) are not on the copy: they stay on atmr-prod\? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm \(nothing changed\)\n$/,
    );
    expect(/\(([^()]+) ago\) are not on the copy/.exec(run.stderr)?.[1]).toBe(formatAge((Date.now() - Date.parse('2026-11-30T14:02:00.000Z')) / 1000));
  });

  it('cutover refuses an unverified recovery', async () => {
    await updateRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, 'r20261130143000-aaaa', { status: 'verification-failed' });
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa', '--yes']);
    expect(run.status).toBe(3);
    expect(run.stderr).toBe(
      'atmr-dr: recover cutover: recovery r20261130143000-aaaa is "verification-failed": only a verified recovery can be cut over (see "npx --no atmr-dr recover status r20261130143000-aaaa")\n',
    );
  });

  it('names an unknown recovery', async () => {
    const run = await atmrDr(['recover', 'abandon', 'r20990101000000-ffff', '--yes']);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('atmr-dr: recover: no recovery r20990101000000-ffff: "npx --no atmr-dr recover status" without an id shows the one in progress, else the latest\n');
  });

  it.each([
    [[], 'nothing to do'],
    [['--undo'], 'there is no undo once a cutover is done (production may have taken writes on atmr-prod-pitr-202611301402); going back to atmr-prod (kept as atmr-prod-replaced-202611301530) is by hand, as docs/recovery.md "Going back after a cutover" says'],
  ])('a cutover run again once done (%j) says when it was cut over and what is left, exit 3, before any AWS call', async (flags: string[], what: string) => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const journal = [{ step: 'untag new production instance', state: 'done' as const, startedAt: '2026-11-30T15:30:01.000Z', finishedAt: '2026-11-30T15:30:02.000Z', by: 'alice' }];
    await updateRecovery(store, 'r20261130143000-aaaa', { status: 'cut-over', journal, replacedInstance: 'atmr-prod-replaced-202611301530' });
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa', ...flags, '--yes']);
    expect(run.status).toBe(3);
    const command = flags.length ? 'recover cutover --undo' : 'recover cutover';
    expect(run.stderr).toMatch(new RegExp(`^atmr-dr: ${command}: recovery r20261130143000-aaaa was already cut over at 2026-11-30T15:30:02.000Z: production runs on atmr-prod-pitr-202611301402; ${what.replace(/[().]/g, '\\$&')}[^\n]*\n$`));
  });

  it('--undo of a cutover done prints the commands that go back to the old instance, in order, ready to paste, from the endpoint the cutover journaled (the renamed instance\'s address); exit 3, one line on stderr, before any AWS call', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const journal = [
      { step: 'switch database endpoint', state: 'done' as const, startedAt: '2026-11-30T15:20:01.000Z', finishedAt: '2026-11-30T15:20:02.000Z', by: 'alice', undo: { endpoint: { previous: 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com:5432', target: 'new.rds:5432' } } },
      { step: 'untag new production instance', state: 'done' as const, startedAt: '2026-11-30T15:30:01.000Z', finishedAt: '2026-11-30T15:30:02.000Z', by: 'alice' },
    ];
    await updateRecovery(store, 'r20261130143000-aaaa', { status: 'cut-over', journal, replacedInstance: 'atmr-prod-replaced-202611301530' });
    const run = await atmrDr(['recover', '--env', 'example', 'cutover', 'r20261130143000-aaaa', '--undo', '--yes']);
    expect(run.status).toBe(3);
    expect(run.stdout.trimEnd().split('\n')).toEqual([
      "npx --no atmr-dr killswitch --env example enable --mode maintenance --reason 'going back to atmr-prod-replaced-202611301530 from recovery r20261130143000-aaaa' --expires never --yes",
      "aws ssm put-parameter --name /atmr/example/database-host --type String --overwrite --value atmr-prod-replaced-202611301530.abcdefghijkl.eu-west-3.rds.amazonaws.com:5432",
      "aws ecs update-service --cluster arn:aws:ecs:eu-west-3:111111111111:cluster/atmr-prod --service atmr-api --force-new-deployment",
      "aws ecs update-service --cluster arn:aws:ecs:eu-west-3:111111111111:cluster/atmr-prod --service atmr-celery-worker --force-new-deployment",
      "aws ecs update-service --cluster arn:aws:ecs:eu-west-3:111111111111:cluster/atmr-prod --service atmr-celery-beat --force-new-deployment",
      "aws ecs wait services-stable --cluster arn:aws:ecs:eu-west-3:111111111111:cluster/atmr-prod --services atmr-api atmr-celery-worker atmr-celery-beat",
      "npx --no atmr-dr killswitch --env example disable --reason 'going back to atmr-prod-replaced-202611301530 from recovery r20261130143000-aaaa' --yes",
    ]);
    expect(run.stderr).toBe(
      'atmr-dr: recover cutover --undo: recovery r20261130143000-aaaa was already cut over at 2026-11-30T15:30:02.000Z: production runs on atmr-prod-pitr-202611301402; there is no undo once a cutover is done (production may have taken writes on atmr-prod-pitr-202611301402); going back to atmr-prod (kept as atmr-prod-replaced-202611301530) is by hand, the commands above (standard output), in order; the writes made on atmr-prod-pitr-202611301402 since are not on atmr-prod (kept as atmr-prod-replaced-202611301530): copy them over before the killswitch is lifted\n',
    );
    // A secret is written back as the cutover writes it: re-read, only its host and port (a number) changed.
    expect(endpointWriteCommand({ kind: 'secretHost', secretArn: 'arn:s' }, 'h.example:5432')).toBe(
      `aws secretsmanager get-secret-value --secret-id arn:s --query SecretString --output text | jq -c '.host = "h.example" | .port = 5432' | aws secretsmanager put-secret-value --secret-id arn:s --secret-string file:///dev/stdin`,
    );
  });

  it.each([
    ['--resume', 'expected cutting-over: only an interrupted cutover can be resumed'],
    ['--undo', 'expected cutting-over or cutover-failed: only an interrupted or failed cutover can be undone'],
  ])('cutover %s of a verified recovery (no cutover begun) is refused before anything is printed or asked: exit 3, one line on stderr, nothing on stdout', async (flag: string, what: string) => {
    await updateRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, 'r20261130143000-aaaa', { status: 'verified', journal: [] });
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa', flag, '--yes']);
    expect(run.status).toBe(3);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(`atmr-dr: recover cutover ${flag}: recovery r20261130143000-aaaa is "verified", ${what} (see "npx --no atmr-dr recover status r20261130143000-aaaa")\n`);
  });

  it('cutover refuses --resume with --undo in one line, before any AWS call', async () => {
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa', '--resume', '--undo', '--yes']);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('atmr-dr: recover cutover: --resume and --undo exclude each other: pick one (see "npx --no atmr-dr recover status ID")\n');
  });

  it('a new cutover of an interrupted one is refused, pointing at status, --resume and --undo', async () => {
    await updateRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, 'r20261130143000-aaaa', { status: 'cutting-over' });
    const run = await atmrDr(['recover', 'cutover', 'r20261130143000-aaaa', '--yes']);
    expect(run.status).toBe(3);
    expect(run.stderr).toBe(
      'atmr-dr: recover cutover: recovery r20261130143000-aaaa is "cutting-over": a cutover was interrupted: see "npx --no atmr-dr recover status r20261130143000-aaaa", then --resume or --undo\n',
    );
  });

  it('status of a cutover stopped after the killswitch was reopened offers --resume, and --undo only once production is back on the old instance by hand', async () => {
    // Arrange: a cutover whose journal reached "killswitch back"
    const journal = ['killswitch maintenance', 'switch database endpoint', 'redeploy ECS services', 'check /ready', 'check writes accepted', 'killswitch back'].map((step) => ({
      step,
      state: 'done' as const,
      startedAt: '2026-11-30T15:00:00.000Z',
      by: 'bob',
    }));
    await updateRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, 'r20261130143000-aaaa', { status: 'cutting-over', journal });

    // Act
    const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-aaaa', 'SUCCEEDED'), ['recover', 'status', 'r20261130143000-aaaa']);

    // Assert
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(
      'next: the cutover stopped or is running: continue it with "npx --no atmr-dr recover cutover r20261130143000-aaaa --resume --yes" (the killswitch was reopened: users may have written on atmr-prod-pitr-202611301402), ' +
        'or, once production is back on atmr-prod by hand (the API\'s endpoint set back to it, atmr-prod and atmr-prod-pitr-202611301402 under their names), close it with "npx --no atmr-dr recover cutover r20261130143000-aaaa --undo --yes"',
    );
  });

  it('status of a recovery whose abandon stopped before the end says to run abandon again', async () => {
    await updateRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, 'r20261130143000-aaaa', { status: 'abandoning' });

    const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-aaaa', 'ABORTED'), ['recover', 'status', 'r20261130143000-aaaa']);

    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/recovery r20261130143000-aaaa: abandoning/);
    expect(run.stdout).toContain('next: the abandon stopped before the end: run "npx --no atmr-dr recover abandon r20261130143000-aaaa" again to finish it');
  });

  describe('after the password was rotated past the target time', () => {
    /** A recovery record of its own (the lock stays with the one above). */
    async function givenRecord(id: string, fields: Record<string, unknown>) {
      await dynamo.ddb.send(new PutCommand({ TableName: dynamo.tableName, Item: { ...recordKey(id), ...request(id), updatedAt: '2026-11-30T15:00:00.000Z', newInstanceHost: 'new.rds', ...fields } }));
    }

    it('status of a copy verified after the workflow reset its password shows the reset and the cutover as next step', async () => {
      // Arrange
      await givenRecord('r20261130143000-bbbb', {
        status: 'verified',
        passwordReset: { requestedAt: '2026-11-30T14:58:00.000Z', appliedAt: '2026-11-30T14:59:30.000Z', reason: 'atmr-prod-pitr-202611301402 refused the database secret\'s credentials (password authentication failed for user "atmr")' },
      });

      // Act
      const { run } = await atmrDrWith('SFN', executionEnded('r20261130143000-bbbb', 'SUCCEEDED'), ['recover', 'status', 'r20261130143000-bbbb']);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(
        'password reset: atmr-prod-pitr-202611301402 refused the database secret\'s credentials (password authentication failed for user "atmr"); the workflow set the copy\'s master password to the secret\'s current one (rotated after the target time) at 2026-11-30T14:58:00.000Z, applied at 2026-11-30T14:59:30.000Z',
      );
      expect(run.stdout).toContain('next: npx --no atmr-dr recover cutover r20261130143000-bbbb --yes');
    });

    it('status of a recovery left "verifying" after its password reset by a workflow that ended does not say to wait for it', async () => {
      // Arrange: the workflow was stopped by hand during the reset (Step Functions, a local JSON
      // responder, says ABORTED); nothing will change the record any more.
      const id = 'r20261130143000-ffff';
      await givenRecord(id, {
        status: 'verifying',
        executionArn: `arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}`,
        passwordReset: { requestedAt: '2026-11-30T14:58:00.000Z', reason: 'refused the database secret\'s credentials' },
      });

      // Act
      const { run } = await atmrDrWith('SFN', executionEnded(id, 'ABORTED'), ['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('workflow ABORTED');
      expect(run.stdout).not.toContain('next: wait');
      expect(run.stdout).toContain(
        `next: the workflow ended (ABORTED) before it verified atmr-prod-pitr-202611301402 again: the copy is kept but not verified, so it cannot be cut over: "npx --no atmr-dr recover abandon ${id}"`,
      );
    });

    it('status of a recovery left "restoring" by a workflow stopped by hand (no page for an aborted execution) says how to free the lock', async () => {
      // Arrange: stopped in the console during the restore; Recovery-WorkflowFailed does not count
      // aborted executions, so nobody is paged, and the record keeps the one-recovery lock
      const id = 'r20261130143000-abab';
      await givenRecord(id, { status: 'restoring', newInstanceHost: undefined, executionArn: `arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}` });

      // Act
      const { run } = await atmrDrWith('SFN', executionEnded(id, 'ABORTED'), ['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('workflow ABORTED');
      expect(run.stdout).toContain(
        `next: the workflow ended (ABORTED) with the recovery still "restoring": nothing will change it any more, and it holds the one-recovery lock: "npx --no atmr-dr recover abandon ${id}" deletes atmr-prod-pitr-202611301402 and frees the lock, then start a new recovery`,
      );
    });

    it('status of a recovery still restoring says for how long, from its request, with --no-follow and while following', async () => {
      // Arrange: requested 12 minutes ago, its workflow running (Step Functions, a local responder)
      const id = 'r20261130143000-a1a1';
      const requestedAt = new Date(Date.now() - 12 * 60_000);
      await givenRecord(id, { status: 'restoring', newInstanceHost: undefined, requestedAt: requestedAt.toISOString(), executionArn: `arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}` });
      const elapsed = `restoring for 12 min (since the request at ${utcMinute(requestedAt.getTime())})`;

      // Act: once, then followed (the workflow answers RUNNING to the status's read and the first poll, then SUCCEEDED: the following ends)
      const { run } = await atmrDrWith('SFN', executionEnded(id, 'RUNNING'), ['recover', 'status', id, '--no-follow']);
      const answers = ['RUNNING', 'RUNNING'];
      const sfn = http.createServer((req, res) => {
        req.resume().on('end', () => {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
          res.end(executionEnded(id, answers.shift() ?? 'SUCCEEDED').body);
        });
      });
      await new Promise<void>((resolve) => sfn.listen(0, '127.0.0.1', resolve));
      const saved = env;
      env = { ...env, AWS_ENDPOINT_URL_SFN: `http://127.0.0.1:${(sfn.address() as AddressInfo).port}`, ATMR_RECOVER_POLL_SECONDS: '0' };
      const followed = await atmrDr(['recover', 'status', id]).finally(() => {
        env = saved;
        sfn.close();
      });

      // Assert: the line after the status, and on the first line followed (not on the one after the workflow ended)
      expect(run.status).toBe(0);
      expect(run.stdout.split('\n')[1]).toBe(elapsed);
      const [first, last] = followed.stderr.trimEnd().split('\n');
      expect(first).toMatch(new RegExp(`: restoring; .*workflow RUNNING; .*; ${elapsed.replace(/[()]/g, '\\$&')}$`));
      expect(last).toMatch(/workflow SUCCEEDED; asked by alice: bookings deleted$/);
      expect(followed.stdout).not.toContain('restoring for');
    });

    it('status when Step Functions refuses DescribeExecution prints the refusal in one line naming the call, the execution and the grant, exit 1, and no status', async () => {
      // Arrange: a recovery whose workflow runs; the operator's role lacks states:DescribeExecution
      const id = 'r20261130143000-a9a9';
      const executionArn = `arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}`;
      await givenRecord(id, { status: 'restoring', newInstanceHost: undefined, executionArn });
      const denied = {
        status: 400,
        contentType: 'application/x-amz-json-1.0',
        body: JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', message: 'User: arn:aws:sts::111111111111:assumed-role/atmr-readonly/bob is not authorized to perform: states:DescribeExecution' }),
      };

      // Act
      const { run } = await atmrDrWith('SFN', denied, ['recover', 'status', id]);

      // Assert: not "restoring" with no workflow, which reads as one to wait for
      expect([run.status, run.stdout, run.stderr]).toEqual([
        1,
        '',
        `atmr-dr: cannot call DescribeExecution on execution ${executionArn} (states:DescribeExecution): Step Functions refused it (AccessDeniedException: User: arn:aws:sts::111111111111:assumed-role/atmr-readonly/bob is not authorized to perform: states:DescribeExecution); check the credentials (AWS_PROFILE) and that the role may do it\n`,
      ]);
    });

    describe('a start stopped before its record took the workflow (Ctrl-C while StartExecution hung): record "restoring", no executionArn, lock held', () => {
      it('status finds the workflow the start did launch by the recovery\'s name and says how to free the lock once it ended', async () => {
        const id = 'r20261130143000-acac';
        await givenRecord(id, { status: 'restoring', newInstanceHost: undefined });

        const { run, asked } = await atmrDrWith('SFN', executionEnded(id, 'FAILED'), ['recover', 'status', id]);

        expect(run.status).toBe(0);
        expect(asked).toEqual([expect.stringContaining(`"executionArn":"arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}"`)]);
        expect(run.stdout).toContain('workflow FAILED');
        expect(run.stdout).toContain(`next: the workflow ended (FAILED) with the recovery still "restoring"`);
      });

      it('status of one whose workflow never started says so and that abandon frees the lock', async () => {
        const id = 'r20261130143000-adad';
        await givenRecord(id, { status: 'restoring', newInstanceHost: undefined });
        const missing = { status: 400, contentType: 'application/x-amz-json-1.0', body: JSON.stringify({ __type: 'com.amazonaws.swf.service.v2.model#ExecutionDoesNotExist', message: `Execution Does Not Exist: '${id}'` }) };

        const { run } = await atmrDrWith('SFN', missing, ['recover', 'status', id]);

        expect(run.status).toBe(0);
        expect(run.stdout).toContain('workflow NOT STARTED');
        expect(run.stdout).toContain(
          `next: the workflow never started (the start stopped before Step Functions took it) with the recovery still "restoring": nothing will change it any more, and it holds the one-recovery lock: "npx --no atmr-dr recover abandon ${id}" deletes atmr-prod-pitr-202611301402 and frees the lock`,
        );
      });

      it.each(['verifying', 'abandoning'])(
        'status of one the workflow moved on by itself, or whose abandon stopped half-way ("%s"), still looks for its workflow by the recovery\'s name',
        async (status) => {
          // Arrange: the workflow the cut-off start launched moves the record on without its ARN.
          const id = status === 'verifying' ? 'r20261130143000-aeae' : 'r20261130143000-afaf';
          await givenRecord(id, { status, newInstanceHost: undefined });

          // Act
          const { run, asked } = await atmrDrWith('SFN', executionEnded(id, 'FAILED'), ['recover', 'status', id]);

          // Assert
          expect(run.status).toBe(0);
          expect(asked).toEqual([expect.stringContaining(`"executionArn":"arn:aws:states:eu-west-3:111111111111:execution:recovery:${id}"`)]);
          expect(run.stdout).toContain('workflow FAILED');
        },
      );

      it("abandon of one whose workflow cannot be looked for (the state machine's name unreadable) is refused before anything changes", async () => {
        // Arrange: an abandon that stopped half-way, no ARN; no state machine given and the stack's outputs unreachable.
        const id = 'r20261130143000-bcbc';
        await givenRecord(id, { status: 'abandoning', newInstanceHost: undefined });
        const saved = env;
        const { ATMR_RECOVERY_STATE_MACHINE: _given, ...withoutMachine } = env;
        env = withoutMachine;
        try {
          // Act
          const run = await atmrDr(['recover', 'abandon', id, '--yes']);

          // Assert
          expect(run.status).not.toBe(0);
          expect(run.stderr.trim().split('\n')).toHaveLength(1);
          expect(run.stderr).toMatch(/--state-machine/);
          expect((await dynamo.ddb.send(new GetCommand({ TableName: dynamo.tableName, Key: recordKey(id) }))).Item).toMatchObject({ status: 'abandoning' });
        } finally {
          env = saved;
        }
      });

      it.each([
        ['failed', 'r20261130143000-c0c0', 0],
        ['cut-over', 'r20261130143000-c1c1', 0],
        ['abandoned', 'r20261130143000-c2c2', 0],
        ['restoring', 'r20261130143000-c3c3', 1],
        ['verifying', 'r20261130143000-c4c4', 1],
        ['abandoning', 'r20261130143000-c5c5', 1],
      ] as const)('status of one "%s" reads the state machine from CloudFormation only while its workflow may run (%s: %d reads)', async (status, id, reads) => {
        // Arrange: no state machine given, so naming it means reading the Ops stack's outputs
        // (a local CloudFormation that counts the reads; no stack deployed there).
        await givenRecord(id, { status, newInstanceHost: undefined });
        const cloudFormation = await startCloudFormationWithoutStacks();
        const saved = env;
        const { ATMR_RECOVERY_STATE_MACHINE: _given, ...withoutMachine } = env;
        env = { ...withoutMachine, AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormation.url };
        try {
          // Act
          const run = await atmrDr(['recover', 'status', id]);

          // Assert
          expect(run.status).toBe(0);
          expect(run.stdout).toContain(`recovery ${id}: ${status};`);
          expect(cloudFormation.received()).toBe(reads);
        } finally {
          env = saved;
          await cloudFormation.stop();
        }
      });
    });

    it('status of a failed recovery whose copy is kept says it cannot be cut over and how to abandon it', async () => {
      // Arrange
      await givenRecord('r20261130143000-cccc', { status: 'failed', error: 'RecoveryLoginRefused: refused even after its master password was set (cleanup: kept)' });

      // Act
      const run = await atmrDr(['recover', 'status', 'r20261130143000-cccc']);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(
        'next: atmr-prod-pitr-202611301402 is kept (it became available) but is not verified, so it cannot be cut over: read the error above, then "npx --no atmr-dr recover abandon r20261130143000-cccc" (deleted after a final snapshot) and start a new recovery',
      );
    });

    it('status --env of a failed recovery whose error holds the workflow\'s command (with its --env) prints it with --env once, and its own lines with --env', async () => {
      // Arrange: the cleanup's text as the workflow records it, its commands naming their environment
      await givenRecord('r20261130143000-dddd', {
        status: 'failed',
        error: 'RecoveryInstanceTimeout: x (cleanup: atmr-prod-pitr-202611301402 is kept (it is available): inspect it, then "npx --no atmr-dr recover abandon r20261130143000-dddd --env example" deletes it after a final snapshot)',
      });

      // Act
      const run = await atmrDr(['recover', '--env', 'example', 'status', 'r20261130143000-dddd']);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('then "npx --no atmr-dr recover abandon r20261130143000-dddd --env example" deletes it');
      expect(run.stdout).toContain('"npx --no atmr-dr recover --env example abandon r20261130143000-dddd" (deleted after a final snapshot)');
      expect(run.stdout.match(/--env example/g)).toHaveLength(2);
    });
  });

  describe('a copy none of whose data could be read in time ("unverified")', () => {
    const id = 'r20261130143000-eeee';
    beforeAll(async () => {
      await dynamo.ddb.send(
        new PutCommand({
          TableName: dynamo.tableName,
          Item: {
            ...recordKey(id),
            ...request(id),
            updatedAt: '2026-11-30T15:00:00.000Z',
            newInstanceHost: 'new.rds',
            status: 'unverified',
            // Read in part: the budget left no time for the checks after the first one's timeout.
            verification: {
              ok: false,
              unread: true,
              unreadBy: { statementTimeoutMs: 60_000, budgetMs: 720_000 },
              checkedAt: '2026-11-30T15:00:00.000Z',
              problems: [],
              rows: [
                { check: 'rows in booking', production: '120', recovered: 'not read within 60 s (first reads of a fresh copy come from S3)', outcome: 'slow' },
                { check: 'rows in company', production: '5', recovered: "not read: the verification's 12 min were spent on slower checks (first reads of a fresh copy come from S3)", outcome: 'slow' },
                { check: 'Alembic revision', production: '4f2a', recovered: '4f2a', outcome: 'same' },
              ],
            },
          },
        }),
      );
    });

    it('status says it is not verified, why, and the three ways on: check by hand then cutover --unverified, or abandon', async () => {
      // Act
      const { run } = await atmrDrWith('SFN', executionEnded(id, 'SUCCEEDED'), ['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      const why = "no count or critical query of the copy was read: those started outlasted the 60 s statement timeout, and the verification's 12 min budget left no time to start the others";
      expect(run.stdout).toContain(`verification: NOT VERIFIED: ${why} (a fresh copy reads each block from S3 the first time)`);
      expect(run.stdout).toContain(
        `next: atmr-prod-pitr-202611301402 is NOT verified: ${why} (a fresh copy loads its blocks from S3 on first read); check its data by hand (psql on the copy with a longer statement_timeout: counts of the critical tables), then "npx --no atmr-dr recover cutover ${id} --unverified --yes"`,
      );
    });

    it('cutover without --unverified is refused in one line, exit 3, before any AWS call', async () => {
      // Act
      const run = await atmrDr(['recover', 'cutover', id, '--yes']);

      // Assert
      expect(run.status).toBe(3);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(
        new RegExp(`recover cutover: recovery ${id} is not verified: no count or critical query of the copy was read: those started outlasted the 60 s statement timeout, and the verification's 12 min budget .*; .*--unverified --yes.*; nothing was changed`),
      );
    });
  });

  describe('a verified copy (its verification read its data)', () => {
    const id = 'r20261130143000-acac';
    const item = () => ({
      ...recordKey(id),
      ...request(id),
      updatedAt: '2026-11-30T15:00:00.000Z',
      newInstanceHost: 'new.rds',
      status: 'verified',
      verification: { ok: true, checkedAt: '2026-11-30T15:00:00.000Z', problems: [], rows: [{ check: 'rows in booking', production: '120', recovered: '100 (-20)', outcome: 'differs' }] },
    });
    beforeAll(async () => {
      await dynamo.ddb.send(new PutCommand({ TableName: dynamo.tableName, Item: item() }));
    });

    it('cutover --unverified is refused in one line naming the flag and the fix (drop it), exit 2, before any AWS call, nothing written', async () => {
      // Act
      const run = await atmrDr(['recover', 'cutover', id, '--unverified', '--yes']);

      // Assert: the same way as "abandon --skip-final-snapshot" for a copy RDS can snapshot.
      expect(run.status).toBe(2);
      expect(run.stderr).toBe(
        `atmr-dr: recover cutover: --unverified: recovery ${id} is "verified": its verification read the copy's data, so there is nothing to cut over unverified: run "npx --no atmr-dr recover cutover ${id} --yes" without it; nothing changed\n`,
      );
      expect((await dynamo.ddb.send(new GetCommand({ TableName: dynamo.tableName, Key: recordKey(id) }))).Item).toEqual(item());
    });
  });

  it('abandon --skip-final-snapshot asks its confirmation saying production\'s backups need the same KMS key (not that they simply hold the data)', async () => {
    // Act: no terminal, no --yes: the question is printed in the refusal, before any AWS call.
    const run = await atmrDr(['recover', 'abandon', 'r20261130143000-aaaa', '--skip-final-snapshot']);

    // Assert
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(
      'atmr-dr: recover abandon: delete atmr-prod-pitr-202611301402 WITHOUT a final snapshot (RDS refuses one while it cannot use its KMS key; its data is also in the automated backups of atmr-prod, but they are encrypted with the same KMS key: a new recovery to 2026-11-30T14:02:00.000Z reads them only while RDS can use that key (enable it again first if it was disabled; a deleted key loses them too) and that time is in their restore window)? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm (nothing changed)\n',
    );
  });

  describe('after the cutover', () => {
    /** A recovery cut over onto atmr-prod-pitr-202611301402, atmr-prod renamed. */
    const givenCutOver = (id: string) =>
      dynamo.ddb.send(
        new PutCommand({
          TableName: dynamo.tableName,
          Item: { ...recordKey(id), ...request(id), updatedAt: '2026-11-30T16:00:00.000Z', newInstanceHost: 'new.rds', status: 'cut-over', replacedInstance: 'atmr-prod-replaced-202611301600' },
        }),
      );
    /** RDS's DescribeDBInstances answer (query protocol) for the copy, `fields` added to it. */
    const describedCopy = (fields: string) => ({
      contentType: 'text/xml',
      body:
        `<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance>` +
        `<DBInstanceIdentifier>atmr-prod-pitr-202611301402</DBInstanceIdentifier><DBInstanceStatus>available</DBInstanceStatus>${fields}` +
        `</DBInstance></DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></DescribeDBInstancesResponse>`,
    });

    it("status of a cut-over recovery whose database secret RDS manages says to move the API to the copy's own secret before the next rotation", async () => {
      // Arrange: the example's secret is RDS-managed (rds!db-...), owned by the instance the recovery replaced
      const id = 'r20261130143000-dddd';
      await givenCutOver(id);

      // Act
      const run = await atmrDr(['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      const next = run.stdout.split('\n').filter((line) => line.startsWith('next'));
      expect(next).toEqual([
        'next: set database.instanceIdentifier and database.host to atmr-prod-pitr-202611301402, and recovery.newInstancePrefix to a prefix atmr-prod-pitr-202611301402 does not start with (not "atmr-prod-pitr-") in cdk.json and redeploy, so backups and alarms follow the new instance',
        expect.stringMatching(
          /^next, before the secret's next rotation: arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf is managed by RDS for atmr-prod \(now atmr-prod-replaced-202611301600\), not for atmr-prod-pitr-202611301402: .* aws rds modify-db-instance --db-instance-identifier atmr-prod-pitr-202611301402 --manage-master-user-password --apply-immediately .* delete atmr-prod-replaced-202611301600 only after that$/,
        ),
        DELETION_PROTECTION_STEP,
      ]);
    });

    it('a database secret of its own (not RDS-managed) leaves only the config to update', () => {
      // Act
      const lines = afterCutoverSteps(
        { sourceInstance: 'atmr-prod', newInstance: 'atmr-prod-pitr-202611301402', replacedInstance: 'atmr-prod-replaced-202611301600' },
        { instanceIdentifier: 'atmr-prod', secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/api-db-AbCdEf' },
        undefined,
        undefined,
        true,
      );

      // Assert
      expect(lines).toEqual(['next: set database.instanceIdentifier and database.host to atmr-prod-pitr-202611301402 in cdk.json and redeploy, so backups and alarms follow the new instance']);
    });

    it('asks for a new recovery.newInstancePrefix with the config only when cdk.json sets one the copy is named under', () => {
      // Arrange
      const record = { sourceInstance: 'atmr-prod', newInstance: 'atmr-prod-pitr-202611301402' };
      const database = { instanceIdentifier: 'atmr-prod', secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/api-db-AbCdEf' };

      // Act
      const explicit = afterCutoverSteps(record, database, undefined, 'atmr-prod-pitr-', true);
      const derived = afterCutoverSteps(record, database, undefined, undefined, true);

      // Assert: an explicit prefix kept would cover production once the config names the copy (synth refuses it); the default follows the new name
      expect(explicit).toEqual([expect.stringContaining(', and recovery.newInstancePrefix to a prefix atmr-prod-pitr-202611301402 does not start with (not "atmr-prod-pitr-") in cdk.json')]);
      expect(derived).toEqual([expect.not.stringContaining('newInstancePrefix')]);
    });

    it('asks for an explicit recovery.newInstancePrefix too when the default one, cut to 46 characters, would cover the copy once the config names it (a production name of 28 characters or more)', () => {
      // Arrange: the default prefix of "atmr-production-postgres-main" (29 characters) named the copy
      // with 47; once the config names the copy, the default "<copy>-pitr-" cut to 46 is a prefix of it
      const source = 'atmr-production-postgres-main';
      const copy = 'atmr-production-postgres-main-pitr-202611301402';
      const database = { instanceIdentifier: source, secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/api-db-AbCdEf' };

      // Act
      const [line] = afterCutoverSteps({ sourceInstance: source, newInstance: copy }, database, undefined, undefined);

      // Assert: the step names the field and a prefix that the config check accepts with the copy as production
      expect(line).toMatch(new RegExp(`^next: set database\\.instanceIdentifier and database\\.host to ${copy}, and recovery\\.newInstancePrefix to a prefix ${copy} does not start with, e\\.g\\. "([a-z0-9-]+)" \\(the default`));
      const suggested = /e\.g\. "([a-z0-9-]+)"/.exec(line)![1];
      const raw = exampleEnvironment() as Record<string, Record<string, unknown>>;
      const config = parseEnvironmentConfig('example', {
        ...raw,
        database: { ...raw.database, instanceIdentifier: copy },
        recovery: { ...raw.recovery, enabled: true, newInstancePrefix: suggested },
      });
      expect(config.recovery.newInstancePrefix).toBe(suggested);
    });

    it('does not ask again for the steps the config shows done: the config names the copy, and its secret is the copy\'s own', () => {
      // Arrange: days later, steps 10 and 11 done (the config follows the copy and its own managed secret)
      const record = { sourceInstance: 'atmr-prod', newInstance: 'atmr-prod-pitr-202611301402', replacedInstance: 'atmr-prod-replaced-202611301600' };
      const copySecret = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-0f1e2d3c-AbCdEf';
      const oldSecret = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf';

      // Act
      const bothDone = afterCutoverSteps(record, { instanceIdentifier: 'atmr-prod-pitr-202611301402', secretArn: copySecret }, copySecret, undefined, true);
      const onlyConfigDone = afterCutoverSteps(record, { instanceIdentifier: 'atmr-prod-pitr-202611301402', secretArn: oldSecret }, copySecret, undefined, true);
      const copySecretUnknown = afterCutoverSteps(record, { instanceIdentifier: 'atmr-prod-pitr-202611301402', secretArn: copySecret }, undefined, undefined, true);

      // Assert: the secret step stays while the config still names the replaced instance's secret, or when the copy's is unknown
      expect(bothDone).toEqual([]);
      expect(onlyConfigDone).toEqual([expect.stringMatching(/^next, before the secret's next rotation: arn:\S+rds!db-atmr-prod-AbCdEf is managed by RDS for atmr-prod/)]);
      expect(copySecretUnknown).toHaveLength(1);
    });

    it('status of a cut-over recovery whose copy, production now, has no deletion protection (restored without, so that abandon could delete it) says how to turn it on', async () => {
      // Arrange: steps 10 and 11 done (the config names the copy and its own managed secret); RDS
      // describes the copy as it was restored: no deletion protection.
      const id = 'r20261130143000-ffff';
      await givenCutOver(id);
      const described = describedCopy('<DeletionProtection>false</DeletionProtection>');

      // Act
      const { run } = await atmrDrWith('RDS', described, ['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      expect(run.stdout.split('\n').filter((line) => line.startsWith('next'))).toContain(DELETION_PROTECTION_STEP);
    });

    it('the cutover\'s last lines say to turn deletion protection on, and no line does once the copy has it', () => {
      const record = { sourceInstance: 'atmr-prod', newInstance: 'atmr-prod-pitr-202611301402' };
      const database = { instanceIdentifier: 'atmr-prod-pitr-202611301402', secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/api-db-AbCdEf' };

      expect(afterCutoverSteps(record, database, undefined, undefined, false)).toEqual([DELETION_PROTECTION_STEP]);
      expect(afterCutoverSteps(record, database, undefined, undefined, true)).toEqual([]);
    });

    it('the cutover whose own ModifyDBInstance was refused prints the command with the reason; none once it turned protection on', () => {
      const record = { sourceInstance: 'atmr-prod', newInstance: 'atmr-prod-pitr-202611301402' };
      const database = { instanceIdentifier: 'atmr-prod-pitr-202611301402', secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/api-db-AbCdEf' };
      const refused = 'AccessDenied: User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:ModifyDBInstance';

      expect(afterCutoverSteps(record, database, undefined, undefined, { refused })).toEqual([
        `next: turn deletion protection on for atmr-prod-pitr-202611301402, production now (the cutover could not turn it on: ${refused}; once the cause is gone (the copy available, the right granted)): aws rds modify-db-instance --db-instance-identifier atmr-prod-pitr-202611301402 --deletion-protection --apply-immediately`,
      ]);
    });

    it("status of a cut-over recovery whose configured secret is already the copy's own RDS-managed one does not tell to move to it again", async () => {
      // Arrange: RDS (a local query-protocol responder) describes the copy as managing the configured
      // secret (step 11 done); the config still names the replaced instance (step 10 not done).
      const id = 'r20261130143000-eeee';
      await givenCutOver(id);
      const described = describedCopy(
        '<DeletionProtection>true</DeletionProtection><MasterUserSecret><SecretArn>arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf</SecretArn><SecretStatus>active</SecretStatus></MasterUserSecret>',
      );

      // Act
      const { run, asked } = await atmrDrWith('RDS', described, ['recover', 'status', id]);

      // Assert
      expect(run.status).toBe(0);
      expect(asked).toEqual([expect.stringContaining('DBInstanceIdentifier=atmr-prod-pitr-202611301402')]);
      expect(run.stdout.split('\n').filter((line) => line.startsWith('next'))).toEqual([
        'next: set database.instanceIdentifier and database.host to atmr-prod-pitr-202611301402, and recovery.newInstancePrefix to a prefix atmr-prod-pitr-202611301402 does not start with (not "atmr-prod-pitr-") in cdk.json and redeploy, so backups and alarms follow the new instance',
      ]);
    });
  });
});
