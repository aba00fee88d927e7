import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { Command } from 'commander';
import { alarmStateNow } from '../../lambdas/escalation/alarm-state';
import { incidentStore } from '../../lambdas/escalation/clients';
import { canonicalIncidentId, highestLevelPaged, Incident, signalsEvent } from '../../lambdas/escalation/model';
import { acknowledgeIncident, getIncident, IncidentStore, listIncidents, resolveIncident, timeline } from '../../lambdas/escalation/store';
import { timelineMarkdown } from '../../lambdas/escalation/timeline';
import { awsReason, incidentNotFound, notWokenLine, remindersLine } from '../../lambdas/escalation/replies';
import { checkSubscriptions, type LevelToCheck, parseTopicsToCheck } from '../../lambdas/escalation/subscriptions';
import { MISSING_SETTING_EXIT_CODE, missingAwsSetting } from '../../lambdas/shared/aws-errors';
import { OPERATOR_CLI, operatorCommand } from '../../lambdas/shared/constants';
import { namedClient } from '../../lambdas/shared/named-clients';
import { SDK_RETRY } from '../../lambdas/shared/sdk-retry';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';
import { boundedLine, shellWord } from '../../lambdas/shared/format';
import type { EnvironmentConfig } from '../../lib/config';
import { confirmer } from './confirm';
import { byOptionHelp, resolveCliActor } from './killswitch';
import { declaredEndpoints, reachesNobodyLine, smsSandboxLine, subscriptionLines } from './subscription-lines';
import { trailProblem } from './trail';
import { DEPLOYED_NAMES, defaultEnvironmentName, ENV_DEFAULT, resolveDeployedName, resolveDeployedNameFrom } from './resolve';

interface Globals {
  readonly table?: string;
  readonly stateMachine?: string;
  readonly env?: string;
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * The Step Functions status of each open incident's escalation (the execution the incident record
 * points at: the first one is named by the incident id, a long-open incident is handed over to
 * `<id>-h<n>`): an open incident whose execution is not RUNNING pages nobody any more.
 */
async function workflowStatuses(sfn: SFNClient, stateMachineArn: string | undefined, incidents: readonly Incident[]): Promise<Map<string, string>> {
  const statuses = new Map<string, string>();
  if (!stateMachineArn) return statuses;
  const executionPrefix = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:`;
  for (const incident of incidents.filter((i) => i.status !== 'RESOLVED')) {
    try {
      const { status } = await sfn.send(new DescribeExecutionCommand({ executionArn: incident.executionArn ?? `${executionPrefix}${incident.id}` }));
      statuses.set(incident.id, status ?? 'UNKNOWN');
    } catch (error) {
      statuses.set(incident.id, (error as { name?: string }).name === 'ExecutionDoesNotExist' ? 'NOT STARTED' : `unknown (${oneLine(error)})`);
    }
  }
  return statuses;
}

/**
 * What resolving `incident` by hand leaves behind, when its alarm still breaches: CloudWatch pages
 * only on a state change, so an alarm left in ALARM opens no new incident and pages nobody while the
 * failure goes on. An event alarm is exempt: its state says nothing of whether it was handled, and
 * only `incident resolve` closes its incident. Undefined when there is nothing to say; a read that
 * failed is said (the resolution goes on: a human may resolve a stuck incident on purpose).
 */
async function stillInAlarm(incident: Incident): Promise<{ warning?: string; unread?: string }> {
  if (incident.status === 'RESOLVED' || signalsEvent(incident.alarmDescription)) return {};
  const name = incident.alarmName;
  try {
    if ((await alarmStateNow(namedClient(new CloudWatchClient(SDK_RETRY), 'CloudWatch'), name)) !== 'ALARM') return {};
  } catch (error) {
    return { unread: `the state of alarm ${name} could not be read (${awsReason(error)}): resolving without knowing whether it is still in ALARM` };
  }
  return {
    warning:
      `alarm ${name} is still in ALARM: nothing pages again until it goes OK and back to ALARM; ` +
      `to have CloudWatch judge it again now (a new incident if it still breaches): ` +
      `aws cloudwatch set-alarm-state --alarm-name ${shellWord(name)} --state-value OK --state-reason "resolved by hand"`,
  };
}

/**
 * The environment's escalation config (cdk.json), for the intervals a line names: only when the
 * environment is known (`--env`, or the table read from its stacks; a table named by --table or
 * ATMR_OPS_TABLE may be another environment's) and its config readable, else undefined.
 */
async function escalationConfig(envName: string | undefined): Promise<EnvironmentConfig['escalation'] | undefined> {
  if (envName === undefined) return undefined;
  try {
    const { loadCliConfig } = await import('./cli-config');
    return loadCliConfig(envName).escalation;
  } catch {
    // The change is written: a config that cannot be read only leaves the interval out.
    return undefined;
  }
}

/**
 * The endpoints the environment's config declares (subscription-lines.ts declaredEndpoints), for the
 * lines of the subscriptions SNS no longer lists. Empty when the config cannot be read: the command
 * then names such a subscription by its position in the config.
 */
async function configEndpoints(envName: string): Promise<Map<string, string>> {
  try {
    const [{ loadCliConfig }, { escalationLevels }] = await Promise.all([import('./cli-config'), import('../../lib/config')]);
    return declaredEndpoints(escalationLevels(loadCliConfig(envName).escalation));
  } catch {
    return new Map();
  }
}

/**
 * Where an incident's climb stands, for `incident list`: the highest level recorded as paged, with a
 * higher one whose page may be out beside it. The record says 0 until a page is recorded, which is
 * no level: an incident just opened (its first page not out yet) pages level 1 next; a flapping
 * alarm's incident that carried its previous incident's climb over (model.ts `climbToCarryOver`)
 * pages nobody again and stands at the level carried over; one acknowledged or resolved before any
 * page was never paged.
 */
function levelColumn(incident: Incident): string {
  const highest = highestLevelPaged(incident, undefined);
  if (incident.level > 0) return `level ${incident.level}${highest > incident.level ? ` (${highest} possibly paged)` : ''}`;
  if (highest > 0) return `level ${highest} possibly paged, not recorded`;
  const carried = incident.carriedOver;
  if (carried) return `level ${carried.level} carried over from ${carried.from}`;
  return incident.status === 'OPEN' ? 'not paged yet (level 1 next)' : 'never paged';
}

/**
 * `incident ack --level`: the level whose page the acknowledging person answers, which gets the
 * reminders (model.ts `acknowledgingLevel`), checked against the environment's levels (cdk.json
 * `escalation.levels`) before anything is written: a level the config lacks would be reminded as its
 * highest (tasks.ts `existingLevel`), someone who did not acknowledge. A table whose environment is
 * unknown (--table, ATMR_OPS_TABLE without --env) leaves nothing to check it against.
 */
function ackLevel(typed: string, envName: string | undefined, config: EnvironmentConfig['escalation'] | undefined): number {
  const without = 'or leave --level out (level 1, the on-call, is then reminded); nothing acknowledged';
  if (envName === undefined) {
    throw new OperatorError(`incident ack: --level ${typed} cannot be checked: the table's environment is unknown (--table or ${DEPLOYED_NAMES.opsTable.envVar}): add --env <name>, ${without}`, 2);
  }
  if (config === undefined) throw new OperatorError(`incident ack: --level ${typed} cannot be checked: the escalation config of environment ${envName} could not be read from cdk.json: fix it, ${without}`, 2);
  const level = /^\d+$/.test(typed.trim()) ? Number(typed) : Number.NaN;
  if (level >= 1 && level <= config.levels.length) return level;
  const known = config.levels.map((l, index) => `${index + 1} (${l.name})`).join(', ');
  throw new OperatorError(`incident ack: --level ${typed} is not an escalation level of environment ${envName}: give one of ${known}; nothing acknowledged`, 2);
}

/** A resolution note is one line of a list row and of the timeline: the cause, not the post-mortem. */
const MAX_NOTE_LENGTH = 300;

/** What `<id>` is and where it comes from: a command line without it is answered with this. */
const INCIDENT_ID = `incident id, from ${OPERATOR_CLI} incident list --open`;

/** `atmr-dr incident list|ack|resolve|timeline`: the escalation state, from the ops-state table. */
export function registerIncidentCommands(program: Command): void {
  const incident = program
    .command('incident')
    .description('incidents opened by the alarms: list, acknowledge (stops the climb to the next level), resolve, timeline for the post-mortem')
    .option('--table <name>', 'ops-state table (default: $ATMR_OPS_TABLE, else the deployed stack outputs of --env)')
    .option('--state-machine <arn>', 'escalation state machine (default: $ATMR_ESCALATION_STATE_MACHINE, else the deployed stack outputs)')
    .option('--env <name>', `environment whose deployed stacks name the table (default: ${ENV_DEFAULT})`);

  const storeOf = async (): Promise<{ store: IncidentStore; globals: Globals }> => {
    const globals = incident.opts<Globals>();
    const tableName = await resolveDeployedName(DEPLOYED_NAMES.opsTable, { flagValue: globals.table, envName: globals.env });
    // --env as typed, not the default: the commands its lines print run as this one was run.
    return { store: incidentStore(tableName, {}, globals.env), globals };
  };
  /** The environment the table belongs to, when known: `--env`, or the one whose stacks named it. */
  const tableEnvironment = (globals: Globals): string | undefined =>
    globals.env ?? (globals.table === undefined && !process.env[DEPLOYED_NAMES.opsTable.envVar] ? defaultEnvironmentName() : undefined);

  incident
    .command('list')
    .description('incidents, newest first; open ones show whether their escalation still runs')
    .option('--open', 'only incidents not resolved')
    .option('--json', 'print JSON')
    .action(async (opts: { open?: boolean; json?: boolean }) => {
      const { store, globals } = await storeOf();
      const incidents = await listIncidents(store, { open: opts.open });
      // The workflow column needs the state machine; without it, the list is still the record.
      const stateMachineArn = await resolveDeployedName(DEPLOYED_NAMES.escalationStateMachine, { flagValue: globals.stateMachine, envName: globals.env }).catch(() => undefined);
      const workflows = await workflowStatuses(namedClient(new SFNClient(SDK_RETRY), 'Step Functions'), stateMachineArn, incidents);
      // `level` is the record's: a level whose page may be out but is not recorded (its record refused
      // by the table, its step stopped or timed out after the publish) is above it. The execution's
      // state is not known here: the levels it alone holds (model.ts levelsPaged) are not counted.
      if (opts.json) {
        print(
          JSON.stringify(
            incidents.map(({ taskToken: _token, ...rest }) => ({ ...rest, highestLevelPaged: highestLevelPaged(rest, undefined), workflow: workflows.get(rest.id) ?? null })),
          ),
        );
        return;
      }
      if (incidents.length === 0) {
        print(opts.open ? 'no open incident' : 'no incident');
        return;
      }
      for (const i of incidents) {
        const ack = i.ack ? ` acked by ${i.ack.by} ${i.ack.at}` : '';
        const resolved = i.resolution ? ` resolved by ${i.resolution.by} ${i.resolution.at}` : '';
        const note = i.resolution?.note ? ` note: ${i.resolution.note}` : '';
        const workflow = workflows.has(i.id) ? ` workflow ${workflows.get(i.id)}` : '';
        print(`${i.id}  ${i.status.padEnd(8)} ${levelColumn(i)}  ${i.alarmName}  opened ${i.openedAt}${ack}${resolved}${workflow}${note}`);
      }
    });

  incident
    .command('ack')
    .argument('<id>', INCIDENT_ID)
    // The word docs/escalation.md and this command's help use for it: typed in full, it acknowledges too.
    .alias('acknowledge')
    .description(
      'acknowledge: stops the climb; the acknowledging level (--level, else level 1) is reminded until the incident is resolved: while the alarm stays in ALARM, or for an event alarm at each new ALARM',
    )
    .option('--by <name>', byOptionHelp('who acknowledges'))
    .option('--level <n>', 'the escalation level whose page you answer (cdk.json escalation.levels: 1 on-call, 2 lead DevOps, 3 CTO by default): it gets the reminders (default: level 1)')
    .action(async (typed: string, opts: { by?: string; level?: string }) => {
      const id = canonicalIncidentId(typed);
      const globals = incident.opts<Globals>();
      // --level is checked first: refused, it writes nothing and asks AWS nothing. Without it, the
      // config is read only once the acknowledgement is written, which it must never hold up.
      let config: EnvironmentConfig['escalation'] | undefined;
      let level: number | undefined;
      if (opts.level !== undefined) {
        const envName = tableEnvironment(globals);
        config = await escalationConfig(envName);
        level = ackLevel(opts.level, envName, config);
      }
      const { store } = await storeOf();
      const by = await resolveCliActor(opts.by);
      // The alarm named: in a storm ids share their time prefix, and a pasted wrong id shows here.
      let wakeError: unknown;
      const acked = await acknowledgeIncident(store, id, { by, via: 'cli', ...(level !== undefined && { level }) }, { wakeFailed: (error) => (wakeError = error) }).catch(async (error: unknown) => {
        throw error instanceof OperatorError && error.exitCode === 4 ? await incidentNotFound(store, id, `check the id with \`${operatorCommand(store.environmentName, 'incident list --open')}\``) : error;
      });
      config ??= await escalationConfig(tableEnvironment(globals));
      print(`incident ${id} (${acked.alarmName}) acknowledged by ${by}: escalation stopped; ${remindersLine(acked, config, store.environmentName)}`);
      if (wakeError !== undefined) process.stderr.write(`atmr-dr: warning: ${notWokenLine('acknowledgement', { status: 'OPEN', level: acked.level }, wakeError, config)}\n`);
    });

  incident
    .command('resolve')
    .argument('<id>', INCIDENT_ID)
    .description('resolve by hand; every level paged is told. An alarm returning to OK resolves its incident by itself, except an event alarm (a failed run, an error count): its OK resolves nothing, only this does')
    .option('--by <name>', byOptionHelp('who resolves'))
    .option('--note <text>', `one line recorded with the resolution, shown by timeline and list (e.g. --note "cause: disk full"; at most ${MAX_NOTE_LENGTH} characters)`)
    .option('--yes', 'do not ask for confirmation')
    .action(async (typed: string, opts: { by?: string; note?: string; yes?: boolean }) => {
      const id = canonicalIncidentId(typed);
      const note = boundedLine(opts.note, 'incident resolve: --note', MAX_NOTE_LENGTH);
      if (opts.note !== undefined && note === undefined) throw new OperatorError('incident resolve: --note is empty: write the note, e.g. --note "cause: disk full", or leave --note out', 2);
      const { store, globals } = await storeOf();
      // First: a --by refused (empty) must refuse before the question is asked.
      const by = await resolveCliActor(opts.by);
      const found = await getIncident(store, id);
      if (!found) throw await incidentNotFound(store, id, `check the id with \`${operatorCommand(store.environmentName, 'incident list --open')}\``);
      const alarm = await stillInAlarm(found);
      if (alarm.unread) process.stderr.write(`atmr-dr: warning: ${alarm.unread}\n`);
      if (alarm.warning && opts.yes) process.stderr.write(`atmr-dr: warning: ${alarm.warning}\n`);
      const although = alarm.warning ? `, although ${alarm.warning}` : '';
      // What the resolution ends depends on the state: an acknowledgement has already stopped the
      // climb for good, and only its reminders are left (lib/constructs/escalation.ts).
      const ends = found.status === 'ACKED' ? 'ending its reminders (its acknowledgement already stopped the climb: no further level is paged)' : 'paging no further level';
      if (!(await confirmer(opts.yes)(`resolve incident ${id} (${found.alarmName}, ${found.status}), ${ends} and telling every level paged it is resolved${although}`))) {
        throw new OperatorError(`incident resolve: not confirmed, incident ${id} unchanged`, 1);
      }
      let wakeError: unknown;
      await resolveIncident(store, id, { by, via: 'cli', how: 'resolved by hand', ...(note && { note }) }, { wakeFailed: (error) => (wakeError = error) });
      print(`incident ${id} resolved by ${by}: its escalation stops, no one else is paged; every level paged is told it is resolved; the record: \`${operatorCommand(store.environmentName, `incident timeline ${id}`)}\``);
      if (wakeError !== undefined) process.stderr.write(`atmr-dr: warning: ${notWokenLine('resolution', found, wakeError, await escalationConfig(tableEnvironment(globals)))}\n`);
    });

  incident
    .command('subscriptions')
    .description(
      'whether each page reaches a human: every declared subscription of each level topic and of KeyGuardTopic, confirmed, pending confirmation or gone, with its fix (the check the hourly SubscriptionsCheck function runs), and whether a CloudTrail trail logs the topics\' region (without one, the key guard never fires). Run it after each deploy until it exits 0, within 3 days. Exit 0: every declared subscription is confirmed and a trail is logging; 1: a subscription is not confirmed, no trail is logging, or the check failed; 2: a bad command line or setting (--topics or $ATMR_SUBSCRIPTION_TOPICS not the JSON the construct writes, an unknown --env, no AWS credentials or region)',
    )
    .option('--topics <json>', 'the topics and their declared subscriptions, as the Ops stack output EscalationSubscriptionTopics gives them (default: $ATMR_SUBSCRIPTION_TOPICS, else that output of --env)')
    .option('--json', 'print JSON: {ok, unconfirmed, trail (the CloudTrail problem line, or null), topics: [{level, name, topicArn, undeclaredConfirmed, reachesNobody, subscriptions: [{position, protocol, state, endpoint, fix}]}]}')
    .action(async (opts: { topics?: string; json?: boolean }) => {
      const globals = incident.opts<Globals>();
      const { value, from } = await resolveDeployedNameFrom(DEPLOYED_NAMES.subscriptionTopics, { flagValue: opts.topics, envName: globals.env });
      let topics: LevelToCheck[];
      try {
        topics = parseTopicsToCheck(value);
      } catch (error) {
        throw new OperatorError(
          `incident subscriptions: the topics from ${from} are not the JSON the escalation construct writes (${oneLine(error).slice(0, 200)}): leave --topics and ${DEPLOYED_NAMES.subscriptionTopics.envVar} out to read the Ops stack's output`,
          2,
        );
      }
      // The Lambda's own check: it logs and adds a metric there; here the report is the output.
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
      const sns = namedClient(new SNSClient(SDK_RETRY), 'SNS');
      const report = await checkSubscriptions({ sns, metrics: { addMetric: () => undefined }, logger: quiet }, topics).catch((error: unknown) => {
        const missing = missingAwsSetting(error);
        // The topics given by --topics (or its variable) spare the stack lookup only: the
        // subscriptions are SNS's, read with the operator's credentials in every case.
        if (missing) throw new OperatorError(`${missing} (the subscriptions are read from SNS, --topics or not: it skips only the CloudFormation lookup of the Ops stack's outputs)`, MISSING_SETTING_EXIT_CODE);
        throw error;
      });
      const endpoints = report.unconfirmed > 0 ? await configEndpoints(globals.env ?? defaultEnvironmentName()) : new Map<string, string>();
      const listed = report.levels.map((level) => {
        const lines = subscriptionLines(level, endpoints);
        return { level, lines, nobody: reachesNobodyLine(level, lines) };
      });
      const declared = listed.reduce((sum, { lines }) => sum + lines.length, 0);
      const sandbox = await smsSandboxLine(sns, report.levels);
      // The topics' region is the keys' (one Ops stack): the trail must log there.
      const region = topics[0]?.topicArn.split(':')[3];
      const trail = await trailProblem(new CloudTrailClient({ ...SDK_RETRY, ...(region && { region }) }), region ?? 'this region');
      if (opts.json) {
        print(
          JSON.stringify({
            ok: report.unconfirmed === 0 && trail === undefined,
            unconfirmed: report.unconfirmed,
            trail: trail ?? null,
            topics: listed.map(({ level, lines, nobody }) => ({
              level: level.level ?? null,
              name: level.name,
              topicArn: level.topicArn,
              undeclaredConfirmed: level.undeclaredConfirmed,
              reachesNobody: nobody !== undefined,
              subscriptions: lines,
            })),
          }),
        );
      } else {
        // A level that pages nobody comes first: in a long list its lines look like any other gone one.
        for (const { nobody } of listed) if (nobody) print(nobody);
        for (const { level, lines } of listed) {
          const others = level.undeclaredConfirmed > 0 ? ` (and ${level.undeclaredConfirmed} confirmed subscription(s) cdk.json does not declare)` : '';
          print(`${level.level === undefined ? level.name : `level ${level.level} ${level.name}`}: ${level.topicArn}${others}`);
          for (const line of lines) {
            const state = line.state === 'pending' ? 'PENDING CONFIRMATION' : line.state === 'gone' ? 'GONE' : 'confirmed';
            print(`  ${line.position}. ${line.protocol} ${line.endpoint ?? '(endpoint unknown)'}: ${state}${line.fix ? `: ${line.fix}` : ''}`);
          }
        }
        // A confirmed SMS subscription of a sandboxed account may still reach no one.
        const reaches = sandbox ? 'whether its SMS reach their numbers, see the warning below' : 'every page reaches a human';
        // Without a trail the key guard's page never starts, confirmed subscriptions or not.
        if (report.unconfirmed === 0) print(`every declared subscription is confirmed (${declared})${trail ? '' : `: ${reaches}`}`);
      }
      if (sandbox) process.stderr.write(`atmr-dr: warning: ${sandbox}\n`);
      if (trail && report.unconfirmed === 0) throw new OperatorError(trail, 1);
      // Both wrong: the trail's line first, the subscriptions' line ends the run as before.
      if (trail) process.stderr.write(`atmr-dr: ${trail}\n`);
      if (report.unconfirmed > 0) {
        throw new OperatorError(
          `${report.unconfirmed} of ${declared} declared subscriptions reach nobody (pending confirmation or gone): do what each line says, then run this again until it exits 0, within 3 days of the deploy`,
          1,
        );
      }
    });

  incident
    .command('timeline')
    .argument('<id>', `incident id, from ${OPERATOR_CLI} incident list`)
    .description('the incident as Markdown (pages, acknowledgement, automated actions, state changes), for the post-mortem')
    .option('--json', 'print JSON: the incident (as list --json shows it) and the same events, in the same order')
    .action(async (typed: string, opts: { json?: boolean }) => {
      const id = canonicalIncidentId(typed);
      const { store } = await storeOf();
      const found = await getIncident(store, id);
      if (!found) throw await incidentNotFound(store, id, `check the id with \`${operatorCommand(store.environmentName, 'incident list')}\``);
      const events = await timeline(store, id);
      if (opts.json) {
        const { taskToken: _token, ...incident } = found;
        print(JSON.stringify({ incident: { ...incident, highestLevelPaged: highestLevelPaged(found, undefined) }, events }));
        return;
      }
      process.stdout.write(timelineMarkdown(found, events));
    });
}
