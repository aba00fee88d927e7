import { Template } from 'aws-cdk-lib/assertions';
import { StateMachine } from 'aws-local-stepfunctions';
import { Recovery } from '../../lib/constructs/recovery';
import { RecoveryRequest } from '../../lambdas/recovery/contract';
import { dispatchStep } from '../../lambdas/recovery/steps';
import { WorkflowDeps } from '../../lambdas/recovery/workflow';
import { constructHarness, exampleEnvironment } from './app';
import { recoveryProps } from './recovery-props';

export type WorkflowDefinition = Record<string, unknown> & { States: Record<string, { Type: string }> };

/** The recovery workflow's definition as synthesized for the example environment, tokens replaced by fixed ARNs. */
export function recoveryDefinition(): WorkflowDefinition {
  const h = constructHarness(exampleEnvironment(), 'RecoveryWorkflow');
  new Recovery(h.stack, 'Recovery', recoveryProps(h));
  const machine = Object.values(Template.fromStack(h.stack).findResources('AWS::StepFunctions::StateMachine'))[0] as {
    Properties: { DefinitionString: { 'Fn::Join': [string, unknown[]] } };
  };
  const [separator, parts] = machine.Properties.DefinitionString['Fn::Join'];
  const text = parts
    .map((part) => {
      if (typeof part === 'string') return part;
      const ref = part as { Ref?: string };
      if (ref.Ref === 'AWS::Partition') return 'aws';
      if (ref.Ref?.startsWith('Incidents')) return 'arn:aws:sns:eu-west-3:111111111111:incidents';
      return 'arn:aws:lambda:eu-west-3:111111111111:function:recovery';
    })
    .join(separator);
  return JSON.parse(text) as WorkflowDefinition;
}

/**
 * Runs the definition with aws-local-stepfunctions: Lambda tasks run the real step code with `deps`,
 * SNS tasks append their message to `pages`, every Wait state takes no time. Returns the output, or the
 * error of the Fail state the execution ended in. `lostAnswers`: Task states whose first invocation
 * runs the step and then fails with Lambda.ServiceException, as when Lambda loses the answer of a
 * function that ran (the state's Retry runs the step again, without waiting).
 */
export async function runRecoveryWorkflow(definition: WorkflowDefinition, request: RecoveryRequest, deps: WorkflowDeps, pages: string[] = [], lostAnswers: readonly string[] = []) {
  const machine = new StateMachine(definition as never, { validationOptions: { checkArn: false } });
  const handlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  const lost = new Set(lostAnswers);
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type !== 'Task') continue;
    handlers[name] = name.startsWith('Page')
      ? async (input) => {
          pages.push((input as { Message: string }).Message);
          return { MessageId: 'local' };
        }
      : async (input) => {
          const output = await dispatchStep(input, deps);
          if (lost.delete(name)) throw Object.assign(new Error(`${name}: the function ran, its answer was lost`), { name: 'Lambda.ServiceException' });
          return output;
        };
  }
  const retryIntervalOverrides = Object.fromEntries(Object.keys(handlers).map((name) => [name, 0]));
  const waitTimeOverrides = Object.fromEntries(Object.entries(definition.States).filter(([, state]) => state.Type === 'Wait').map(([name]) => [name, 0]));
  const execution = machine.run({ ...request }, { overrides: { taskResourceLocalHandlers: handlers as never, waitTimeOverrides, retryIntervalOverrides } });
  try {
    return { output: (await execution.result) as unknown, error: undefined };
  } catch (error) {
    // The Fail state the execution ended in is the cause of aws-local-stepfunctions' ExecutionError.
    return { output: undefined, error: ((error as Error).cause as Error | undefined) ?? (error as Error) };
  }
}
