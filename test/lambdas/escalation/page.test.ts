import { getIncident, timeline } from '../../../lambdas/escalation/store';
import { runTask } from '../../../lambdas/escalation/tasks';
import { EscalationHarness, LEVEL_TOPICS, openIncident, startHarness } from './harness';

const STATE_TIME = '2026-11-30T10:15:00.123+0000';

/** The page step on its own (real code, dynalite, SNS at the SDK boundary): what a retried step does. */
describe('escalation page step', () => {
  let h: EscalationHarness;
  let incidentId: string;
  beforeEach(async () => {
    h = await startHarness();
    incidentId = await openIncident(h, STATE_TIME);
  });
  afterEach(async () => h.close());

  const page = (taskToken: string, level = 1) => runTask(h.taskDeps, { action: 'page', incidentId, level, taskToken });

  it('pages once per task token: a retried step whose page went out publishes nothing more', async () => {
    const first = await page('token-1');
    const retried = await page('token-1');

    expect([first, retried]).toEqual([{ result: 'paged level 1' }, { result: 'already paged' }]);
    expect(h.published.filter((p) => p.topicArn === LEVEL_TOPICS[0])).toHaveLength(1);
    expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'page')).toEqual([expect.objectContaining({ text: 'Paged level 1 (On-call engineer)', level: 1 })]);
    expect(await getIncident(h.store, incidentId)).toMatchObject({ level: 1, pagedLevels: [1] });
  });

  it('publishes again on the retry of a step whose publish failed, and records the failure, not a page, for the failed try', async () => {
    h.failingTopics.add(LEVEL_TOPICS[0]);
    await expect(page('token-1')).rejects.toThrow(/publishing to level 1 failed: KMS key is disabled/);
    expect((await timeline(h.store, incidentId)).map((e) => e.kind)).toEqual(['state', 'page-failed']);

    h.failingTopics.clear();
    const retried = await page('token-1');

    expect(retried).toEqual({ result: 'paged level 1' });
    expect(h.published.filter((p) => p.topicArn === LEVEL_TOPICS[0])).toHaveLength(1);
    expect((await timeline(h.store, incidentId)).map((e) => e.kind).sort()).toEqual(['page', 'page-failed', 'state']);
  });

  it('pages a later step (a new token) of the same level again: the last level is paged again on each timeout', async () => {
    await page('token-1', 3);
    await page('token-2', 3);

    expect(h.published.filter((p) => p.topicArn === LEVEL_TOPICS[2])).toHaveLength(2);
  });
});
