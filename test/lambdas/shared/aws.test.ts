import { ListObjectsV2Command, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import * as http from 'node:http';
import * as net from 'node:net';
import { BACKUP_S3_CLIENT_OVERRIDES } from '../../../lambdas/backup/backup';
import { createS3Client, s3ClientConfig, S3_CONNECTION_TIMEOUT_MS, S3_IDLE_TIMEOUT_MS } from '../../../lambdas/shared/aws';
import { SDK_RETRY } from '../../../lambdas/shared/sdk-retry';

const LOCAL_ENV = { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:1', AWS_REGION: 'eu-west-3', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

describe('S3 client settings', () => {
  it('gives every S3 client a connection timeout and an idle timeout, kept when the backup adds its own overrides', () => {
    // Arrange / Act
    const plain = s3ClientConfig(LOCAL_ENV);
    const backup = s3ClientConfig(LOCAL_ENV, BACKUP_S3_CLIENT_OVERRIDES);

    // Assert
    for (const config of [plain, backup]) {
      expect(config.requestHandler).toEqual({ connectionTimeout: S3_CONNECTION_TIMEOUT_MS, socketTimeout: S3_IDLE_TIMEOUT_MS });
    }
    expect(S3_IDLE_TIMEOUT_MS).toBeLessThanOrEqual(60_000);
  });

  it('an endpoint that accepts the connection and never answers fails the request with a timeout instead of holding it', async () => {
    // Arrange: a silent TCP endpoint (a hung proxy), and the house client with only the idle time
    // shortened so that the test does not wait 30 s per attempt.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const env = { ...LOCAL_ENV, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}` };
    const { requestHandler } = s3ClientConfig(env);
    const s3 = createS3Client(env, { maxAttempts: 1, requestHandler: { ...(requestHandler as object), socketTimeout: 300 } });
    const started = Date.now();
    try {
      // Act
      const error = await s3.send(new ListObjectsV2Command({ Bucket: 'atmr-dr-silent' })).catch((e: unknown) => e as Error);

      // Assert
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).name).toBe('TimeoutError');
      expect(sockets.length).toBe(1);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      s3.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('backup uploads to an Object Lock bucket', () => {
  it('the backup client sends a checksum with every object and part it uploads (a default-retention bucket refuses uploads without)', async () => {
    // Arrange: a local S3 stand-in that records the headers of each write and answers it.
    const seen: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((request, response) => {
      seen.push(request.headers);
      request.resume();
      request.on('end', () => response.writeHead(200, { ETag: '"0"' }).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const env = { ...LOCAL_ENV, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
    const s3 = createS3Client(env, { ...BACKUP_S3_CLIENT_OVERRIDES, maxAttempts: 1 });
    try {
      // Act
      await s3.send(new PutObjectCommand({ Bucket: 'atmr-dr-locked', Key: 'hourly/x.manifest.json', Body: '{}', IfNoneMatch: '*' }));
      await s3.send(new UploadPartCommand({ Bucket: 'atmr-dr-locked', Key: 'hourly/x.dump', UploadId: 'u', PartNumber: 1, Body: Buffer.alloc(1024) }));

      // Assert: a checksum header, or the trailer that carries one, on both.
      expect(seen).toHaveLength(2);
      for (const headers of seen) {
        const checksum = headers['x-amz-checksum-crc32'] ?? (headers['x-amz-trailer'] === 'x-amz-checksum-crc32' ? 'in the trailer' : undefined);
        expect(checksum).toBeDefined();
      }
    } finally {
      s3.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('control-plane client settings (SDK_RETRY: SSM, ECS, RDS, DynamoDB, ...)', () => {
  it('an SSM endpoint that accepts the connection and never answers fails the read with a timeout instead of holding it forever', async () => {
    // Arrange: a silent TCP endpoint (a black-holed VPC endpoint) and the house settings as they
    // are, with one attempt so that the test waits one idle timeout, not five.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const ssm = new SSMClient({
      ...SDK_RETRY,
      maxAttempts: 1,
      region: 'eu-west-3',
      endpoint: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const started = Date.now();
    try {
      // Act
      // (the test's own guard aborts a request still waiting after 25 s: it fails as AbortError; the
      // idle timeout ends it at about 13 s, and a loaded CI machine needs the room)
      const guard = AbortSignal.timeout(25_000);
      const error = await ssm.send(new GetParameterCommand({ Name: '/atmr/prod/killswitch' }), { abortSignal: guard }).catch((e: unknown) => e as Error);

      // Assert
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).name).toBe('TimeoutError');
      expect(Date.now() - started).toBeLessThan(25_000);
    } finally {
      ssm.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  }, 40_000);
});
