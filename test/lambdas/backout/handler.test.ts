import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { stepRunner } from '../../../lambdas/backout/handler';
import { backoutClients } from '../../../lambdas/backout/clients';
import { parseBackoutSettings } from '../../../lambdas/backout/settings';
import { settings } from './fixtures';

describe('backout step handler (thin adapter)', () => {
  const run = stepRunner(settings(), { ...backoutClients(), logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'AtmrDr/example' }) });

  it('refuses an unknown action before any AWS call', async () => {
    await expect(run({ action: 'reboot-everything' })).rejects.toThrow(/action/);
  });

  it('refuses a step without its state', async () => {
    await expect(run({ action: 'roll-out' })).rejects.toThrow(/state/);
  });

  it('names the settings variable when it is missing or malformed', () => {
    expect(() => parseBackoutSettings(undefined)).toThrow('backout: BACKOUT_SETTINGS is not set');
    expect(() => parseBackoutSettings(JSON.stringify({ ...settings(), healthUrl: 'nope' }))).toThrow(/^backout: settings healthUrl: /);
  });
});
