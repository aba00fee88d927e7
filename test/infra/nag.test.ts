import { App, Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { applyNagPacks } from '../../lib/nag';
import { synthesizeApp } from '../support/app';

describe('cdk-nag (AwsSolutions + Serverless packs)', () => {
  it('fails synth on an unacknowledged finding (the packs really run)', () => {
    const app = new App();
    const stack = new Stack(app, 'Probe');
    new s3.Bucket(stack, 'Insecure'); // no TLS-only policy, no access logs: AwsSolutions-S1/S10
    applyNagPacks(app);

    expect(() => app.synth()).toThrow(/AwsSolutions-S10/);
  });

  it('passes on the example environment with every finding fixed or acknowledged', () => {
    const { app } = synthesizeApp();

    expect(() => app.synth()).not.toThrow();
  });
});
