import { createHash } from 'node:crypto';
import { z } from 'zod';

/** Status of an incident: OPEN (paging, climbing), ACKED (someone has it; reminders), RESOLVED. */
export type IncidentStatus = 'OPEN' | 'ACKED' | 'RESOLVED';

/** Where an acknowledgement or a resolution came from. */
export type Via = 'cli' | 'link' | 'slack' | 'alarm' | 'workflow';

export interface Acknowledgement {
  readonly by: string;
  readonly at: string;
  readonly via: Via;
  /** The level whose page was acknowledged, when known (links carry it): it gets the reminders. */
  readonly level?: number;
}

export interface Resolution {
  readonly by: string;
  readonly at: string;
  readonly via: Via;
  /** Why: "alarm OK", "alarm deleted", "resolved by hand". */
  readonly how: string;
  /** The resolver's one-line note (`incident resolve --note`), for the post-mortem. */
  readonly note?: string;
}

export interface Incident {
  readonly id: string;
  readonly alarmName: string;
  /** The alarm's description: `[<runbook section>] <summary> ... <link>`. */
  readonly alarmDescription?: string;
  readonly alarmReason?: string;
  /** When the alarm entered ALARM (the state change time). */
  readonly openedAt: string;
  readonly status: IncidentStatus;
  /** Highest level paged so far (0: none yet). */
  readonly level: number;
  /** Every level paged at least once (the resolution tells each of them). */
  readonly pagedLevels: number[];
  /** Short hashes of the page steps' task tokens whose page was published (a retried step does not page twice). */
  readonly publishedPages: string[];
  /**
   * Pages that may have gone out but are not recorded as published (`pageIntent`): written with the
   * page step's token before the publish, removed by its record (or when SNS refused the page, a
   * 4xx). One left here is a step stopped between its publish and its record (the function's
   * timeout, a crash) or whose publish's outcome is unknown (a timeout, a 5xx): its level counts as
   * paged (`levelsPaged`).
   */
  readonly pageIntents: string[];
  /**
   * Reminders that may have gone out (`pageIntent` of the level reminded and the step's token hash):
   * written before the publish, removed only when SNS refused it (a 4xx). The levels they name are
   * told of the resolution: a reminder out whose timeline entry the table refused still counts.
   */
  readonly reminderIntents: string[];
  readonly ack?: Acknowledgement;
  readonly resolution?: Resolution;
  /** Task token of the workflow step waiting for news (ack or resolution). */
  readonly taskToken?: string;
  readonly executionArn?: string;
  readonly resolutionNotifiedAt?: string;
  /** State time of the latest ALARM joined to this incident (store.ts claimJoinedAlarm): only a later OK resolves it. */
  readonly lastJoinedAlarmAt?: string;
  /**
   * The `lastJoinedAlarmAt` already told to the acknowledging level: copied by the acknowledgement
   * (the pages covered the failures joined while climbing) and by each reminder step when it stores
   * its token (it tells of every failure joined before). `''`: none joined then.
   */
  readonly joinRemindedAt?: string;
  /** When `level` was last paged (store.ts recordPagedLevel); absent on records older than the field. */
  readonly levelPagedAt?: string;
  /** The climb this incident took over from the alarm's previous one (`climbToCarryOver`). */
  readonly carriedOver?: CarriedOver;
}

/**
 * The climb of a flapping alarm's previous incident, carried over to its next one: the level that
 * incident reached and when that level's time to acknowledge runs out. The new execution waits
 * until then, re-reads the alarm and pages the next level while it is in ALARM
 * (lib/constructs/escalation.ts, `CarriedOverLevel<n>`).
 */
export interface CarriedOver {
  /** The previous incident. */
  readonly from: string;
  readonly level: number;
  /** ISO time: the end of `level`'s acknowledgement timeout. */
  readonly until: string;
}

/**
 * An alarm that returns to OK sooner than level 1's acknowledgement timeout resolves its incident,
 * and its next ALARM would open one that pages level 1 again: levels 2 and 3 would never hear of an
 * alarm that flaps while nobody acknowledges. So a new ALARM whose previous incident was resolved by
 * the alarm's OK less than level 1's timeout before it (`levelTimeoutsSeconds[0]`), and never
 * acknowledged, carries that incident's climb over: its highest level (counting one it carried
 * over itself) and that level's remaining time. Anything else (acknowledged, resolved by hand, a
 * quiet alarm) starts at level 1.
 */
export function climbToCarryOver(previous: Incident | undefined, alarmAt: string, levelTimeoutsSeconds: readonly number[]): CarriedOver | undefined {
  const resolution = previous?.resolution;
  if (!previous || previous.status !== 'RESOLVED' || previous.ack || resolution?.how !== 'alarm OK') return undefined;
  if (Date.parse(alarmAt) - Date.parse(resolution.at) >= levelTimeoutsSeconds[0] * 1000) return undefined;
  const paged = highestLevelPaged(previous, undefined);
  const carried = previous.carriedOver;
  const level = Math.min(levelReached(previous, undefined), levelTimeoutsSeconds.length);
  if (level < 1) return undefined;
  const timeoutMs = (n: number) => levelTimeoutsSeconds[n - 1] * 1000;
  let until: number;
  if (carried && carried.level >= paged) until = Date.parse(carried.until);
  else if (previous.levelPagedAt && previous.level === paged) until = Date.parse(previous.levelPagedAt) + timeoutMs(level);
  // Paged but not recorded (or a record older than `levelPagedAt`): the level's nominal end, had
  // every level before it used its whole timeout.
  else until = Date.parse(previous.openedAt) + levelTimeoutsSeconds.slice(0, level).reduce((sum, s) => sum + s * 1000, 0);
  return { from: previous.id, level, until: new Date(until).toISOString() };
}

/**
 * Where an escalation execution keeps, in its own state, a level whose page went out but whose
 * record the ops-state table refused (`pagedNotRecordedL<n>`: the catch of PageLevel<n> on
 * PagedNotRecorded, lib/constructs/escalation.ts; a hand-over copies it to the next execution). One
 * top-level key per level: the catch writes it without reading the state, and writing it twice
 * changes nothing.
 */
export const pagedNotRecordedKey = (level: number): string => `pagedNotRecordedL${level}`;
const PAGED_NOT_RECORDED_KEY = /^pagedNotRecordedL(\d+)$/;

/** What the task function reads of an execution's state (the Resolve, Remind and HandOver steps receive all of it). */
export interface ExecutionState {
  readonly check?: { readonly alarmState?: string; readonly lastJoinedAlarmAt?: string };
  readonly [key: string]: unknown;
}

/** The keys of `state` that hold a level paged but not recorded (`pagedNotRecordedKey`). */
export function pagedNotRecordedKeys(state: ExecutionState | undefined): string[] {
  return Object.keys(state ?? {}).filter((key) => PAGED_NOT_RECORDED_KEY.test(key));
}

/** The entry of `Incident.pageIntents` for the page of `level` by the step of `pageKey` (the short hash of its task token). */
export const pageIntent = (level: number, pageKey: string): string => `L${level}#${pageKey}`;
const PAGE_INTENT = /^L(\d+)#/;
/** The levels named by intents (`pageIntent`). */
export const intentLevels = (intents: string[]): number[] => intents.map((intent) => Number(PAGE_INTENT.exec(intent)?.[1])).filter((level) => level > 0);

/**
 * Every level paged: those the incident record lists, those whose page may have gone out unrecorded
 * (`pageIntents`), and those the execution paged although the table refused their record. The one
 * place that decides who is told of the resolution; its highest is the level reminded when the
 * acknowledgement names none.
 */
export function levelsPaged(incident: Incident, state: ExecutionState | undefined): number[] {
  const unrecorded = pagedNotRecordedKeys(state).map((key) => Number(PAGED_NOT_RECORDED_KEY.exec(key)?.[1]));
  const mayBeOut = intentLevels(incident.pageIntents);
  return [...new Set([...incident.pagedLevels, ...mayBeOut, ...unrecorded])].sort((a, b) => a - b);
}

/** The highest level paged (0: none yet), counting a level paged but not recorded (`levelsPaged`). */
export function highestLevelPaged(incident: Incident, state: ExecutionState | undefined): number {
  return Math.max(incident.level, ...levelsPaged(incident, state));
}

/**
 * The highest level the climb reached (0: none yet): paged for this incident (`highestLevelPaged`),
 * or carried over from the flapping alarm's previous incident (`carriedOver`), a level paged for the
 * same alarm that this incident does not page again. The level reminded when the acknowledgement
 * names none, and the one the climb goes on from.
 */
export function levelReached(incident: Incident, state: ExecutionState | undefined): number {
  return Math.max(highestLevelPaged(incident, state), incident.carriedOver?.level ?? 0);
}

/**
 * The level that holds the acknowledged incident, the one reminded: the level whose link
 * acknowledged it (links say which), else level 1. An acknowledgement from the CLI or Slack names
 * nobody's level, and the highest level reached is the wrong guess: after a climb to the top, that
 * is the CTO, told "rien à faire" by the acknowledgement notice. Level 1 is the on-call, whose topic
 * every alarm of the environment reaches and who works the incident beside whoever acknowledged.
 */
export function acknowledgingLevel(incident: Pick<Incident, 'ack'>): number {
  return incident.ack?.level ?? 1;
}

/**
 * Whether a failure joined the acknowledged incident while no step waited (its wake found no token)
 * and nobody has told the acknowledging level yet: the next waiting step reminds at once. Absent
 * `joinRemindedAt` (acknowledged before the field existed): nothing is owed.
 */
export function joinAwaitsReminder(incident: Incident): boolean {
  const { lastJoinedAlarmAt: joined, joinRemindedAt: reminded } = incident;
  return incident.status === 'ACKED' && joined !== undefined && reminded !== undefined && joined > reminded;
}

export type TimelineKind = 'state' | 'page' | 'page-failed' | 'reminder' | 'ack' | 'action' | 'resolved' | 'note';

export interface TimelineEntry {
  readonly at: string;
  readonly kind: TimelineKind;
  readonly text: string;
  readonly level?: number;
}

/** Incident records live in the ops-state table under `INCIDENT#<id>` (one prefix per concern). */
export const INCIDENT_PREFIX = 'INCIDENT#';
export const META_SK = 'META';
/** Every incident id, newest last (ids start with their UTC time), for `incident list`. */
export const INDEX_PK = `${INCIDENT_PREFIX}INDEX`;
/** One pointer per alarm with an open incident: a second ALARM of that alarm joins it. */
export const OPEN_PK = `${INCIDENT_PREFIX}OPEN`;
/** Incident records are kept for the post-mortem and the yearly review, then expire (TTL). */
export const INCIDENT_RETENTION_SECONDS = 400 * 86400;

export const incidentPk = (id: string): string => `${INCIDENT_PREFIX}${id}`;
export const openSk = (alarmName: string): string => `ALARM#${alarmName}`;

const INCIDENT_ID = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;
export function isIncidentId(value: string): boolean {
  return INCIDENT_ID.test(value);
}

/**
 * The id an operator typed, as it is stored: surrounding spaces dropped, and in an id's shape
 * (`incidentIdFor`: digits, an upper-case T and Z, a lower-case hex hash) its letters in that case,
 * the case of an id carrying nothing. Anything else is returned trimmed, to be found or not.
 */
export function canonicalIncidentId(value: string): string {
  const id = value.trim();
  const cased = `${id.slice(0, 16).toUpperCase()}${id.slice(16).toLowerCase()}`;
  return INCIDENT_ID.test(cased) ? cased : id;
}

/**
 * CloudWatch writes state timestamps as `2026-11-30T10:15:00.123+0000`; Date wants `+00:00`.
 * Returns the ISO string, or throws on a timestamp that is not one.
 */
export function normalizeTimestamp(value: string): string {
  const fixed = value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  const time = Date.parse(fixed);
  if (Number.isNaN(time)) throw new Error(`not a timestamp: ${value}`);
  return new Date(time).toISOString();
}

/**
 * The incident id (and Step Functions execution name) of one alarm state change: its UTC time and
 * a hash of the alarm name and the exact timestamp. The same state change delivered twice gets the
 * same id, so it starts nothing new; two alarms at the same second get different ids.
 */
export function incidentIdFor(alarmName: string, stateTimestamp: string): string {
  const iso = normalizeTimestamp(stateTimestamp);
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const hash = createHash('sha256').update(`${alarmName}|${iso}`).digest('hex').slice(0, 8);
  return `${stamp}-${hash}`;
}

/** Short stable hash, for idempotency keys of timeline entries. */
export function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 16);
}

/** The runbook section and link from a RunbookAlarm description (`[section] summary ... link`). */
export function runbookOf(description: string | undefined): { section?: string; link?: string } {
  if (!description) return {};
  const section = /^\[([^\]]+)\]/.exec(description)?.[1];
  const link = /(https?:\/\/\S+)\s*$/.exec(description)?.[1];
  return { section, link };
}

/**
 * The mark of an event alarm, right after the runbook section of its description
 * (`[section] [événement] summary ...`, written by RunbookAlarm's `signalsEvent`). Such an alarm
 * signals that something happened (a failed run, a failed execution) and returns to OK by itself
 * after its period although nothing was fixed: its incident is closed by a human (or the alarm's
 * deletion), never by its OK. The description is the carrier because it travels with the alarm itself: it is in
 * the state change event, stored on the incident, shown in every page and in the template.
 */
export const EVENT_ALARM_MARK = '[événement]';

/** Whether a RunbookAlarm description marks an event alarm (see EVENT_ALARM_MARK). */
export function signalsEvent(description: string | undefined): boolean {
  if (!description) return false;
  const section = /^\[[^\]]+\] /.exec(description)?.[0];
  return section !== undefined && description.startsWith(EVENT_ALARM_MARK, section.length);
}

/** "CloudWatch Alarm State Change" as EventBridge delivers it (fields we use). */
export const AlarmStateChangeSchema = z.looseObject({
  id: z.string().optional(),
  'detail-type': z.literal('CloudWatch Alarm State Change'),
  source: z.literal('aws.cloudwatch'),
  time: z.string().optional(),
  resources: z.array(z.string()).optional(),
  detail: z.looseObject({
    alarmName: z.string().min(1),
    configuration: z.looseObject({ description: z.string().optional() }).optional(),
    state: z.looseObject({ value: z.enum(['OK', 'ALARM', 'INSUFFICIENT_DATA']), reason: z.string().optional(), timestamp: z.string().min(1) }),
    previousState: z.looseObject({ value: z.string().optional() }).optional(),
  }),
});
export type AlarmStateChange = z.infer<typeof AlarmStateChangeSchema>;

/** An automated action of atmr-dr (rollback, killswitch change, recovery...): `Source: atmr-dr`. */
export const ActionEventSchema = z.looseObject({
  id: z.string().min(1),
  'detail-type': z.string().min(1),
  source: z.string().min(1),
  time: z.string().optional(),
  detail: z.looseObject({ summary: z.string().optional(), at: z.string().optional() }).optional(),
});
export type ActionEvent = z.infer<typeof ActionEventSchema>;

/**
 * What the workflow's waiting steps are woken with (SendTaskSuccess output). `alarm`: a new ALARM
 * joined an acknowledged event alarm's incident (a new failure): the acknowledging level is
 * reminded at once, since the alarm is likely OK again by the next re-read.
 */
export interface WakeOutput {
  readonly outcome: 'ack' | 'resolved' | 'alarm';
}
