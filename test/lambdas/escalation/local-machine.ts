import { Template } from 'aws-cdk-lib/assertions';
import { StateMachine } from 'aws-local-stepfunctions';
import { runTask, TaskInput } from '../../../lambdas/escalation/tasks';
import { synthesizeApp } from '../../support/app';
import { EscalationHarness, STATE_MACHINE_ARN } from './harness';

type Json = Record<string, unknown>;

/** Renders a CloudFormation string value (Fn::Join of strings, Ref, GetAtt) with placeholder ARNs. */
function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Json;
  if (v.Ref !== undefined) return v.Ref === 'AWS::Partition' ? 'aws' : `ref-${String(v.Ref)}`;
  if (v['Fn::GetAtt']) return `arn:aws:lambda:eu-west-3:111111111111:function:${(v['Fn::GetAtt'] as string[])[0]}`;
  if (v['Fn::Join']) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(separator);
  }
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

/** The description of one alarm of a synthesized ops template, as CloudWatch will hold it. */
export function alarmDescriptionIn(opsTemplate: Template, alarmName: string): string {
  const alarms = Object.values(opsTemplate.findResources('AWS::CloudWatch::Alarm', { Properties: { AlarmName: alarmName } })) as { Properties: Json }[];
  if (alarms.length !== 1) throw new Error(`expected one alarm ${alarmName}, got ${alarms.length}`);
  return render(alarms[0].Properties.AlarmDescription);
}

/**
 * The definition with its hand-over bound (lib/constructs/escalation.ts HAND_OVER_AFTER_ROUNDS, set
 * by its first state) lowered to `rounds`, so that a test reaches the hand-over in a few steps.
 */
export function handingOverAfter(definition: MachineDefinition, rounds: number): MachineDefinition {
  const start = definition.States[definition.StartAt] as { Type: string; Result?: { handOverAfter?: number } };
  if (start.Type !== 'Pass' || typeof start.Result?.handOverAfter !== 'number') throw new Error(`the first state ${definition.StartAt} sets no hand-over bound`);
  return { ...definition, States: { ...definition.States, [definition.StartAt]: { ...start, Result: { ...start.Result, handOverAfter: rounds } } } };
}

export interface MachineDefinition {
  readonly StartAt: string;
  readonly States: Record<string, Json>;
}

/** The escalation state machine's definition, as synthesized for the example environment (or a variant). */
export function synthesizedDefinition(environment?: Record<string, unknown>): MachineDefinition {
  return definitionIn(synthesizeApp({ environment }).opsTemplate);
}

/** The escalation state machine's definition in a synthesized ops template. */
export function definitionIn(opsTemplate: Template): MachineDefinition {
  const machines = (Object.values(opsTemplate.findResources('AWS::StepFunctions::StateMachine')) as { Properties: Json }[]).filter((m) =>
    String(m.Properties.StateMachineName).endsWith('-Escalation'),
  );
  if (machines.length !== 1) throw new Error(`expected one escalation state machine, got ${machines.length}`);
  return JSON.parse(render(machines[0].Properties.DefinitionString)) as MachineDefinition;
}

/** What happens while a step waits for its token: e.g. someone acknowledges, the alarm goes OK. */
export type DuringWait = (stateName: string, input: TaskInput & { taskToken: string }, visit: number) => Promise<void> | void;

export interface LocalRun {
  readonly output: Json;
  /** Task states entered, in order. */
  readonly path: string[];
  /** Every state entered (Wait, Choice and Pass states too), in order, with when (ms). */
  readonly entered: { readonly name: string; readonly at: number }[];
}

/** `step`, or Lambda's error once the function's timeout has passed (the step is left stopped where it was). */
async function withinFunctionTimeout<T>(step: Promise<T>, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined) return step;
  let timer: NodeJS.Timeout | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`Task timed out after ${timeoutMs} ms`), { name: 'Sandbox.Timedout' })), timeoutMs);
  });
  try {
    return await Promise.race([step, stopped]);
  } finally {
    clearTimeout(timer);
  }
}

function timeout(): Error {
  return Object.assign(new Error('task timed out'), { name: 'States.Timeout' });
}

/**
 * Runs the synthesized definition with aws-local-stepfunctions. Every Task state runs the real task
 * code (lambdas/escalation/tasks.ts) against the harness; a `.waitForTaskToken` step then returns
 * the output its token was woken with (SendTaskSuccess, from the task itself or from `duringWait`),
 * or fails with States.Timeout as Step Functions does when its TimeoutSeconds pass (its token then
 * wakes nothing: `harness.timedOut`). Each step of each
 * execution (`executionName`, the incident id unless a hand-over named it) gets a token of its own,
 * as in Step Functions. Waits and retry intervals are shortened to 0, or to `waitMs` for the Wait
 * states it names.
 */
export async function runLocally(
  definition: MachineDefinition,
  harness: EscalationHarness,
  input: Json,
  duringWait: DuringWait = () => undefined,
  maxSteps = 60,
  executionName = String(input.incidentId),
  waitMs: Record<string, number> = {},
): Promise<LocalRun> {
  const path: string[] = [];
  const visits = new Map<string, number>();
  let tokens = 0;
  const handlers: Record<string, (input: unknown) => Promise<Json>> = {};
  const waitOverrides: Record<string, number> = {};
  const retryOverrides: Record<string, number> = {};
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type === 'Wait') waitOverrides[name] = waitMs[name] ?? 0;
    if (state.Type !== 'Task') continue;
    if (state.Retry) retryOverrides[name] = 0;
    handlers[name] = async (raw: unknown) => {
      path.push(name);
      if (path.length > maxSteps) throw Object.assign(new Error(`more than ${maxSteps} steps: the workflow loops`), { name: 'TestLoop' });
      const visit = (visits.get(name) ?? 0) + 1;
      visits.set(name, visit);
      const params = raw as Json;
      const payload = (params.Payload ?? params) as TaskInput & { taskToken?: string };
      const waits = String(state.Resource).endsWith('.waitForTaskToken');
      const task = (waits ? { ...payload, taskToken: `${String(payload.taskToken)}#${executionName}#${++tokens}` } : payload) as TaskInput & { taskToken: string };
      let result: Json;
      try {
        result = (await withinFunctionTimeout(runTask(harness.taskDeps, task), harness.functionTimeoutMs)) as Json;
      } catch (error) {
        // A failed step's token no longer waits: waking it fails, as in Step Functions.
        if (waits) harness.timedOut.add(task.taskToken);
        throw error;
      }
      if (!waits) return result;
      await duringWait(name, task, visit);
      const woken = harness.woken.get(task.taskToken);
      if (woken === undefined) {
        // From now on the token no longer waits: waking it fails, as in Step Functions.
        harness.timedOut.add(task.taskToken);
        throw timeout();
      }
      return JSON.parse(woken) as Json;
    };
  }
  const machine = new StateMachine(definition as never, { validationOptions: { checkArn: false, checkPaths: false } });
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: handlers as never, waitTimeOverrides: waitOverrides, retryIntervalOverrides: retryOverrides },
    // The execution's own ARN (the hand-over step names the next execution from it).
    context: { Task: { Token: 'token' }, Execution: { Id: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${executionName}`, Name: executionName } } as never,
  });
  const entered: { name: string; at: number }[] = [];
  const logged = (async () => {
    for await (const event of execution.eventLogs) if (event.type === 'StateEntered') entered.push({ name: event.state.name, at: event.timestamp });
  })();
  const output = (await execution.result) as Json;
  await logged;
  return { output, path, entered };
}
