import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks, ServerlessChecks } from 'cdk-nag';
import { exampleEnvironment, synthesizeApp } from '../support/app';

/** Every unacknowledged finding (error or warning) of the two packs the app applies, one line each. */
function unacknowledged(app: App): string[] {
  return [new AwsSolutionsChecks(app), new ServerlessChecks(app)].flatMap((pack) =>
    pack.validateScope(app).violations.map((v) => `${v.severity} ${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
  );
}

/**
 * The migration downgrade adds RunTask, PassRole, killswitch and snapshot rights to the rollback
 * workflow: the app must stay cdk-nag clean with it on, not only with the default (off).
 */
describe('cdk-nag with the automatic migration downgrade on', () => {
  const raw = structuredClone(exampleEnvironment()) as Record<string, Record<string, unknown>>;
  raw.backout = { ...raw.backout, enabled: true, dryRun: false, autoDowngradeMigrations: true };
  // buildApp applies the AwsSolutions and Serverless packs exactly as `cdk synth` does (bin/app.ts).
  const synthesized = synthesizeApp({ environment: raw });

  it('really synthesizes the downgrade path (RunTask and PassRole in the rollback workflow role)', () => {
    const policies = JSON.stringify(Template.fromStack(synthesized.ops).findResources('AWS::IAM::Policy'));

    expect(policies).toContain('"ecs:RunTask"');
    expect(policies).toContain('"iam:PassRole"');
    expect(policies).toContain('"rds:CreateDBSnapshot"');
  });

  it('synthesizes with the packs applied: no unacknowledged finding fails the synth', () => {
    expect(() => synthesized.app.synth()).not.toThrow();
  });

  it('leaves no unacknowledged AwsSolutions or Serverless error or warning', () => {
    synthesized.app.synth();

    expect(unacknowledged(synthesized.app)).toEqual([]);
  });

  it('the finding list reports an unacknowledged finding (so an empty list means clean)', () => {
    const app = new App();
    new s3.Bucket(new Stack(app, 'Probe'), 'Insecure');
    app.synth({ skipValidation: true });

    expect(unacknowledged(app)).toEqual(expect.arrayContaining([expect.stringMatching(/^error AwsSolutions-S10 Probe\/Insecure/)]));
  });
});
