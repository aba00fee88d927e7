import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { DescribeDBInstancesCommand } from '@aws-sdk/client-rds';
import { DescribeExecutionCommand } from '@aws-sdk/client-sfn';
import { PublishCommand } from '@aws-sdk/client-sns';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { backoutClients } from '../../../lambdas/backout/clients';
import { incidentStore } from '../../../lambdas/escalation/clients';
import { asOperatorError } from '../../../lambdas/shared/aws-errors';
import { startJsonEndpoint, startQueryEndpointRefusing, type LocalEndpoint } from '../../support/aws-endpoints';

/**
 * The clients the operator CLI's rollback and incident commands build (backoutClients,
 * incidentStore), each pointed by its SDK variable at a local endpoint that refuses every call as
 * AWS does a role without the right: the one line names the service, the call, the resource and the
 * IAM action to grant, which AWS's own message ("not authorized to perform this operation") does not.
 */
const DENIED_MESSAGE = 'User: arn:aws:sts::111111111111:assumed-role/atmr-readonly/bob is not authorized to perform this operation';
const GRANT = 'check the credentials (AWS_PROFILE) and that the role may do it';

describe('a refusal of a client the operator CLI builds names its service, call, resource and IAM action', () => {
  const endpoints: LocalEndpoint[] = [];
  const saved = { ...process.env };
  beforeAll(async () => {
    const json = await startJsonEndpoint(() => ({ status: 400, body: { __type: 'com.amazon.coral.service#AccessDeniedException', message: DENIED_MESSAGE } }));
    const rds = await startQueryEndpointRefusing('AccessDenied');
    const sns = await startQueryEndpointRefusing('AuthorizationError');
    endpoints.push(json, rds, sns);
    Object.assign(process.env, {
      AWS_REGION: 'eu-west-3',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_ENDPOINT_URL_SSM: json.url,
      AWS_ENDPOINT_URL_EVENTBRIDGE: json.url,
      AWS_ENDPOINT_URL_SFN: json.url,
      AWS_ENDPOINT_URL_RDS: rds.url,
      AWS_ENDPOINT_URL_SNS: sns.url,
    });
  });
  afterAll(async () => {
    process.env = saved;
    await Promise.all(endpoints.map((endpoint) => endpoint.stop()));
  });

  /** The CLI's line for what `call` threw. */
  const lineOf = async (call: Promise<unknown>) => {
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    return asOperatorError(error);
  };

  it('rollback\'s SNS (AuthorizationError, SNS\'s word for a refusal): Publish on the topic, sns:Publish', async () => {
    const failure = await lineOf(backoutClients().sns.send(new PublishCommand({ TopicArn: 'arn:aws:sns:eu-west-3:111111111111:atmr-alerts', Message: 'm' })));

    expect(failure.message).toBe(`cannot call Publish on topic arn:aws:sns:eu-west-3:111111111111:atmr-alerts (sns:Publish): SNS refused it (AuthorizationErrorException: ${DENIED_MESSAGE}); ${GRANT}`);
    expect(failure.exitCode).toBe(1);
  });

  it('rollback\'s EventBridge: PutEvents on the default bus, events:PutEvents (not eventbridge:)', async () => {
    const failure = await lineOf(backoutClients().events.send(new PutEventsCommand({ Entries: [{ Source: 'atmr-dr', DetailType: 'd', Detail: '{}' }] })));

    expect(failure.message).toBe(`cannot call PutEvents on event bus default (events:PutEvents): EventBridge refused it (AccessDeniedException: ${DENIED_MESSAGE}); ${GRANT}`);
    expect(failure.exitCode).toBe(1);
  });

  it('rollback\'s SSM: PutParameter on the parameter, ssm:PutParameter', async () => {
    const failure = await lineOf(backoutClients().ssm.send(new PutParameterCommand({ Name: '/atmr/prod/killswitch', Value: '{}', Overwrite: true })));

    expect(failure.message).toBe(`cannot call PutParameter on parameter /atmr/prod/killswitch (ssm:PutParameter): SSM refused it (AccessDeniedException: ${DENIED_MESSAGE}); ${GRANT}`);
    expect(failure.exitCode).toBe(1);
  });

  it('rollback\'s RDS: DescribeDBInstances on the instance, rds:DescribeDBInstances', async () => {
    const failure = await lineOf(backoutClients().rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'atmr-prod' })));

    expect(failure.message).toBe(`cannot call DescribeDBInstances on instance atmr-prod (rds:DescribeDBInstances): RDS refused it (AccessDenied: ${DENIED_MESSAGE}); ${GRANT}`);
    expect(failure.exitCode).toBe(1);
  });

  it('incident\'s Step Functions: DescribeExecution on the execution, states:DescribeExecution (not stepfunctions:)', async () => {
    const arn = 'arn:aws:states:eu-west-3:111111111111:execution:atmr-escalation:i-1';

    const failure = await lineOf(incidentStore('atmr-ops').sfn.send(new DescribeExecutionCommand({ executionArn: arn })));

    expect(failure.message).toBe(`cannot call DescribeExecution on execution ${arn} (states:DescribeExecution): Step Functions refused it (AccessDeniedException: ${DENIED_MESSAGE}); ${GRANT}`);
    expect(failure.exitCode).toBe(1);
  });
});
