import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { acknowledgeHouseFunctionFindings, HouseFunction } from '../../lib/constructs/house-function';
import { SignedEndpoint, signedEndpoint } from '../../lib/constructs/signed-endpoint';
import { applyNagPacks } from '../../lib/nag';

const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/signing-AbCdEf';
const FUNCTION_PROPS = { entry: 'lambdas/killswitch/slack-handler.ts', serviceName: 'signed-endpoint-test', environmentName: 'example' };

function endpointStack(): { app: App; stack: Stack; endpoint: SignedEndpoint } {
  const app = new App({ context: NO_BUNDLING });
  const stack = new Stack(app, 'Endpoint', { env: { account: '111111111111', region: 'eu-west-3' } });
  const signingSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Signing', SECRET_ARN);
  const endpoint = signedEndpoint(stack, 'Command', { ...FUNCTION_PROPS, signingSecret, caller: 'Slack' });
  return { app, stack, endpoint };
}

describe('signed endpoint (the public Function URL shape of the Slack command and the acknowledgement link)', () => {
  it('serves the function from a Function URL without AWS auth (callers cannot sign with SigV4)', () => {
    const template = Template.fromStack(endpointStack().stack);

    template.resourceCountIs('AWS::Lambda::Url', 1);
    template.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'NONE', TargetFunctionArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^CommandFunction'), 'Arn'] } });
  });

  it('lets the function read its signing key with GetSecretValue (the only call it makes), and that secret only', () => {
    // Arrange
    const template = Template.fromStack(endpointStack().stack);

    // Act
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));

    // Assert
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([{ Action: 'secretsmanager:GetSecretValue', Effect: 'Allow', Resource: SECRET_ARN }]) },
    });
    expect(policies).not.toContain('secretsmanager:DescribeSecret');
  });

  it('keeps the logical IDs a plain house function under the same id would have', () => {
    const plain = new Stack(new App({ context: NO_BUNDLING }), 'Endpoint', { env: { account: '111111111111', region: 'eu-west-3' } });
    new HouseFunction(plain, 'Command', FUNCTION_PROPS);
    const functionIds = (stack: Stack) => Object.keys(Template.fromStack(stack).findResources('AWS::Lambda::Function'));

    expect(functionIds(endpointStack().stack)).toEqual(functionIds(plain));
  });

  it('raises no cdk-nag finding beyond those every house function acknowledges (no dead-letter queue for a synchronous caller)', () => {
    const { app, endpoint } = endpointStack();
    acknowledgeHouseFunctionFindings(endpoint.handler);
    applyNagPacks(app);

    expect(() => app.synth()).not.toThrow();
  });
});
