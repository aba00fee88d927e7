import { RDSClient } from '@aws-sdk/client-rds';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { instanceState } from '../../../lambdas/recovery/rds';
import { SDK_RETRY } from '../../../lambdas/shared/aws';

/**
 * Throttling goes through the real SDK retry strategy: an RDS-protocol server on 127.0.0.1 answers
 * "Throttling" twice, then the instance (aws-sdk-client-mock would bypass the retry middleware).
 */
describe('RDS throttling', () => {
  let server: http.Server;
  let requests = 0;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        requests += 1;
        res.setHeader('content-type', 'text/xml');
        if (requests <= 2) {
          res.statusCode = 400;
          res.end('<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>t</RequestId></ErrorResponse>');
          return;
        }
        res.end(
          `<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>x</DBInstanceIdentifier><DBInstanceStatus>available</DBInstanceStatus><Endpoint><Address>new.rds</Address><Port>5432</Port></Endpoint></DBInstance></DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>ok</RequestId></ResponseMetadata></DescribeDBInstancesResponse>`,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('is retried by the SDK (standard mode) and the poll succeeds', async () => {
    const throttled = new RDSClient({
      ...SDK_RETRY,
      region: 'eu-west-3',
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });

    const state = await instanceState(throttled, 'x');

    expect(state).toMatchObject({ ready: true, host: 'new.rds' });
    expect(requests).toBe(3);
  });
});

