import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { OperatorError } from '../../../lambdas/shared/errors';
import { describeConnection, libpqEnv, pgClientConfig, resolveConnection } from '../../../lambdas/shared/pg-connection';

const secrets = mockClient(SecretsManagerClient);
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-AbCdEf';

describe('resolveConnection', () => {
  beforeEach(() => secrets.reset());

  it('takes libpq variables when no secret is given', async () => {
    const conn = await resolveConnection({ env: { PGHOST: 'db', PGPORT: '6543', PGUSER: 'u', PGPASSWORD: 'p', PGDATABASE: 'atmr' } });

    expect(conn).toMatchObject({ host: 'db', port: 6543, user: 'u', password: 'p', database: 'atmr' });
  });

  it('reads user and password from the RDS secret, host from the environment', async () => {
    secrets.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: JSON.stringify({ username: 'atmr_admin', password: 's3cret' }) });

    const conn = await resolveConnection({
      env: { PGHOST: 'atmr.rds', PGDATABASE: 'atmr' },
      secretArn: SECRET_ARN,
      secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }),
    });

    expect(conn).toMatchObject({ host: 'atmr.rds', port: 5432, user: 'atmr_admin', password: 's3cret', database: 'atmr' });
  });

  it('uses a fallback only where neither the environment nor the secret gives a value', async () => {
    secrets.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: JSON.stringify({ username: 'atmr_admin', password: 's3cret', dbname: 'atmr' }) });
    const secretsManager = new SecretsManagerClient({ region: 'eu-west-3' });

    const fromSecret = await resolveConnection({ env: { PGHOST: 'atmr.rds' }, secretArn: SECRET_ARN, secretsManager, fallbacks: { database: 'postgres', port: 6543 } });
    const fromEnv = await resolveConnection({ env: { PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'atmr_env' }, fallbacks: { database: 'postgres' } });
    const neither = await resolveConnection({ env: { PGHOST: 'h', PGUSER: 'u' }, fallbacks: { database: 'postgres' } });

    expect(fromSecret).toMatchObject({ database: 'atmr', port: 6543 });
    expect(fromEnv.database).toBe('atmr_env');
    expect(neither.database).toBe('postgres');
  });

  it('fails in one line, without the secret value, when the secret is not RDS JSON', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'plain-password-value' });

    const attempt = resolveConnection({ env: { PGHOST: 'h', PGDATABASE: 'd' }, secretArn: SECRET_ARN, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) });

    await expect(attempt).rejects.toThrow(OperatorError);
    await expect(attempt).rejects.toThrow(/is not an RDS secret JSON with username and password/);
    await expect(attempt).rejects.not.toThrow(/plain-password-value/);
  });

  it('names an unreachable Secrets Manager and its endpoint variable instead of a bare "Error"', async () => {
    // Arrange: what the SDK throws when the endpoint refuses the connection.
    secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }));

    // Act
    const attempt = resolveConnection({ env: {}, secretArn: SECRET_ARN, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) });

    // Assert
    await expect(attempt).rejects.toThrow(
      /^cannot read database secret arn:\S+: SecretsManager is unreachable \(connect ECONNREFUSED 127\.0\.0\.1:9\); check AWS_REGION, AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL if set, and the network$/,
    );
  });

  it('expired credentials (an expired aws sso login) are a setting to renew, exit 2: the login, not the ARN or the role', async () => {
    secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client', $metadata: {} }));

    const attempt = resolveConnection({ env: {}, secretArn: SECRET_ARN, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) });

    await expect(attempt).rejects.toMatchObject({
      exitCode: 2,
      message: `cannot read database secret ${SECRET_ARN}: the AWS credentials have expired (ExpiredTokenException); log in again (aws sso login) or refresh them`,
    });
  });

  it('names the permission to check when the secret cannot be read', async () => {
    secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));

    await expect(
      resolveConnection({ env: {}, secretArn: SECRET_ARN, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) }),
    ).rejects.toThrow(/AccessDeniedException; check the ARN and that this role may call secretsmanager:GetSecretValue on it/);
  });

  it.each([
    [{ PGUSER: 'u', PGDATABASE: 'd' }, /no database host: set PGHOST/],
    [{ PGHOST: 'h', PGDATABASE: 'd' }, /no database user: set PGUSER/],
    [{ PGHOST: 'h', PGUSER: 'u' }, /no database name: set PGDATABASE/],
    [{ PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', PGPORT: 'abc' }, /invalid database port "abc": set PGPORT/],
    // A typo of verify-full must not connect without checking the certificate, nor disable (disabled) ask for TLS.
    [{ PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', PGSSLMODE: 'verify-ful' }, /^invalid PGSSLMODE "verify-ful": use one of disable, allow, prefer, require, verify-ca, verify-full \(libpq's sslmode\), or unset it/],
    [{ PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', PGSSLMODE: 'disabled' }, /^invalid PGSSLMODE "disabled"/],
    [{ PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', PGSSLMODE: '' }, /^invalid PGSSLMODE ""/],
  ])('names the missing setting %#', async (env, message) => {
    await expect(resolveConnection({ env })).rejects.toThrow(message);
  });

  it.each([
    [{}, 'no database host, user and name: set PGHOST, PGUSER and PGDATABASE (or pass --database-secret <arn> whose secret has a host and a dbname)'],
    [{ PGDATABASE: 'd' }, 'no database host and user: set PGHOST and PGUSER (or pass --database-secret <arn> whose secret has a host)'],
    [{ PGHOST: 'h' }, 'no database user and name: set PGUSER and PGDATABASE (or pass --database-secret <arn> whose secret has a dbname)'],
    [
      { PGUSER: 'u', PGDATABASE: '' },
      "no database host and name: set PGHOST and PGDATABASE (PGDATABASE is set but empty: libpq reads that as unset) (or pass --database-secret <arn> whose secret has a host and a dbname)",
    ],
  ])('names every missing setting in one line, not one per run %#', async (env, line) => {
    await expect(resolveConnection({ env })).rejects.toMatchObject({ message: line, exitCode: 2 });
  });

  it('names what a secret given with --database-secret lacks, not the flag already passed', async () => {
    // Arrange: an RDS secret with no host nor dbname, and no PG* variable to fill them in
    const readSecret = async () => JSON.stringify({ username: 'u', password: 'p' });

    // Act / Assert
    await expect(resolveConnection({ env: {}, secretArn: SECRET_ARN, readSecret })).rejects.toMatchObject({
      message: `no database host and name: set PGHOST and PGDATABASE (or add a host and a dbname to secret ${SECRET_ARN})`,
      exitCode: 2,
    });
  });

  it('reads an empty PGDATABASE as unset, as libpq does: the fallback applies, and without one the line says it is empty', async () => {
    const env = { PGHOST: 'h', PGUSER: 'u', PGDATABASE: '' };

    await expect(resolveConnection({ env, fallbacks: { database: 'postgres' } })).resolves.toMatchObject({ database: 'postgres' });
    await expect(resolveConnection({ env })).rejects.toThrow(
      /^no database name: PGDATABASE is set but empty \(libpq reads that as unset\): set it to the database's name \(or pass --database-secret <arn> whose secret has a dbname\)$/,
    );
  });

  it('builds child-process and node-postgres settings, and a log-safe description', async () => {
    const conn = await resolveConnection({ env: { PGHOST: 'h', PGUSER: 'u', PGPASSWORD: 'pw', PGDATABASE: 'd', PGSSLMODE: 'require' } });

    expect(libpqEnv(conn, 'other')).toMatchObject({ PGHOST: 'h', PGPORT: '5432', PGUSER: 'u', PGPASSWORD: 'pw', PGDATABASE: 'other', PGSSLMODE: 'require' });
    expect(pgClientConfig(conn)).toMatchObject({ host: 'h', database: 'd', ssl: { rejectUnauthorized: false } });
    expect(describeConnection(conn)).toBe('u@h:5432/d');
    expect(describeConnection(conn)).not.toContain('pw');
  });

  it.each([
    ['unset (libpq: prefer)', undefined, { rejectUnauthorized: false }, true],
    ['prefer', 'prefer', { rejectUnauthorized: false }, true],
    ['allow (taken as prefer)', 'allow', { rejectUnauthorized: false }, true],
    ['disable', 'disable', false, undefined],
    ['require', 'require', { rejectUnauthorized: false }, undefined],
    ['verify-full', 'verify-full', { rejectUnauthorized: true }, undefined],
  ])('PGSSLMODE %s: the node-postgres ssl setting, and whether a failed TLS attempt is made again without TLS', async (_case, sslMode, ssl, plainIfTlsFails) => {
    const conn = await resolveConnection({ env: { PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', ...(sslMode && { PGSSLMODE: sslMode }) } });

    const config = pgClientConfig(conn);

    expect(config.ssl).toEqual(ssl);
    expect(config.plainIfTlsFails).toBe(plainIfTlsFails);
  });
});
