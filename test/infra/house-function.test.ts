import { synthesizeApp } from '../support/app';

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = { Sid?: string; Action: string | string[]; Resource: unknown };
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

describe('house functions outside a VPC', () => {
  const resources = synthesizeApp().opsTemplate.toJSON().Resources as Record<string, Resource>;
  // House functions carry the Powertools service name; CDK's own providers do not.
  const house = Object.entries(resources).filter(
    ([, r]) =>
      r.Type === 'AWS::Lambda::Function' &&
      r.Properties.VpcConfig === undefined &&
      (r.Properties.Environment as { Variables?: Record<string, string> } | undefined)?.Variables?.POWERTOOLS_SERVICE_NAME !== undefined,
  );
  const roleOf = (fn: Resource) => ((fn.Properties.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'])[0];
  const statementsOf = (roleId: string) =>
    Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
      .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement);

  it('include the internet-facing ack link and Slack command', () => {
    const ids = house.map(([id]) => id);
    expect(ids).toEqual(expect.arrayContaining([expect.stringMatching(/^EscalationAckLinkFunction/), expect.stringMatching(/^KillswitchSlackCommandFunction/)]));
  });

  it('have no AWS-managed policy (AWSLambdaBasicExecutionRole writes logs on *, e.g. into the API log group that feeds alarms)', () => {
    const managed = house.map(([id, fn]) => [id, resources[roleOf(fn)].Properties.ManagedPolicyArns ?? []]);
    expect(managed.filter(([, arns]) => (arns as unknown[]).length > 0)).toEqual([]);
  });

  it('may write logs only to their own log group (CreateLogStream and PutLogEvents, no CreateLogGroup)', () => {
    for (const [id, fn] of house) {
      const logGroup = (fn.Properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      const logs = statementsOf(roleOf(fn)).filter((s) => asArray(s.Action).some((a) => a.startsWith('logs:')));
      expect([id, logs.map((s) => ({ actions: asArray(s.Action).sort(), resources: asArray(s.Resource) }))]).toEqual([
        id,
        [{ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [{ 'Fn::GetAtt': [logGroup, 'Arn'] }] }],
      ]);
    }
  });
});
