import { nowOf } from '../shared/clock';
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { refusedWithoutEffect } from '../shared/aws-errors';
import { operatorCommand } from '../shared/constants';
import { namedLine, oneLine } from '../shared/errors';
import { formatSeconds } from '../shared/format';
import { ackLinkUrl } from './ack-link';
import { alarmStateNow } from './alarm-state';
import { nextExecutionOf, startNextExecution } from './next-execution';
import type { ExecutionInput } from './ingest';
import { acknowledgingLevel, ExecutionState, Incident, intentLevels, joinAwaitsReminder, levelReached, levelsPaged, pagedNotRecordedKeys, pageIntent, runbookOf, shortHash, signalsEvent, TimelineEntry } from './model';
import {
  changeIntent,
  claimResolutionNotice,
  getIncident,
  IncidentStore,
  recordPagedLevel,
  recordTimeline,
  releaseOpenPointer,
  replaceExecutionArn,
  resolveUnlessAlarmAgain,
  storeTaskToken,
  timelineKeys,
  timelineLevels,
  wake,
} from './store';

/** One escalation level as the workflow sees it: who, the topic that reaches them, and how long they have. */
export interface PagedLevel {
  readonly name: string;
  readonly topicArn: string;
  /**
   * The level's acknowledgement timeout: the state machine's own for the level (its PageLevel<n>
   * task timeout and HoldLevel<n> wait), after which the alarm is re-read and the next level paged.
   */
  readonly ackTimeoutSeconds: number;
}

export interface TaskDeps {
  readonly store: IncidentStore;
  readonly sns: SNSClient;
  readonly cloudwatch: CloudWatchClient;
  readonly levels: readonly PagedLevel[];
  /** Slack #incidents (AWS Chatbot) topic. @default - no Slack */
  readonly slackTopicArn?: string;
  /**
   * The Slack slash command `/incident` is deployed (the killswitch's Slack endpoint answers it):
   * only then do pages quote `/incident ack <id>`, a command that otherwise does not exist.
   * @default false
   */
  readonly slackIncidentCommand?: boolean;
  readonly runbookUrl: string;
  /** Signed acknowledgement links in pages. @default - no link */
  readonly ackLink?: { readonly baseUrl: string; readonly key: () => Promise<string>; readonly validitySeconds: number };
  /** Something wrong that did not stop the step (a page sent without its link). @default - not logged (the timeline has it) */
  readonly warn?: (message: string, details: Record<string, unknown>) => void;
}

/** What each workflow step sends the task function. */
export type TaskInput =
  | { readonly action: 'page'; readonly incidentId: string; readonly level: number; readonly taskToken: string }
  | { readonly action: 'await'; readonly incidentId: string; readonly taskToken: string; readonly state?: ExecutionState }
  // `state`: the execution's state, for the levels it paged but the table does not list (model.ts
  // levelsPaged). Absent from a step of an execution started before it was passed: none then.
  | { readonly action: 'remind'; readonly incidentId: string; readonly taskToken: string; readonly state?: ExecutionState }
  | { readonly action: 'check'; readonly incidentId: string }
  | { readonly action: 'resolve'; readonly incidentId: string; readonly state?: ExecutionState }
  | { readonly action: 'handover'; readonly incidentId: string; readonly alarmName: string; readonly resumeAt: string; readonly rounds: number; readonly execution: string; readonly state?: ExecutionState }
  | { readonly action: 'takeover'; readonly incidentId: string; readonly execution: string; readonly handedOverFrom?: string; readonly resumeAt?: string };

export type AlarmStateNow = 'ALARM' | 'OK' | 'INSUFFICIENT_DATA' | 'DELETED' | 'RESOLVED';

/** Thrown when a page could not be published after the SDK's retries: the workflow climbs at once. */
export class PagePublishFailed extends Error {
  override readonly name = 'PagePublishFailed';
}

/**
 * Thrown when a level's page WAS published but the ops-state table refused its bookkeeping (the
 * levels paged, the timeline entry) after the SDK's retries: the workflow holds the level for its
 * timeout (HoldLevel<n>) as if the step had waited, instead of paging the next level at once, and
 * the error counts in PagerErrors so that someone hears of the table. Never retried by the
 * workflow: a retry gets a new task token, hence a new page key, and would page the level again.
 */
export class PagedNotRecorded extends Error {
  override readonly name = 'PagedNotRecorded';
}

/**
 * Thrown when a reminder could not be published (recorded on the timeline first): the step fails,
 * which counts in PagerErrors, and the workflow goes back to the acknowledged wait, whose end
 * re-reads the alarm and reminds again after the interval.
 */
export class ReminderPublishFailed extends Error {
  override readonly name = 'ReminderPublishFailed';
}

/**
 * Thrown by the Resolve step once the incident is resolved when its notice could not reach every
 * level paged (or the table refused its bookkeeping): the workflow retries the step, which tells only
 * the levels not told yet, and after its retries ends the execution without failing it (a failed
 * execution pages "nobody is being paged" for an incident that is resolved).
 */
export class ResolutionNoticeFailed extends Error {
  override readonly name = 'ResolutionNoticeFailed';
}

const nowIso = (deps: TaskDeps): string => nowOf(deps.store).toISOString();

async function requireIncident(deps: TaskDeps, id: string): Promise<Incident> {
  const incident = await getIncident(deps.store, id);
  if (!incident) throw new Error(`incident ${id} has no record in the ops-state table`);
  return incident;
}

/**
 * How to acknowledge, in every page: the link (no credentials), Slack when its `/incident` command
 * is deployed, the CLI. A link key that cannot be read (Secrets Manager throttled on a cold start,
 * a key rotated by hand to fewer than 32 characters, deleted) costs the page its link, never the
 * page: the CLI (and Slack) still acknowledge. The link is apart from the other lines: only the
 * level paged gets it (see PageMessage.slack).
 */
async function howToAck(deps: TaskDeps, incident: Incident, level: number, ackKey?: Promise<string>): Promise<{ link?: string; lines: string[]; linkMissing?: string }> {
  const lines: string[] = [];
  let link: string | undefined;
  let linkMissing: string | undefined;
  if (deps.ackLink) {
    const expiresAt = Math.floor(Date.parse(nowIso(deps)) / 1000) + deps.ackLink.validitySeconds;
    try {
      link = `Acquitter (lien signé, usage unique) : ${ackLinkUrl(deps.ackLink.baseUrl, await (ackKey ?? deps.ackLink.key()), { incidentId: incident.id, level, expiresAt })}`;
    } catch (error) {
      // The error's name and message only (readAckLinkKey never puts the key in its message). The
      // Secrets Manager error (ThrottlingException, ResourceNotFoundException...) says what to do;
      // Powertools wraps it in a GetParameterError that says less.
      const cause = (error as { cause?: unknown } | null)?.cause;
      linkMissing = namedLine(cause instanceof Error ? cause : error);
    }
  }
  if (deps.slackIncidentCommand) lines.push(`Slack : /incident ack ${incident.id}`);
  lines.push(`CLI (depuis le checkout atmr-dr) : ${operatorCommand(deps.store.environmentName, `incident ack ${incident.id} --by "<nom>"`)}`);
  return { ...(link !== undefined && { link }), lines, ...(linkMissing !== undefined && { linkMissing }) };
}

export interface PageMessage {
  readonly subject: string;
  readonly text: string;
  /**
   * The Slack #incidents copy: the text without the signed link. The link acknowledges as its level
   * with no allow-list, and its nonce is the page's: in the channel, any member could acknowledge as
   * the level paged (bypassing `/incident`'s allow-list) and leave the level's own click a 409.
   */
  readonly slack: string;
  readonly sms: string;
  /** Why the page has no acknowledgement link (its key could not be read); absent when it has one or none is configured. */
  readonly linkMissing?: string;
}

/**
 * What a reminder asks instead of an acknowledgement: the incident is acknowledged already, and a
 * second acknowledgement is refused ("already acknowledged"). What ends the reminders is resolving it.
 */
function howToEndReminders(environmentName: string | undefined, incident: Incident): { lines: string[] } {
  return {
    lines: [
      `Déjà acquitté. Une fois traité, résoudre (arrête les rappels ; depuis le checkout atmr-dr) : ${operatorCommand(environmentName, `incident resolve ${incident.id} --by "<nom>"`)}`,
      `Chronologie : ${operatorCommand(environmentName, `incident timeline ${incident.id}`)}`,
    ],
  };
}

/**
 * When the workflow pages again if this page is not acknowledged: the level's timeout (PagedLevel
 * ackTimeoutSeconds, the state machine's PageLevel<n> timeout) from now. Then the alarm is re-read:
 * a state alarm climbs only while in ALARM (OK resolves, INSUFFICIENT_DATA holds the level another
 * timeout); an event alarm climbs in any state. The last level is paged again every timeout.
 */
function nextPageLine(deps: TaskDeps, level: number, event: boolean): string {
  const timeout = deps.levels[level - 1]?.ackTimeoutSeconds;
  if (timeout === undefined) return '';
  const at = `${new Date(nowOf(deps.store).getTime() + timeout * 1000).toISOString().slice(11, 16)} UTC (dans ${formatSeconds(timeout)})`;
  const condition = event ? '' : ' si l\'alarme est encore en ALARM';
  const next = deps.levels[level];
  if (next) return `Sans acquittement, niveau ${level + 1} (${next.name}) appelé à ${at}${condition}.`;
  return `Dernier niveau : personne d'autre ne sera appelé. Sans acquittement, niveau ${level} (${deps.levels[level - 1].name}) appelé de nouveau à ${at}${condition}, puis toutes les ${formatSeconds(timeout)}.`;
}

/**
 * The page: alarm, runbook section and link, level, when the next level is paged, incident id, how
 * to acknowledge; a reminder (of an acknowledged incident) says how to resolve it instead. `ackKey`: the link key when the
 * caller already started reading it. @default - read now
 */
export async function pageMessage(deps: TaskDeps, incident: Incident, level: number, kind: 'page' | 'reminder', ackKey?: Promise<string>): Promise<PageMessage> {
  const { section, link } = runbookOf(incident.alarmDescription);
  const levelName = deps.levels[level - 1]?.name ?? `level ${level}`;
  const ack: { link?: string; lines: string[]; linkMissing?: string } = kind === 'page' ? await howToAck(deps, incident, level, ackKey) : howToEndReminders(deps.store.environmentName, incident);
  const event = signalsEvent(incident.alarmDescription);
  const ackedBy = incident.ack ? ` par ${incident.ack.by}` : '';
  // An event alarm's reminder follows a new failure (or a re-read in ALARM): its alarm is not "still"
  // in ALARM, and goes OK by itself minutes later.
  const head =
    kind === 'page'
      ? `Niveau ${level} (${levelName})`
      : `Rappel niveau ${level} (${levelName}), incident acquitté${ackedBy} mais ${event ? 'alarme d\'événement de nouveau en ALARM (nouvel échec)' : 'alarme toujours en ALARM'}`;
  const body = [
    `[atmr-dr] Incident ${incident.id} : ${incident.alarmName} en ALARM depuis ${incident.openedAt}`,
    head,
    ...(kind === 'page' ? [nextPageLine(deps, level, event)].filter((line) => line !== '') : []),
    ...(incident.alarmDescription ? [`Alarme : ${incident.alarmDescription}`] : []),
    ...(incident.alarmReason ? [`Raison : ${incident.alarmReason}`] : []),
    // The alarm's own OK will say "all clear" within minutes: the page says it is not.
    // Acknowledged, an event alarm's incident climbs no more: only its resolution ends the reminders.
    ...(event && kind === 'page'
      ? [`Alarme d'événement : son retour à OK ne résout rien. L'escalade continue jusqu'à l'acquittement ; une fois traité : ${operatorCommand(deps.store.environmentName, `incident resolve ${incident.id}`)}`]
      : []),
    ...(event && kind === 'reminder'
      ? [`Alarme d'événement : son retour à OK ne résout rien. Un rappel à chaque nouvel échec, jusqu'à la résolution (ci-dessous).`]
      : []),
    `Runbook : ${section ?? 'Escalade'} ${link ?? deps.runbookUrl}`,
  ];
  const text = [...body, ...(ack.link !== undefined ? [ack.link] : []), ...ack.lines].join('\n');
  const slack = [...body, ...ack.lines].join('\n');
  const subject = `[atmr-dr] ${kind === 'page' ? `N${level}` : 'Rappel'} ${incident.alarmName}`.slice(0, 99);
  // A reminder's SMS: the resolve command alone (the timeline is for a screen, not a phone). A
  // page's: the shortest way to acknowledge that exists, the Slack command when it is deployed.
  const ackBy = deps.slackIncidentCommand ? `/incident ack ${incident.id}` : `${operatorCommand(deps.store.environmentName, `incident ack ${incident.id} --by "<nom>"`)}`;
  const sms =
    kind === 'page'
      ? `atmr-dr N${level} ${incident.alarmName} ALARM. Ack: ${ackBy}`
      : `atmr-dr Rappel N${level} ${incident.alarmName} ALARM, acquitté. Résoudre : ${operatorCommand(deps.store.environmentName, `incident resolve ${incident.id}`)}`;
  return { subject, text, slack, sms, ...(ack.linkMissing !== undefined && { linkMissing: ack.linkMissing }) };
}

/**
 * A page or reminder that went out without its acknowledgement link: logged (the error's name and
 * message, never the key) and recorded on the timeline once per step (`key`), so the post-mortem
 * shows why that page had no link.
 */
async function recordLinkMissing(deps: TaskDeps, incidentId: string, key: string, what: string, linkMissing: string | undefined, at: string, level: number): Promise<void> {
  if (linkMissing === undefined) return;
  const text = `${what} sent without its acknowledgement link: the link key could not be read (${linkMissing}); ${deps.slackIncidentCommand ? 'Slack and the CLI acknowledge' : 'the CLI acknowledges'}`;
  deps.warn?.('acknowledgement link key unreadable: page sent without its link', { incidentId, level, error: linkMissing });
  await recordTimeline(deps.store, incidentId, `${key}#no-link`, { at, kind: 'note', text, level });
}

/**
 * A Slack copy of a page that could not be posted: logged and on the timeline, as a resolution
 * notice's Slack failure is, so that nobody reads the channel's silence as no page. Neither fails
 * the step: the level has its page, and a write refused here costs only the record of the copy.
 */
async function slackCopyFailed(deps: TaskDeps, incidentId: string, pageKey: string, what: string, error: unknown, at: string): Promise<void> {
  deps.warn?.('Slack copy of a page failed: the page itself went out', { incidentId, error: namedLine(error) });
  await recordTimeline(deps.store, incidentId, `page-failed#${pageKey}#slack`, { at, kind: 'page-failed', text: `${what} failed: ${oneLine(error)}` }).catch(() => undefined);
}

/** AWS Chatbot's custom notification format (plain text is not shown by Chatbot). */
function chatbotMessage(title: string, description: string): string {
  return JSON.stringify({ version: '1.0', source: 'custom', content: { textType: 'client-markdown', title, description } });
}

async function publish(deps: TaskDeps, topicArn: string, message: PageMessage): Promise<void> {
  await deps.sns.send(
    new PublishCommand({
      TopicArn: topicArn,
      Subject: message.subject,
      MessageStructure: 'json',
      Message: JSON.stringify({ default: message.text, email: message.text, sms: message.sms }),
    }),
  );
}

async function publishSlack(deps: TaskDeps, title: string, description: string): Promise<void> {
  if (!deps.slackTopicArn) return;
  await deps.sns.send(new PublishCommand({ TopicArn: deps.slackTopicArn, Message: chatbotMessage(title, description) }));
}

/**
 * Pages one level: stores the step's task token first (so an acknowledgement right after the page
 * wakes this step), publishes once per token (a retried step does not page twice), records it.
 * An incident already acknowledged or resolved wakes its own step instead of paging.
 */
async function page(deps: TaskDeps, incidentId: string, asked: number, taskToken: string): Promise<string> {
  const level = existingLevel(deps, asked);
  // The link key (a Secrets Manager read on a cold start) is fetched while the token is stored,
  // not after: it is on the path to the page. Observed here so that an early return leaves no
  // unhandled rejection; a failure costs the page its link below, not the page.
  const ackKey = deps.ackLink?.key();
  ackKey?.catch(() => undefined);
  // The token write also records the page as possibly out (its intent) before it goes out: a step
  // stopped between the publish and its record (the function's timeout, a crash: Step Functions
  // then catches or retries it), or whose publish failed without SNS refusing it (below), leaves
  // the intent, and the level is told of the resolution.
  const pageKey = shortHash(taskToken);
  const intent = pageIntent(level, pageKey);
  const incident = await storeTaskToken(deps.store, incidentId, taskToken, level, { pageIntent: intent });
  if (incident.status !== 'OPEN') {
    await wake(deps.store, taskToken, { outcome: incident.status === 'ACKED' ? 'ack' : 'resolved' });
    return `woken: ${incident.status}`;
  }
  const target = deps.levels[level - 1];
  if (!target) throw new Error(`no escalation level ${level} (levels: ${deps.levels.length})`);
  // Publish once per token: a retried step whose page went out stops here. The check rides on the
  // token write above (one table round trip before the page, not two), and the timeline entry is
  // written once the page is out.
  if (incident.publishedPages.includes(pageKey)) return 'already paged';
  const at = nowIso(deps);

  const message = await pageMessage(deps, incident, level, 'page', ackKey);
  try {
    await publish(deps, target.topicArn, message);
  } catch (error) {
    const refused = refusedWithoutEffect(error);
    // A page without its link that did not go out either: the retry reads the key again.
    await recordTimeline(deps.store, incidentId, `page-failed#${pageKey}#${at}`, {
      at,
      kind: 'page-failed',
      text: `Page of level ${level} (${target.name}) failed: ${oneLine(error)}${refused ? '' : '; SNS may have delivered it: the level counts as possibly paged'}`,
      level,
    });
    // Only a page SNS refused (a 4xx) is withdrawn: its level was not paged by it, and is not told
    // of the resolution for it. A page whose outcome is unknown (a timeout, a reset socket, a 5xx
    // after the SDK's retries) may have reached the level: its intent stays, and the level is told
    // of the resolution (and reminded when it is the highest paged), even when every retry of the
    // step fails. A withdrawal the table refuses leaves the level told for nothing, never untold:
    // it does not fail the step.
    if (refused) await changeIntent(deps.store, incidentId, 'pageIntents', 'DELETE', intent).catch(() => undefined);
    throw new PagePublishFailed(`publishing to level ${level} failed: ${oneLine(error)}`);
  }
  // The level has its page: the bookkeeping and Slack (a second channel, whose failure must not
  // cost the level its page) go together rather than one after the other. Every write is waited
  // for, failed or not: the one that fails must not leave the others in flight when the step ends.
  const [bookkeeping] = await Promise.all([
    Promise.allSettled([
      recordPagedLevel(deps.store, incidentId, level, pageKey),
      recordLinkMissing(deps, incidentId, `page#${pageKey}`, `Page of level ${level} (${target.name})`, message.linkMissing, at, level),
      recordTimeline(deps.store, incidentId, `page#${pageKey}`, { at, kind: 'page', text: `Paged level ${level} (${target.name})${asked > level ? `, the highest level configured (level ${asked} no longer exists)` : ''}`, level }),
    ]),
    publishSlack(deps, `:rotating_light: ${incident.alarmName} : niveau ${level} (${target.name})`, message.slack).catch((error: unknown) =>
      slackCopyFailed(deps, incidentId, pageKey, `Slack copy of the page of level ${level} (${target.name})`, error, at),
    ),
  ]);
  const refused = bookkeeping.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  // The page is out: failing the step as a failed page would climb to the next level at once, before
  // this level had its time to acknowledge. The workflow holds the level instead (PagedNotRecorded).
  if (refused) throw new PagedNotRecorded(`level ${level} (${target.name}) was paged but the ops-state table refused its record: ${namedLine(refused.reason)}; the level keeps its timeout`);
  return `paged level ${level}`;
}

/**
 * `level`, or the highest level the config has when it has fewer: a deploy that drops levels leaves
 * an open incident (and an execution started before it, which keeps its definition) at a level that
 * no longer has a topic, and paging or reminding nobody would leave the incident unheard.
 */
function existingLevel(deps: TaskDeps, level: number): number {
  return Math.min(level, deps.levels.length);
}

/** Timeline keys of the acknowledgement notice, one per level told (`L<n>`). */
const ACK_NOTICE = 'ack-notice#';

/**
 * Tells every level paged for the acknowledged incident (`levelsPaged`), but the one whose link
 * acknowledged it, who acknowledged and when, and that they need not act: a higher level paged
 * before the acknowledgement would otherwise stay up until the resolution. An acknowledgement that
 * names no level (CLI, Slack) tells every level paged: who typed it is not known to be one of them.
 * The level reminded (`acknowledgingLevel`) is told instead that its reminders follow.
 *
 * The one place every acknowledgement goes through (link, Slack, CLI: store.ts
 * `acknowledgeIncident` writes it and wakes the waiting step): the workflow's first step after it
 * (the acknowledged wait, or a reminder when the alarm went to ALARM again before Resolve), which
 * holds the level topics. Each level's timeline entry (`ack-notice#L<n>`, a conditional write) is
 * written once its publish is over, as a resolution notice's is: the later steps, and a retried
 * one, tell nobody again, and a step stopped before it leaves the level to the next one. It fails
 * nothing, whatever goes wrong: a publish that fails is recorded and logged, and a table that
 * refuses (throttled) is logged, and the levels without an entry are told (again) by the next
 * acknowledged step. A notice is a courtesy; failing the step for it would remind the on-call at
 * once, and a table that kept refusing would loop the wait into reminders with no pause.
 */
async function announceAcknowledgement(deps: TaskDeps, incident: Incident, state: ExecutionState | undefined): Promise<void> {
  await tellLevelsOfAcknowledgement(deps, incident, state).catch((error: unknown) => {
    deps.warn?.('acknowledgement notice not sent for now: the next acknowledged step tries again', { incidentId: incident.id, error: namedLine(error) });
  });
}

async function tellLevelsOfAcknowledgement(deps: TaskDeps, incident: Incident, state: ExecutionState | undefined): Promise<void> {
  const ack = incident.ack;
  if (incident.status !== 'ACKED' || !ack) return;
  // Read first: the later acknowledged steps (one every reminder interval) find every level told and write nothing.
  const told = new Set(await timelineKeys(deps.store, incident.id, ACK_NOTICE));
  const levels = levelsPaged(incident, state).filter((level) => level !== ack.level && deps.levels[level - 1] && !told.has(`${ACK_NOTICE}L${level}`));
  if (levels.length === 0) return;
  // Resolved since this step read the incident (its token write): the Resolve step, run as soon as
  // the resolution woke that token, may have sent "Résolu" already, and an "Acquitté" after it
  // would tell a level to stand by for an incident that is over.
  if ((await getIncident(deps.store, incident.id))?.status === 'RESOLVED') return;
  const by = ack.level === undefined ? ack.by : `${ack.by}, niveau ${ack.level} (${deps.levels[ack.level - 1]?.name ?? '?'})`;
  // The level reminded (level 1 after a CLI or Slack acknowledgement) is not told it has nothing to
  // do: it holds the incident with whoever acknowledged, and its reminders follow.
  const reminded = existingLevel(deps, acknowledgingLevel(incident));
  const noticeOf = (level: number): PageMessage => {
    const holds = level === reminded;
    const text = [
      `[atmr-dr] Incident ${incident.id} acquitté : ${incident.alarmName} en ALARM depuis ${incident.openedAt}`,
      `Acquitté par ${by} le ${ack.at} (${ack.via})`,
      ...(incident.alarmDescription ? [`Alarme : ${incident.alarmDescription}`] : []),
      holds
        ? `Votre niveau reçoit les rappels de cet incident jusqu'à sa résolution ; une fois traité : ${operatorCommand(deps.store.environmentName, `incident resolve ${incident.id} --by "<nom>"`)}`
        : 'Rien à faire de votre côté : quelqu\'un a l\'incident en charge. La résolution vous sera annoncée.',
      `Chronologie : ${operatorCommand(deps.store.environmentName, `incident timeline ${incident.id}`)}`,
    ].join('\n');
    const sms = `atmr-dr acquitté par ${ack.by} : ${incident.alarmName} (${incident.id}), ${holds ? 'rappels à votre niveau jusqu\'à la résolution' : 'rien à faire'}`;
    return { subject: `[atmr-dr] Acquitté ${incident.alarmName}`.slice(0, 99), text, slack: text, sms };
  };
  const at = nowIso(deps);
  // Every level's claim and publish is waited for, failed or not, before a table error is given to announceAcknowledgement, which logs it.
  const outcomes = await Promise.allSettled(
    levels.map(async (level) => {
      const target = deps.levels[level - 1];
      const what = `level ${level} (${target.name})`;
      // The level's entry records the one attempt, written once it is over: a step stopped before
      // (the function's timeout, during or before the publish) leaves none, and the next
      // acknowledged step tells the level, twice rather than never. A notice SNS refused is
      // recorded there too, and not tried again: the level hears of the incident at its resolution.
      let entry: TimelineEntry = { at, kind: 'note', text: `Acknowledgement notice sent to ${what}`, level };
      try {
        await publish(deps, target.topicArn, noticeOf(level));
      } catch (error) {
        deps.warn?.('acknowledgement notice failed: the level hears of the incident at its resolution', { incidentId: incident.id, level, error: namedLine(error) });
        entry = { at, kind: 'page-failed', text: `Acknowledgement notice to ${what} failed: ${oneLine(error)}`, level };
      }
      await recordTimeline(deps.store, incident.id, `${ACK_NOTICE}L${level}`, entry);
    }),
  );
  const refused = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (refused) throw refused.reason;
}

/** Timeline keys of the reminders, one per step (`<token hash>`), each with the level it went to (or may have: a publish whose outcome is unknown). */
const REMINDER = 'reminder#';

async function remind(deps: TaskDeps, incidentId: string, taskToken: string, state: ExecutionState | undefined): Promise<string> {
  const incident = await storeTaskToken(deps.store, incidentId, taskToken, undefined, { remindsJoins: true });
  if (incident.status === 'RESOLVED') {
    await wake(deps.store, taskToken, { outcome: 'resolved' });
    return 'woken: RESOLVED';
  }
  await announceAcknowledgement(deps, incident, state);
  const level = existingLevel(deps, acknowledgingLevel(incident));
  const target = deps.levels[level - 1];
  const at = nowIso(deps);
  const key = `${REMINDER}${shortHash(taskToken)}`;
  // Its entry is written once the reminder is out (or may be): "Reminded" is never said of one SNS
  // refused. A re-run of this step (the same token) whose reminder went out sends nothing more.
  if ((await timelineKeys(deps.store, incidentId, key)).length > 0) return 'already reminded';
  const message = target && (await pageMessage(deps, incident, level, 'reminder'));
  // Recorded as possibly out before it goes out, as a page is: a reminder out whose timeline entry
  // the table then refuses (or whose step is stopped before it) still has its level told "Résolu".
  const intent = pageIntent(level, shortHash(taskToken));
  if (target && message) await changeIntent(deps.store, incidentId, 'reminderIntents', 'ADD', intent);
  try {
    if (target && message) await publish(deps, target.topicArn, message);
  } catch (error) {
    // Recorded, then the step fails: a reminder that returned normally counted nowhere, and an owner
    // no longer reminded paged nobody. The workflow waits the interval and reminds again.
    const mayBeOut = !refusedWithoutEffect(error);
    // Only a reminder SNS refused is withdrawn; a withdrawal the table refuses leaves the level told
    // "Résolu" for nothing, never untold.
    if (!mayBeOut) await changeIntent(deps.store, incidentId, 'reminderIntents', 'DELETE', intent).catch(() => undefined);
    // A publish whose outcome is unknown (a timeout, a reset socket, a 5xx after the SDK's retries)
    // may have reached the level: recorded under the step's own reminder key, so that the level
    // counts as reminded (told of the resolution) and a re-run of this step sends nothing more.
    await recordTimeline(deps.store, incidentId, mayBeOut ? key : `reminder-failed#${shortHash(taskToken)}`, {
      at,
      kind: 'page-failed',
      text: `Reminder of level ${level} failed: ${oneLine(error)}${mayBeOut ? '; SNS may have delivered it' : ''}`,
      level,
    });
    throw new ReminderPublishFailed(`publishing the reminder to level ${level} failed: ${namedLine(error)}`);
  }
  // The reminder is out: a table that refuses its entry now must not fail the step (its retry would remind again).
  await recordTimeline(deps.store, incidentId, key, { at, kind: 'reminder', text: `Reminded level ${level} (${target?.name ?? '?'})`, level }).catch((error: unknown) =>
    deps.warn?.('reminder sent, its timeline entry refused', { incidentId, level, error: namedLine(error) }),
  );
  if (target && message) await recordLinkMissing(deps, incidentId, key, `Reminder of level ${level} (${target.name})`, message.linkMissing, at, level);
  return `reminded level ${level}`;
}

/**
 * The alarm's state now (DescribeAlarms); a deleted alarm is DELETED, a resolved incident RESOLVED.
 * `signalsEvent`: the incident's alarm signals an event, so the workflow goes on (climbs, or waits
 * while acknowledged) whatever state it is in now, until a human acknowledges or resolves it.
 */
async function check(deps: TaskDeps, incidentId: string): Promise<{ alarmState: AlarmStateNow; signalsEvent?: boolean; lastJoinedAlarmAt?: string }> {
  // Read before the alarm: an ALARM joined after this read may be later than the state read below,
  // and the Resolve step then refuses to resolve on that state (`lastJoinedAlarmAt`, '' for none).
  const incident = await requireIncident(deps, incidentId);
  if (incident.status === 'RESOLVED') return { alarmState: 'RESOLVED' };
  const state = await alarmStateNow(deps.cloudwatch, incident.alarmName);
  if (!state) {
    await recordTimeline(deps.store, incidentId, 'alarm-deleted', { at: nowIso(deps), kind: 'note', text: `Alarm ${incident.alarmName} no longer exists (deleted while the incident was open)` });
    return { alarmState: 'DELETED' };
  }
  return { alarmState: state as AlarmStateNow, signalsEvent: signalsEvent(incident.alarmDescription), lastJoinedAlarmAt: incident.lastJoinedAlarmAt ?? '' };
}

/** The Resolve step's answer; `alarmAgain`: not resolved, the workflow goes on (remind, or page the next level). */
export interface ResolveOutput {
  readonly result: string;
  readonly alarmAgain?: { readonly status: Incident['status']; readonly level: number };
}

/**
 * Marks the incident resolved (unless someone did) and tells every level that was paged, once. Not
 * when an ALARM joined it after the check read the alarm OK (`lastJoinedAlarmAt` as the check read
 * it): the alarm is in ALARM again, and the workflow goes on with this incident.
 */
async function resolve(deps: TaskDeps, incidentId: string, state: ExecutionState | undefined): Promise<ResolveOutput> {
  const check = state?.check;
  const alarmState = check?.alarmState;
  const incident = await requireIncident(deps, incidentId);
  if (incident.status !== 'RESOLVED') {
    const how = alarmState === 'DELETED' ? 'alarm deleted' : `alarm ${alarmState ?? 'OK'}`;
    // A deleted alarm has no ALARM to come. A check answered by task code older than the field
    // (during a deploy) counts as one that saw no joined ALARM: without a guard the write resolves
    // over an ALARM that joined after that check, and nobody is paged for it. The price is one
    // reminder or page when an ALARM had joined before that check; the next check has the field.
    const seen = alarmState === 'DELETED' ? undefined : (check?.lastJoinedAlarmAt ?? '');
    // The alarm's own state resolves it, read here or by ingest (ingest.ts): the same "by CloudWatch"
    // either way, as `incident list` and the timeline show it. A deleted alarm has no state: atmr-dr
    // decided.
    const by = alarmState === 'DELETED' ? 'atmr-dr' : 'CloudWatch';
    const outcome = await resolveUnlessAlarmAgain(deps.store, incidentId, { by, via: 'workflow', how }, seen === undefined ? undefined : { joinedAlarmSeen: seen });
    if (outcome.outcome === 'alarm again') {
      const joined = outcome.incident.lastJoinedAlarmAt ?? '';
      await recordTimeline(deps.store, incidentId, `alarm-again#${joined}`, {
        at: nowIso(deps),
        kind: 'note',
        text: `Not resolved: ${incident.alarmName} went to ALARM again (${joined}) after the workflow read it ${alarmState ?? 'OK'}; the escalation goes on`,
      });
      // The level the workflow climbs from: the highest reached, counting one whose record the table
      // refused (the record's `level` is then the one before it, which would be paged again) and one
      // carried over from a flapping alarm's previous incident (else the climb restarts at level 1).
      const level = existingLevel(deps, levelReached(outcome.incident, state));
      return { result: `not resolved: ALARM again at ${joined}`, alarmAgain: { status: outcome.incident.status, level } };
    }
  }
  // The incident is resolved from here on: whatever fails now fails its notice, not the escalation.
  try {
    return await announceResolution(deps, incident.status === 'RESOLVED' ? incident : await requireIncident(deps, incidentId), state);
  } catch (error) {
    if (error instanceof ResolutionNoticeFailed) throw error;
    throw new ResolutionNoticeFailed(`incident ${incidentId} is resolved; its resolution notice failed: ${namedLine(error)}`);
  }
}

/** Timeline keys of the resolution notice, one per level told (`L<n>`) and one for Slack. */
const NOTICE = 'resolution-notice#';
/** Timeline keys of the levels removed from the configuration that the resolution notice could not reach (`L<n>`). */
const NOT_TOLD = 'resolution-notice-untold#';

/**
 * Tells every level that was paged (`levelsPaged`: the incident's record and, for a level whose record
 * the table refused, the execution's state), the levels a carried-over climb reached that heard of
 * this incident (below), and Slack of the resolution, each once. The timeline entry of a
 * level (`resolution-notice#L<n>`, a conditional write) is written once its notice is out, and the
 * step reads them first: a retried step (a level's publish failed) tells only the levels not told
 * yet. A step stopped between a publish and its entry tells that level again on its retry: twice
 * rather than never.
 */
async function announceResolution(deps: TaskDeps, incident: Incident, state: ExecutionState | undefined): Promise<ResolveOutput> {
  await releaseOpenPointer(deps.store, incident.alarmName, incident.id);
  if (incident.resolutionNotifiedAt) return { result: 'already announced' };
  interface Channel {
    readonly key: string;
    readonly what: string;
    readonly level?: number;
    readonly send: () => Promise<void>;
    /** Slack is a second channel: its failure is recorded, and does not fail the step. */
    readonly required: boolean;
  }
  const channels: Channel[] = [];
  // Every level that heard of this incident: paged for it, reminded (the level its reminders'
  // intents and `reminder#` entries name: the one the reminder went to, not the acknowledging level it stood for when a
  // deploy had dropped that one), the level whose link acknowledged it (in its page), and, when it
  // carried over the climb of the alarm's previous incidents (model.ts `climbToCarryOver`), level 1,
  // which heard of its ALARM from the alarm's own action. The levels that climb paged above level 1
  // heard of nothing since their "Résolu" unless this incident paged a level (the climb went on past
  // them): only then are they told, else each flap would send them one more "Résolu" (an SMS to the
  // CTO at level 3).
  const pagedHere = levelsPaged(incident, state);
  const carriedLevel = incident.carriedOver?.level ?? 0;
  const carried = Array.from({ length: pagedHere.length > 0 ? carriedLevel : Math.min(carriedLevel, 1) }, (_, i) => i + 1);
  // Reminded: the levels of its reminders possibly out (`reminderIntents`), and of its `reminder#`
  // entries (an incident reminded before the intents were recorded).
  const reminded = [...intentLevels(incident.reminderIntents), ...(await timelineLevels(deps.store, incident.id, REMINDER))];
  const linkLevel = incident.ack?.level === undefined ? [] : [incident.ack.level];
  const paged = [...new Set([...pagedHere, ...carried, ...reminded, ...linkLevel])].sort((a, b) => a - b);
  // A level a deploy removed since it heard of the incident has no topic left: atmr-dr cannot reach
  // its people. The levels told and Slack are asked to tell them, and the timeline says so.
  const removed = paged.filter((level) => !deps.levels[level - 1]);
  const r = incident.resolution;
  const text = [
    `[atmr-dr] Incident ${incident.id} résolu : ${incident.alarmName}`,
    `Résolution : ${r?.how ?? 'resolved'} (${r?.at ?? nowIso(deps)}, par ${r?.by ?? 'atmr-dr'})`,
    ...(removed.length > 0
      ? [`${removed.length > 1 ? 'Niveaux' : 'Niveau'} ${removed.join(', ')} alerté${removed.length > 1 ? 's' : ''} pour cet incident puis retiré${removed.length > 1 ? 's' : ''} de la configuration : atmr-dr ne peut plus ${removed.length > 1 ? 'les' : 'le'} prévenir, faites-le vous-même.`]
      : []),
    `Chronologie pour le post-mortem (sous 24 h) : ${operatorCommand(deps.store.environmentName, `incident timeline ${incident.id}`)}`,
  ].join('\n');
  const message: PageMessage = { subject: `[atmr-dr] Résolu ${incident.alarmName}`.slice(0, 99), text, slack: text, sms: `atmr-dr résolu : ${incident.alarmName} (${incident.id})` };
  for (const level of paged) {
    const target = deps.levels[level - 1];
    if (target) channels.push({ key: `L${level}`, what: `level ${level} (${target.name})`, level, send: () => publish(deps, target.topicArn, message), required: true });
  }
  if (deps.slackTopicArn) channels.push({ key: 'slack', what: 'Slack', send: () => publishSlack(deps, `:white_check_mark: Résolu : ${incident.alarmName}`, text), required: false });

  const told = new Set(await timelineKeys(deps.store, incident.id, NOTICE));
  const at = nowIso(deps);
  const untold = `not sent: the level was removed from the configuration after it heard of the incident (no topic reaches it); the levels told${deps.slackTopicArn ? ' and Slack' : ''} are asked to tell it`;
  // Outside the `resolution-notice#` keys read above as "told": a retry run after a deploy that
  // added the level back must find it untold, and send it its notice. Written once (a conditional write).
  for (const level of removed) await recordTimeline(deps.store, incident.id, `${NOT_TOLD}L${level}`, { at, kind: 'page-failed', text: `Resolution notice to level ${level} ${untold}`, level });
  const failures = await Promise.all(
    channels
      .filter((channel) => !told.has(`${NOTICE}${channel.key}`))
      .map(async (channel): Promise<string | undefined> => {
        const level = channel.level === undefined ? {} : { level: channel.level };
        try {
          await channel.send();
        } catch (error) {
          await recordTimeline(deps.store, incident.id, `resolution-notice-failed#${channel.key}#${at}`, { at, kind: 'page-failed', text: `Resolution notice to ${channel.what} failed: ${oneLine(error)}`, ...level });
          return channel.required ? `${channel.what}: ${namedLine(error)}` : undefined;
        }
        await recordTimeline(deps.store, incident.id, `${NOTICE}${channel.key}`, { at, kind: 'note', text: `Resolution notice sent to ${channel.what}`, ...level });
        return undefined;
      }),
  );
  const failed = failures.filter((failure): failure is string => failure !== undefined);
  if (failed.length > 0) throw new ResolutionNoticeFailed(`incident ${incident.id} is resolved; its notice could not be sent to ${failed.join('; ')}`);
  await claimResolutionNotice(deps.store, incident.id);
  const reached = paged.filter((level) => !removed.includes(level));
  return { result: `announced to levels ${reached.join(', ') || 'none'}${removed.length > 0 ? `; levels removed since, not told: ${removed.join(', ')}` : ''}` };
}

/**
 * Hands the incident over to a fresh execution of the same state machine, which resumes at
 * `resumeAt` (lib/constructs/escalation.ts HAND_OVER_AFTER_ROUNDS: an execution's history is capped).
 * The new execution's name is the incident id and the hand-over's number (`<id>-h<n>`), and its input
 * depends only on the calling execution, so a retried step starts nothing more: Step Functions
 * answers a StartExecution of the same name and input as the running one, and ExecutionAlreadyExists
 * once it has ended (a quick resolution): handed over either way.
 *
 * Once the new execution exists this step must succeed: failing it would fail this execution, and
 * the failure rule would page "nobody is being paged" while the new one pages. So the incident's
 * pointer and the timeline note are written here as a courtesy (`incident list` is current at
 * once); if the table refuses them, the new execution's first step (`takeOver`) writes them.
 */
async function handOver(deps: TaskDeps, input: Extract<TaskInput, { action: 'handover' }>): Promise<string> {
  const successor = nextExecutionOf(input.incidentId, input.execution);
  const { name, current } = successor;
  // The levels this execution paged but the table does not list go along: the new one tells them too.
  const carried = Object.fromEntries(pagedNotRecordedKeys(input.state).map((key) => [key, input.state?.[key]]));
  const next: ExecutionInput = { incidentId: input.incidentId, alarmName: input.alarmName, resumeAt: input.resumeAt, handedOverFrom: current, ...carried };
  const executionArn = await startNextExecution(deps.store.sfn, successor, next);
  try {
    await replaceExecutionArn(deps.store, input.incidentId, executionArn);
    await recordTimeline(deps.store, input.incidentId, `handover#${name}`, {
      at: nowIso(deps),
      kind: 'note',
      text: `Escalation handed over from execution ${current} to ${name} after ${input.rounds} rounds (a Step Functions execution's history is capped), resuming at ${input.resumeAt}`,
    });
  } catch (error) {
    return `handed over to ${name}; the incident record is left to it (${oneLine(error)})`;
  }
  return `handed over to ${name}`;
}

/**
 * The first step of a handed-over execution: points the incident at this execution and notes the
 * hand-over, in case the step that started it could not (`handOver`). Both writes are idempotent.
 */
async function takeOver(deps: TaskDeps, input: Extract<TaskInput, { action: 'takeover' }>): Promise<string> {
  const name = input.execution.split(':').pop() ?? input.execution;
  await replaceExecutionArn(deps.store, input.incidentId, input.execution);
  await recordTimeline(deps.store, input.incidentId, `handover#${name}`, {
    at: nowIso(deps),
    kind: 'note',
    text: `Escalation handed over from execution ${input.handedOverFrom ?? '?'} to ${name}, resuming at ${input.resumeAt ?? '?'}`,
  });
  return `took over as ${name}`;
}

/** One workflow step. */
export async function runTask(deps: TaskDeps, input: TaskInput): Promise<unknown> {
  switch (input.action) {
    case 'page':
      return { result: await page(deps, input.incidentId, input.level, input.taskToken) };
    case 'await': {
      const incident = await storeTaskToken(deps.store, input.incidentId, input.taskToken);
      if (incident.status === 'RESOLVED') {
        await wake(deps.store, input.taskToken, { outcome: 'resolved' });
        return { result: 'waiting' };
      }
      await announceAcknowledgement(deps, incident, input.state);
      // A failure joined while no step waited (its wake found no token): remind now, as its wake would have.
      if (joinAwaitsReminder(incident)) {
        await wake(deps.store, input.taskToken, { outcome: 'alarm' });
        return { result: 'woken: a joined ALARM awaits its reminder' };
      }
      return { result: 'waiting' };
    }
    case 'remind':
      return { result: await remind(deps, input.incidentId, input.taskToken, input.state) };
    case 'check':
      return check(deps, input.incidentId);
    case 'resolve':
      return resolve(deps, input.incidentId, input.state);
    case 'handover':
      return { result: await handOver(deps, input) };
    case 'takeover':
      return { result: await takeOver(deps, input) };
  }
}
