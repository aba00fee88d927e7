import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, for tests and benches.
 * As root (CI, this machine kind), initdb/pg_ctl run as the `postgres` user via runuser.
 */
export interface PostgresCluster {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly dataDir: string;
  /** libpq environment for child processes (psql, pg_dump, the CLI). */
  readonly env: Record<string, string>;
}

export function postgresBinDir(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return path.dirname(fs.realpathSync(onPath));
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const dir = path.join(root, v, 'bin');
    if (fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error('initdb not found: install PostgreSQL (apt-get install postgresql) or put its bin/ on PATH');
}

/**
 * PATH with the PostgreSQL client binaries themselves first. Debian's /usr/bin/pg_dump, pg_restore
 * and psql are links to pg_wrapper, a perl script that picks a version at each start (tens of ms
 * each, more on a loaded machine); the runner image's tools (AL2023's postgresql<major> package)
 * are the binaries. The benches run their references and atmr-dr with this PATH, so that a command
 * that starts pg_restore three times is not charged two perl starts production does not have.
 */
export function pathWithPostgresBinaries(): string {
  return `${postgresBinDir()}${path.delimiter}${process.env.PATH ?? ''}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function runAsPostgres(cmd: string, args: string[]): void {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A self-signed certificate for localhost, valid one day, and its unencrypted key, written in `dir`. */
export function selfSignedCertificate(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

/**
 * A throwaway cluster on 127.0.0.1 (trust for everyone). `hba`: the lines of a pg_hba.conf of its own
 * instead (e.g. SCRAM over TCP for a role, to test passwords, or `hostssl` lines only, to take TLS
 * connections only), kept beside the data directory and removed with it by stopPostgres. `tls`: ssl
 * on, with a self-signed certificate made there too (the local clusters have ssl off otherwise).
 */
export async function startPostgres(options: { extraSettings?: string[]; hba?: string; tls?: boolean } = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-pg-'));
  const dataDir = path.join(baseDir, 'data');
  if (isRoot) {
    fs.chmodSync(baseDir, 0o755);
    execFileSync('chown', ['postgres:postgres', baseDir]);
  }
  runAsPostgres(path.join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
  const hbaFile = path.join(baseDir, 'pg_hba.conf');
  if (options.hba !== undefined) fs.writeFileSync(hbaFile, options.hba, { mode: 0o644 });
  const tls = options.tls ? selfSignedCertificate(baseDir) : undefined;
  if (tls) {
    // PostgreSQL refuses a key that others may read or that is not its own.
    fs.chmodSync(tls.key, 0o600);
    if (isRoot) execFileSync('chown', ['postgres:postgres', tls.key, tls.cert]);
  }
  const port = await freePort();
  const settings = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${baseDir}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=200',
    ...(options.hba !== undefined ? [`-c hba_file=${hbaFile}`] : []),
    ...(tls ? ['-c ssl=on', `-c ssl_cert_file=${tls.cert}`, `-c ssl_key_file=${tls.key}`] : []),
    ...(options.extraSettings ?? []),
  ].join(' ');
  runAsPostgres(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-l', path.join(baseDir, 'server.log'), '-o', settings, '-w', '-t', '60', 'start']);
  const env = { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  return { host: '127.0.0.1', port, user: 'postgres', dataDir, env };
}

export function stopPostgres(cluster: Pick<PostgresCluster, 'dataDir'>): void {
  const bin = postgresBinDir();
  try {
    runAsPostgres(path.join(bin, 'pg_ctl'), ['-D', cluster.dataDir, '-m', 'immediate', '-w', 'stop']);
  } finally {
    fs.rmSync(path.dirname(cluster.dataDir), { recursive: true, force: true });
  }
}

/**
 * Stops the cluster's server as an administrator does from another shell (`pg_ctl stop -m fast`:
 * its sessions ended, new connections refused), keeping its data: startAgain brings it back.
 */
export function stopFast(cluster: Pick<PostgresCluster, 'dataDir'>): void {
  runAsPostgres(path.join(postgresBinDir(), 'pg_ctl'), ['-D', cluster.dataDir, '-m', 'fast', '-w', 'stop']);
}

/** Starts a server stopped by stopFast again, with its first start's settings (postmaster.opts, which `pg_ctl restart` reads). */
export function startAgain(cluster: Pick<PostgresCluster, 'dataDir'>): void {
  runAsPostgres(path.join(postgresBinDir(), 'pg_ctl'), ['-D', cluster.dataDir, '-l', path.join(path.dirname(cluster.dataDir), 'server.log'), '-w', '-t', '60', 'restart']);
}

/**
 * Waits until no session is connected to `database`. A psql that has exited has only asked its
 * backend to end: on a loaded machine the backend can still be listed in pg_stat_activity for a
 * moment, and a restore's guard then counts it as a client of the target.
 */
export function waitForNoSessions(cluster: Pick<PostgresCluster, 'env'>, database: string, ms = 10_000): void {
  const until = Date.now() + ms;
  while (psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE datname = '${database}' AND pid <> pg_backend_pid()`) !== '0') {
    if (Date.now() > until) throw new Error(`sessions still connected to ${database} after ${ms / 1000} s`);
    execFileSync('sleep', ['0.05']);
  }
}

/** Runs SQL with psql against the cluster (ON_ERROR_STOP), returning unaligned tuples-only output. */
export function psql(cluster: Pick<PostgresCluster, 'env'>, database: string, sql: string): string {
  return execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-d', database], {
    input: sql,
    env: { ...process.env, ...cluster.env },
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  }).trim();
}
