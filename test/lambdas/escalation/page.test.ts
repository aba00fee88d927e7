import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AuthorizationErrorException, InternalErrorException, NotFoundException, ThrottledException } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { readAckLinkKey } from '../../../lambdas/escalation/key';
import { highestLevelPaged, Incident, levelsPaged, pageIntent, shortHash } from '../../../lambdas/escalation/model';
import { acknowledgeIncident, createIncident, getIncident, resolveIncident, timeline } from '../../../lambdas/escalation/store';
import { runTask, TaskDeps } from '../../../lambdas/escalation/tasks';
import { ingestAlarmChange } from '../../../lambdas/escalation/ingest';
import { ALARM, alarmEvent, DESCRIPTION, EscalationHarness, EVENT_ALARM, EVENT_DESCRIPTION, LEVEL_TOPICS, openIncident, refusingWrites, startHarness } from './harness';

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

  it('texts an SMS subscriber one line: the level, the alarm and how to acknowledge (no link), then the acknowledgement and the resolution (docs/escalation.md, "What an SMS says")', async () => {
    // Act: level 2 paged, acknowledged by the CLI, then resolved
    await page('token-1', 1);
    await page('token-2', 2);
    await acknowledgeIncident(h.store, incidentId, { by: 'Alice', via: 'cli' });
    await runTask(h.taskDeps, { action: 'await', incidentId, taskToken: 'token-3' });
    await resolveIncident(h.store, incidentId, { by: 'Alice', via: 'cli', how: 'resolved by hand' });
    await runTask(h.taskDeps, { action: 'resolve', incidentId });

    // Assert
    expect(h.published.filter((p) => p.topicArn === LEVEL_TOPICS[1]).map((p) => p.sms)).toEqual([
      `atmr-dr N2 ${ALARM} ALARM. Ack: /incident ack ${incidentId}`,
      `atmr-dr acquitté par Alice : ${ALARM} (${incidentId}), rien à faire`,
      `atmr-dr résolu : ${ALARM} (${incidentId})`,
    ]);
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

  describe('a publish that fails: only a page SNS refused is withdrawn from the levels paged', () => {
    /** What the SDK throws once its 5 attempts are spent: `attempts` and the status, as its retry strategy sets them. */
    const timedOut = () => Object.assign(new Error('@smithy/node-http-handler - the request socket timed out after 10000 ms of inactivity'), { name: 'TimeoutError', $metadata: { attempts: 5 } });
    const socketReset = () => Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET', $metadata: { attempts: 5 } });
    const internalError = () => new InternalErrorException({ message: 'Internal error', $metadata: { httpStatusCode: 500, attempts: 5 } });
    const throttledAfterRetries = () => new ThrottledException({ message: 'Rate exceeded', $metadata: { httpStatusCode: 400, attempts: 5 } });
    const denied = () => new AuthorizationErrorException({ message: 'User is not authorized to perform: SNS:Publish', $metadata: { httpStatusCode: 403, attempts: 1 } });
    const notFound = () => new NotFoundException({ message: 'Topic does not exist', $metadata: { httpStatusCode: 404, attempts: 1 } });
    const throttledOnce = () => new ThrottledException({ message: 'Rate exceeded', $metadata: { httpStatusCode: 400, attempts: 1 } });

    /** Level 1's page step, its publish failing with `error`: the step fails as a failed page; the incident and the failures on its timeline after it. */
    async function pageLevel1Failing(error: Error): Promise<{ incident: Incident; failures: string[] }> {
      h.publishErrors.set(LEVEL_TOPICS[0], error);
      await expect(page('token-1')).rejects.toMatchObject({ name: 'PagePublishFailed' });
      const incident = await getIncident(h.store, incidentId);
      if (!incident) throw new Error(`incident ${incidentId} has no record`);
      return { incident, failures: (await timeline(h.store, incidentId)).filter((e) => e.kind === 'page-failed').map((e) => e.text) };
    }

    it.each([
      ['the SDK timed out (no answer)', timedOut],
      ['the socket was reset', socketReset],
      ['SNS answered 500 after the retries', internalError],
      ['SNS throttled the last of several attempts (an earlier one may have timed out after SNS took the page)', throttledAfterRetries],
    ])('keeps the level as possibly paged when %s: it is told of the resolution even if every retry fails', async (_case, error) => {
      const { incident, failures } = await pageLevel1Failing(error());

      expect(incident).toMatchObject({ pagedLevels: [], pageIntents: [pageIntent(1, shortHash('token-1'))] });
      expect(levelsPaged(incident, undefined)).toEqual([1]);
      expect(highestLevelPaged(incident, undefined)).toBe(1);
      expect(failures).toEqual([expect.stringMatching(/^Page of level 1 \(On-call engineer\) failed: .+; SNS may have delivered it: the level counts as possibly paged$/)]);
    });

    it.each([
      ['SNS denied the publish (403)', denied],
      ['the topic does not exist (404)', notFound],
      ['SNS throttled the only attempt', throttledOnce],
    ])('withdraws the level when %s: it was not paged', async (_case, error) => {
      const { incident, failures } = await pageLevel1Failing(error());

      expect(incident).toMatchObject({ pagedLevels: [], pageIntents: [] });
      expect(levelsPaged(incident, undefined)).toEqual([]);
      expect(failures).toEqual([expect.not.stringContaining('may have delivered')]);
    });
  });

  it('fails as PagedNotRecorded, not as a failed page, when the table refuses the record of a page that went out, after trying every write', async () => {
    // recordPagedLevel (the levels paged, the level, the page's key) refused past the SDK's retries.
    const { harness, refused } = refusingWrites(h, (write) => write.UpdateExpression?.startsWith('ADD pagedLevels') === true);

    const failed = runTask(harness.taskDeps, { action: 'page', incidentId, level: 1, taskToken: 'token-1' });

    await expect(failed).rejects.toMatchObject({
      name: 'PagedNotRecorded',
      message: 'level 1 (On-call engineer) was paged but the ops-state table refused its record: ThrottlingException: Rate of requests exceeds the allowed throughput; the level keeps its timeout',
    });
    expect(refused()).toBe(1);
    expect(h.published.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[0]]);
    // The timeline entry, written beside the refused record, is there all the same.
    expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'page')).toEqual([expect.objectContaining({ text: 'Paged level 1 (On-call engineer)', level: 1 })]);
  });

  it('fails the reminder step (PagerErrors counts it) when SNS refuses the reminder, with the failure on the timeline', async () => {
    await acknowledgeIncident(h.store, incidentId, { by: 'alice', via: 'cli', level: 1 });
    h.failingTopics.add(LEVEL_TOPICS[0]);

    const failed = runTask(h.taskDeps, { action: 'remind', incidentId, taskToken: 'token-r1' });

    await expect(failed).rejects.toMatchObject({ name: 'ReminderPublishFailed', message: 'publishing the reminder to level 1 failed: KMSDisabledException: KMS key is disabled' });
    expect(h.published).toEqual([]);
    const entries = await timeline(h.store, incidentId);
    expect(entries.filter((e) => e.kind === 'page-failed')).toEqual([expect.objectContaining({ text: 'Reminder of level 1 failed: KMS key is disabled', level: 1 })]);
    // Not sent: the timeline does not say "Reminded".
    expect(entries.filter((e) => e.kind === 'reminder')).toEqual([]);
  });

  it('pages a later step (a new token) of the same level again: the last level is paged again on each timeout', async () => {
    await page('token-1', 3);
    await page('token-2', 3);

    expect(h.published.filter((p) => p.topicArn === LEVEL_TOPICS[2])).toHaveLength(2);
  });

  describe('after a deploy that dropped level 3 while the incident was open at it', () => {
    /** The task code as deployed after it: levels 1 and 2 only. */
    const twoLevels = (): TaskDeps => ({ ...h.taskDeps, levels: h.taskDeps.levels.slice(0, 2) });

    it('pages level 2, the highest level configured, when the execution started before the deploy pages level 3 again', async () => {
      await page('token-1', 3);

      const result = await runTask(twoLevels(), { action: 'page', incidentId, level: 3, taskToken: 'token-2' });

      expect(result).toEqual({ result: 'paged level 2' });
      expect(h.published.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[2], LEVEL_TOPICS[1]]);
      expect(h.published[1].text).toContain('Niveau 2 (Lead DevOps)');
      expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'page').map((e) => e.text)).toEqual([
        'Paged level 3 (CTO)',
        'Paged level 2 (Lead DevOps), the highest level configured (level 3 no longer exists)',
      ]);
      expect(await getIncident(h.store, incidentId)).toMatchObject({ pagedLevels: [2, 3], pageIntents: [] });
    });

    it('reminds level 2 when level 3 acknowledged with its link', async () => {
      await page('token-1', 3);
      await acknowledgeIncident(h.store, incidentId, { by: 'carol', via: 'link', level: 3 });

      const result = await runTask(twoLevels(), { action: 'remind', incidentId, taskToken: 'token-r1' });

      expect(result).toEqual({ result: 'reminded level 2' });
      expect(h.published.filter((p) => p.subject?.startsWith('[atmr-dr] Rappel')).map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[1]]);
    });

    it('tells levels 1 and 2 of the resolution and asks them to tell level 3, which no topic reaches any more; the timeline says level 3 was not told', async () => {
      // Arrange: levels 1, 2 and 3 paged before the deploy; resolved by hand after it.
      await page('token-1', 1);
      await page('token-2', 2);
      await page('token-3', 3);
      await resolveIncident(h.store, incidentId, { by: 'carol', via: 'cli', how: 'resolved by hand' });

      // Act
      const result = await runTask(twoLevels(), { action: 'resolve', incidentId });

      // Assert
      expect(result).toEqual({ result: 'announced to levels 1, 2; levels removed since, not told: 3' });
      const notices = h.published.filter((p) => p.subject?.startsWith('[atmr-dr] Résolu'));
      expect(notices.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[0], LEVEL_TOPICS[1]]);
      expect(notices[1].text).toContain('Niveau 3 alerté pour cet incident puis retiré de la configuration : atmr-dr ne peut plus le prévenir, faites-le vous-même.');
      expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'page-failed').map((e) => e.text)).toEqual([
        'Resolution notice to level 3 not sent: the level was removed from the configuration after it heard of the incident (no topic reaches it); the levels told are asked to tell it',
      ]);
    });

    it('reminds level 1 of a carried-over climb acknowledged from the CLI, tells it alone of the resolution, and asks nobody to tell a level that never heard of the incident', async () => {
      // Arrange: a flapping alarm's incident carries over its previous one's climb at level 3 (which
      // heard of that one, and of its "Résolu"); acknowledged by the CLI (no level): level 1 is
      // reminded, not level 3 (dropped by the deploy) nor level 2 (the highest level left).
      const id = 'inc-carried-3';
      await createIncident(h.store, { id, alarmName: ALARM, openedAt: '2026-11-30T10:15:00.000Z', carriedOver: { from: 'inc-prev', level: 3, until: '2026-11-30T10:30:00.000Z' } });
      await acknowledgeIncident(h.store, id, { by: 'alice', via: 'cli' });
      expect(await runTask(twoLevels(), { action: 'remind', incidentId: id, taskToken: 'token-r1' })).toEqual({ result: 'reminded level 1' });
      await resolveIncident(h.store, id, { by: 'carol', via: 'cli', how: 'resolved by hand' });

      // Act
      const result = await runTask(twoLevels(), { action: 'resolve', incidentId: id });

      // Assert: level 1 (the alarm's own action, reminded) hears "Résolu"; level 3 is not named.
      expect(result).toEqual({ result: 'announced to levels 1' });
      const notices = h.published.filter((p) => p.subject?.startsWith('[atmr-dr] Résolu'));
      expect(notices.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[0]]);
      expect(notices[0].text).not.toContain('retiré');
      expect((await timeline(h.store, id)).filter((e) => e.kind === 'page-failed')).toEqual([]);
    });

    it('counts the level whose reminder timed out (SNS may have delivered it) as reminded: it is told of the resolution', async () => {
      // Arrange: a carried-over climb at level 3 acknowledged with level 3's link; the deploy dropped
      // level 3, so level 2 is reminded, and that reminder times out once the SDK's attempts are spent.
      const id = 'inc-carried-3';
      await createIncident(h.store, { id, alarmName: ALARM, openedAt: '2026-11-30T10:15:00.000Z', carriedOver: { from: 'inc-prev', level: 3, until: '2026-11-30T10:30:00.000Z' } });
      await acknowledgeIncident(h.store, id, { by: 'alice', via: 'link', level: 3 });
      h.publishErrors.set(LEVEL_TOPICS[1], Object.assign(new Error('socket timed out'), { name: 'TimeoutError', $metadata: { attempts: 5 } }));
      await expect(runTask(twoLevels(), { action: 'remind', incidentId: id, taskToken: 'token-r1' })).rejects.toMatchObject({ name: 'ReminderPublishFailed' });
      h.publishErrors.clear();
      await resolveIncident(h.store, id, { by: 'carol', via: 'cli', how: 'resolved by hand' });

      // Act
      const result = await runTask(twoLevels(), { action: 'resolve', incidentId: id });

      // Assert: level 3 (its link acknowledged) is named as removed; level 2 is told for its reminder.
      expect(result).toEqual({ result: 'announced to levels 1, 2; levels removed since, not told: 3' });
      expect((await timeline(h.store, id)).filter((e) => e.kind === 'page-failed').map((e) => e.text)).toEqual([
        'Reminder of level 2 failed: socket timed out; SNS may have delivered it',
        expect.stringContaining('Resolution notice to level 3 not sent'),
      ]);
    });

    it('tells the level it reminded of the resolution when the table refused the reminder\'s timeline entry, and not a level whose reminder SNS refused', async () => {
      // Arrange: a carried-over climb at level 3, acknowledged with level 3's link after a deploy
      // dropped level 3: level 2 is reminded, SNS takes it, the table refuses its "Reminded" entry.
      const id = 'inc-carried-3';
      await createIncident(h.store, { id, alarmName: ALARM, openedAt: '2026-11-30T10:15:00.000Z', carriedOver: { from: 'inc-prev', level: 3, until: '2026-11-30T10:30:00.000Z' } });
      await acknowledgeIncident(h.store, id, { by: 'alice', via: 'link', level: 3 });
      const { harness } = refusingWrites(h, (w) => String(w.Item?.sk ?? '').startsWith('EVENT#reminder#'));
      const twoLevelsRefusing: TaskDeps = { ...harness.taskDeps, levels: harness.taskDeps.levels.slice(0, 2) };
      expect(await runTask(twoLevelsRefusing, { action: 'remind', incidentId: id, taskToken: 'token-r1' })).toEqual({ result: 'reminded level 2' });
      // And a second incident alike whose reminder SNS refused: level 2 heard nothing from it.
      const refusedId = 'inc-carried-3-refused';
      await createIncident(h.store, { id: refusedId, alarmName: ALARM, openedAt: '2026-11-30T10:15:00.000Z', carriedOver: { from: 'inc-prev', level: 3, until: '2026-11-30T10:30:00.000Z' } });
      await acknowledgeIncident(h.store, refusedId, { by: 'alice', via: 'link', level: 3 });
      h.failingTopics.add(LEVEL_TOPICS[1]);
      await expect(runTask(twoLevels(), { action: 'remind', incidentId: refusedId, taskToken: 'token-r2' })).rejects.toMatchObject({ name: 'ReminderPublishFailed' });
      h.failingTopics.clear();
      for (const incident of [id, refusedId]) await resolveIncident(h.store, incident, { by: 'carol', via: 'cli', how: 'resolved by hand' });

      // Act
      const results = [await runTask(twoLevels(), { action: 'resolve', incidentId: id }), await runTask(twoLevels(), { action: 'resolve', incidentId: refusedId })];

      // Assert: level 2 hears "Résolu" for the reminder it got, not for the one SNS refused.
      expect(results).toEqual([{ result: 'announced to levels 1, 2; levels removed since, not told: 3' }, { result: 'announced to levels 1; levels removed since, not told: 3' }]);
    });

    it('tells level 3 on the retry of a Resolve whose first try found it removed, when a deploy added it back in between', async () => {
      // Arrange: levels 1-3 paged; the first try runs on the two-level config and SNS refuses level 2's notice.
      await page('token-1', 1);
      await page('token-2', 2);
      await page('token-3', 3);
      await resolveIncident(h.store, incidentId, { by: 'carol', via: 'cli', how: 'resolved by hand' });
      h.failingTopics.add(LEVEL_TOPICS[1]);
      await expect(runTask(twoLevels(), { action: 'resolve', incidentId })).rejects.toMatchObject({ name: 'ResolutionNoticeFailed' });
      h.failingTopics.clear();

      // Act: the retry, on the three-level config again.
      const result = await runTask(h.taskDeps, { action: 'resolve', incidentId });

      // Assert: level 3 has its "Résolu" now; level 1 is not told twice.
      expect(result).toEqual({ result: 'announced to levels 1, 2, 3' });
      const notices = h.published.filter((p) => p.subject?.startsWith('[atmr-dr] Résolu'));
      expect(notices.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[0], LEVEL_TOPICS[1], LEVEL_TOPICS[2]]);
      expect((await timeline(h.store, incidentId)).filter((e) => e.level === 3 && e.text.startsWith('Resolution notice')).map((e) => e.text)).toEqual([
        'Resolution notice to level 3 not sent: the level was removed from the configuration after it heard of the incident (no topic reaches it); the levels told are asked to tell it',
        'Resolution notice sent to level 3 (CTO)',
      ]);
    });

    it('climbs on from level 2 when an ALARM joined after the check read the alarm OK', async () => {
      await page('token-1', 3);
      await ingestAlarmChange(h.ingestDeps, alarmEvent('ALARM', '2026-11-30T10:40:00.000+0000'));

      const result = await runTask(twoLevels(), { action: 'resolve', incidentId, state: { check: { alarmState: 'OK', lastJoinedAlarmAt: '' } } });

      // The workflow pages the level after the one given, the last one again (AlarmAgainAfterResolve).
      expect(result).toEqual(expect.objectContaining({ alarmAgain: { status: 'OPEN', level: 2 } }));
    });
  });

  describe('with Slack #incidents', () => {
    const SLACK_TOPIC = 'arn:aws:sns:eu-west-3:111111111111:incidents-slack';
    const warnings: { message: string; details: Record<string, unknown> }[] = [];
    beforeEach(() => {
      warnings.length = 0;
    });
    const pageWithSlack = () =>
      runTask({ ...h.taskDeps, slackTopicArn: SLACK_TOPIC, warn: (message, details) => warnings.push({ message, details }) }, { action: 'page', incidentId, level: 2, taskToken: 'token-1' });

    it('posts the page to Slack without the signed link (any member could acknowledge as the level, and spend its nonce): the level paged alone gets it', async () => {
      await pageWithSlack();

      const [levelPage, slackCopy] = [LEVEL_TOPICS[1], SLACK_TOPIC].map((topic) => h.published.find((p) => p.topicArn === topic)?.text ?? '');
      expect(levelPage).toMatch(/Acquitter \(lien signé, usage unique\) : https:\/\/ack\.example\/\?i=.*&s=/);
      expect(slackCopy).toContain(incidentId);
      expect(slackCopy).not.toContain('?i=');
      expect(slackCopy).not.toContain('&s=');
      expect(slackCopy).not.toContain('lien signé');
      expect(slackCopy).toContain(`Slack : /incident ack ${incidentId}`);
      expect(slackCopy).toContain(`CLI (depuis le checkout atmr-dr) : npx --no atmr-dr incident ack ${incidentId}`);
    });

    it('records a Slack copy that could not be posted (timeline and log), and the level still has its page', async () => {
      h.failingTopics.add(SLACK_TOPIC);

      const result = await pageWithSlack();

      expect(result).toEqual({ result: 'paged level 2' });
      expect(h.published.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[1]]);
      expect(await getIncident(h.store, incidentId)).toMatchObject({ pagedLevels: [2] });
      expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'page-failed')).toEqual([
        expect.objectContaining({ text: 'Slack copy of the page of level 2 (Lead DevOps) failed: KMS key is disabled' }),
      ]);
      expect(warnings).toEqual([{ message: expect.stringContaining('Slack copy of a page failed'), details: expect.objectContaining({ incidentId, error: 'KMSDisabledException: KMS key is disabled' }) }]);
    });
  });
});

/** What the engineer paged reads: the ways to acknowledge that exist, and when the next level is paged. */
describe('escalation page: how to acknowledge, and when the next level is paged', () => {
  const SLACK_TOPIC = 'arn:aws:sns:eu-west-3:111111111111:incidents-slack';
  /** The page step's clock: 10:15:40 UTC. */
  const NOW = new Date('2026-11-30T10:15:40.000Z');
  let h: EscalationHarness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  /** The deps of a deployment whose levels have 10, 15 and 20 minutes, with Slack #incidents, the `/incident` command deployed or not. */
  const deps = (slackIncidentCommand: boolean): TaskDeps => ({
    ...h.taskDeps,
    store: { ...h.store, now: () => NOW },
    levels: h.taskDeps.levels.map((level, i) => ({ ...level, ackTimeoutSeconds: [600, 900, 1200][i] })),
    slackTopicArn: SLACK_TOPIC,
    slackIncidentCommand,
  });
  /** Level `level`'s page of a new incident: the level's e-mail text, its SMS and the Slack copy. */
  async function pageOf(level: number, slackIncidentCommand: boolean, alarm: [string, string] = [ALARM, DESCRIPTION]): Promise<{ incidentId: string; text: string; sms: string; slack: string }> {
    const incidentId = await openIncident(h, STATE_TIME, ...alarm);
    await runTask(deps(slackIncidentCommand), { action: 'page', incidentId, level, taskToken: `token-${level}` });
    const sent = h.published.find((p) => p.topicArn === LEVEL_TOPICS[level - 1]);
    const slack = h.published.find((p) => p.topicArn === SLACK_TOPIC);
    if (!sent?.sms || !slack) throw new Error(`level ${level}'s page or its Slack copy was not published: ${JSON.stringify(h.published)}`);
    return { incidentId, text: sent.text, sms: sent.sms, slack: (JSON.parse(slack.text) as { content: { description: string } }).content.description };
  }

  it('quotes no Slack command when /incident is not deployed (killswitch.slack absent): page, Slack copy and SMS give the CLI acknowledgement', async () => {
    const { incidentId, text, sms, slack } = await pageOf(1, false);

    const cli = `CLI (depuis le checkout atmr-dr) : npx --no atmr-dr incident ack ${incidentId} --by "<nom>" --env staging`;
    for (const copy of [text, slack]) {
      expect(copy).not.toContain('/incident');
      expect(copy.split('\n')).toContain(cli);
    }
    expect(sms).toBe(`atmr-dr N1 ${ALARM} ALARM. Ack: npx --no atmr-dr incident ack ${incidentId} --by "<nom>" --env staging`);
  });

  it('quotes /incident ack in the page, the Slack copy and the SMS when the command is deployed, beside the CLI', async () => {
    const { incidentId, text, sms, slack } = await pageOf(1, true);

    for (const copy of [text, slack]) {
      expect(copy.split('\n')).toEqual(expect.arrayContaining([`Slack : /incident ack ${incidentId}`, `CLI (depuis le checkout atmr-dr) : npx --no atmr-dr incident ack ${incidentId} --by "<nom>" --env staging`]));
    }
    expect(sms).toBe(`atmr-dr N1 ${ALARM} ALARM. Ack: /incident ack ${incidentId}`);
  });

  it("says below the level when the next level is paged: the level's own timeout from now, if the alarm is still in ALARM", async () => {
    const { text, slack } = await pageOf(1, true);

    for (const copy of [text, slack]) {
      expect(copy.split('\n').slice(1, 3)).toEqual(['Niveau 1 (On-call engineer)', "Sans acquittement, niveau 2 (Lead DevOps) appelé à 10:25 UTC (dans 10 min) si l'alarme est encore en ALARM."]);
    }
  });

  it('says at the last level that nobody else is paged, and that it is paged again every timeout while the alarm is in ALARM', async () => {
    const { text } = await pageOf(3, true);

    expect(text.split('\n').slice(1, 3)).toEqual([
      'Niveau 3 (CTO)',
      "Dernier niveau : personne d'autre ne sera appelé. Sans acquittement, niveau 3 (CTO) appelé de nouveau à 10:35 UTC (dans 20 min) si l'alarme est encore en ALARM, puis toutes les 20 min.",
    ]);
  });

  it("says an event alarm's next level is paged whatever its state (its OK resolves nothing)", async () => {
    const { text } = await pageOf(2, true, [EVENT_ALARM, EVENT_DESCRIPTION]);

    expect(text.split('\n')[2]).toBe('Sans acquittement, niveau 3 (CTO) appelé à 10:30 UTC (dans 15 min).');
  });

  it('says nothing of the next level in a reminder of the acknowledged incident', async () => {
    const incidentId = await openIncident(h, STATE_TIME);
    await acknowledgeIncident(h.store, incidentId, { by: 'alice', via: 'cli', level: 1 });

    await runTask(deps(true), { action: 'remind', incidentId, taskToken: 'token-r' });

    expect(h.published.find((p) => p.topicArn === LEVEL_TOPICS[0])?.text).not.toMatch(/Sans acquittement|Dernier niveau/);
  });
});

/**
 * The acknowledgement link's key as the task function reads it (readAckLinkKey, Powertools'
 * Secrets Manager provider), Secrets Manager answered at the SDK boundary. Each test reads its own
 * secret ARN: the provider caches a value 5 minutes per name.
 */
describe('escalation page step when the acknowledgement link key cannot be read', () => {
  const secrets = mockClient(SecretsManagerClient);
  let h: EscalationHarness;
  let incidentId: string;
  let warnings: { message: string; details: Record<string, unknown> }[];
  let secretArn: string;
  let n = 0;
  beforeEach(async () => {
    secrets.reset();
    h = await startHarness();
    incidentId = await openIncident(h, STATE_TIME);
    warnings = [];
    secretArn = `arn:aws:secretsmanager:eu-west-3:111111111111:secret:AckLinkKey-${++n}`;
  });
  afterEach(async () => h.close());
  afterAll(() => secrets.restore());

  const deps = (): TaskDeps => ({
    ...h.taskDeps,
    ackLink: { ...h.taskDeps.ackLink!, key: () => readAckLinkKey(secretArn) },
    warn: (message, details) => warnings.push({ message, details }),
  });

  /** The page of level 1 went out, without the link, with the Slack and CLI ways; the level stays 1. */
  async function expectPagedWithoutLink(why: RegExp): Promise<void> {
    const result = await runTask(deps(), { action: 'page', incidentId, level: 1, taskToken: 'token-1' });

    expect(result).toEqual({ result: 'paged level 1' });
    expect(h.published.map((p) => p.topicArn)).toEqual([LEVEL_TOPICS[0]]);
    const text = h.published[0].text;
    expect(text).not.toContain('Acquitter (lien signé');
    expect(text).toContain(`Slack : /incident ack ${incidentId}`);
    expect(text).toContain(`CLI (depuis le checkout atmr-dr) : npx --no atmr-dr incident ack ${incidentId}`);
    expect(await getIncident(h.store, incidentId)).toMatchObject({ status: 'OPEN', level: 1, pagedLevels: [1] });
    const notes = (await timeline(h.store, incidentId)).filter((e) => e.kind === 'note');
    expect(notes).toEqual([expect.objectContaining({ level: 1, text: expect.stringMatching(/^Page of level 1 \(On-call engineer\) sent without its acknowledgement link: the link key could not be read/) })]);
    expect(notes[0].text).toMatch(why);
    expect(warnings).toEqual([{ message: expect.stringContaining('page sent without its link'), details: expect.objectContaining({ incidentId, level: 1, error: expect.stringMatching(why) }) }]);
  }

  it('pages level 1 without the link when Secrets Manager is throttled (a cold start), instead of failing the step and paging level 2', async () => {
    secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));

    await expectPagedWithoutLink(/ThrottlingException: Rate exceeded/);
  });

  it('pages level 1 without the link when the key was rotated by hand to fewer than 32 characters, and logs no part of it', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'short-key-123' });

    await expectPagedWithoutLink(/shorter than 32 characters/);
    expect(JSON.stringify(warnings)).not.toContain('short-key-123');
    expect(JSON.stringify(await timeline(h.store, incidentId))).not.toContain('short-key-123');
  });

  it('reminds the acknowledging level with the commands that resolve the incident and show its timeline, no way to acknowledge again (refused as already acknowledged), key readable or not', async () => {
    for (const [key, readable] of [['token-r1', false], ['token-r2', true]] as const) {
      secrets.reset();
      if (readable) secrets.on(GetSecretValueCommand).resolves({ SecretString: 'k'.repeat(40) });
      else secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error("Secrets Manager can't find the specified secret."), { name: 'ResourceNotFoundException' }));
      if (!readable) await acknowledgeIncident(h.store, incidentId, { by: 'alice', via: 'cli', level: 1 });
      const before = h.published.length;

      const result = await runTask({ ...deps(), ackLink: { ...deps().ackLink!, key: () => readAckLinkKey(`${secretArn}-${key}`) } }, { action: 'remind', incidentId, taskToken: key });

      expect(result).toEqual({ result: 'reminded level 1' });
      const [reminder] = h.published.slice(before);
      expect(reminder).toMatchObject({ topicArn: LEVEL_TOPICS[0], subject: expect.stringContaining('Rappel') });
      expect(reminder.text).not.toMatch(/Acquitter|incident ack|ack-link|signature=/);
      expect(reminder.text).toContain(`Déjà acquitté. Une fois traité, résoudre (arrête les rappels ; depuis le checkout atmr-dr) : npx --no atmr-dr incident resolve ${incidentId} --by "<nom>" --env staging`);
      expect(reminder.text).toContain(`Chronologie : npx --no atmr-dr incident timeline ${incidentId} --env staging`);
      expect(reminder.sms).toBe(`atmr-dr Rappel N1 ${ALARM} ALARM, acquitté. Résoudre : npx --no atmr-dr incident resolve ${incidentId} --env staging`);
      expect(secrets.calls()).toHaveLength(0);
    }
    expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'note' || e.kind === 'page-failed')).toEqual([]);
  });

  it('pages with the link when the key is readable', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'k'.repeat(40) });

    await runTask(deps(), { action: 'page', incidentId, level: 1, taskToken: 'token-1' });

    expect(h.published[0].text).toMatch(/Acquitter \(lien signé, usage unique\) : https:\/\/ack\.example\//);
    expect((await timeline(h.store, incidentId)).filter((e) => e.kind === 'note')).toEqual([]);
    expect(warnings).toEqual([]);
  });
});
