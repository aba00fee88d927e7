import { CfnOutput, Duration, Names, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { metricsNamespace, operatorCommand } from '../../lambdas/shared/constants';
import { RULE_TAG_KEY } from '../../lambdas/killswitch/enforcer';
import { ANSWERED_OUTSIDE_MAINTENANCE_METRIC, MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS } from '../../lambdas/killswitch/maintenance-responder';
import { KILLSWITCH_INVALID_METRIC, KILLSWITCH_MODE_METRIC } from '../../lambdas/killswitch/notify';
import { deadLetterQueue, deadLettersAlarm } from './dead-letters';
import { putEventsOnDefaultBus } from './event-bus-statements';
import { acknowledgeHouseFunctionFindings, deadLetterAsyncFailures, HouseFunction } from './house-function';
import { KillswitchParameter } from './killswitch-parameter';
import { RunbookAlarm, sumOfCounts } from './runbook-alarm';
import { signedEndpoint } from './signed-endpoint';

export interface KillswitchProps {
  /** Environment name, used in the expiry schedule group's name. */
  readonly environmentName: string;
  /** The SSM parameter (created in the stateful stack). */
  readonly parameterName: string;
  /** ALB listener where maintenance is enforced. */
  readonly listenerArn: string;
  /** Priority P of the exempt (/health, /ready) rule; the 503 rule takes P+1. Both must be free. */
  readonly listenerRulePriority: number;
  /** Target group of the API: the exempt rule forwards /health and /ready there during maintenance. */
  readonly apiTargetGroupArn: string;
  /** Retry-After of the edge 503 when the value has no `expiresAt`. @default Duration.seconds(120) */
  readonly defaultRetryAfter?: Duration;
  /** Task role of the Flask API: read access. */
  readonly apiTaskRoleArn: string;
  /** Operator roles of the CLI: read and write access. @default - none */
  readonly operatorRoleArns?: readonly string[];
  /** Slack slash command; no Function URL is created without it. @default - no ChatOps */
  readonly slack?: {
    readonly signingSecretArn: string;
    readonly allowedUserIds: readonly string[];
    /** Slack workspace (`team_id`) and app (`api_app_id`) a command must come from. */
    readonly teamId: string;
    readonly apiAppId: string;
  };
  /**
   * Concurrent executions reserved for (and capping) the public Slack endpoint: a flood of requests
   * costs at most this many executions and cannot starve the account's other functions.
   * @default 2
   */
  readonly slackReservedConcurrency?: number;
  /**
   * Concurrent executions reserved for (and capping) the maintenance responder. During maintenance
   * every API request is one synchronous invocation: about requests/s x duration (2,000 req/s x 5 ms
   * = 10 warm). Uncapped, a burst of cold starts at the switch could take the account's whole pool
   * and starve the backout, escalation and killswitch functions on the day they must run. Past the
   * cap the ALB answers a 5xx of its own instead of the 503 page: the request was refused either way.
   * @default 10
   */
  readonly maintenanceResponderReservedConcurrency?: number;
  /** Every change is announced on this topic. */
  readonly incidentsTopic: sns.ITopic;
  /** How often the enforcer reconciles the listener with the parameter. @default Duration.minutes(5) */
  readonly reconcileInterval?: Duration;
}

/** Stack outputs an operator copies by hand (into the Slack app's slash commands). */
export const KILLSWITCH_OUTPUTS = { slackCommandUrl: 'SlackCommandUrl' } as const;

/** Service name (Powertools `service` dimension) of the function that emits `KillswitchMode`. */
export const KILLSWITCH_NOTIFIER_SERVICE = 'killswitch-notifier';
/** Service name of the maintenance responder (its reader emits `KillswitchInvalid` too). */
export const KILLSWITCH_RESPONDER_SERVICE = 'killswitch-maintenance';
const EXPIRY_SCHEDULE_NAME = 'killswitch-expiry';

/**
 * The killswitch (runbook "Killswitch"): who may read and write the SSM parameter, the change rule
 * (enforcer + notifier on every "Parameter Store Change"), the 5-minute reconcile, the expiry
 * schedule machinery and the Slack slash command.
 */
export class Killswitch extends Construct {
  readonly enforcer: HouseFunction;
  /** Answers the requests the maintenance rule forwards: 503, the runbook body, Retry-After. */
  readonly maintenanceResponder: HouseFunction;
  /** Lambda target group of the responder; the enforcer's maintenance rule forwards to it. */
  readonly maintenanceTargetGroup: elbv2.ApplicationTargetGroup;
  readonly notifier: HouseFunction;
  readonly expiryReverter: HouseFunction;
  readonly slackCommand?: HouseFunction;
  readonly slackCommandUrl?: lambda.FunctionUrl;
  readonly changeRule: events.Rule;
  /** Change events, reconcile ticks and expiry invocations that could not be delivered. */
  readonly deadLetterQueue: sqs.Queue;
  readonly reconcileRule: events.Rule;
  /** `KillswitchMode` (0 normal, 1 degraded, 2 maintenance), for the dashboard. */
  readonly modeMetric: cloudwatch.Metric;
  /** Every failure of the killswitch machinery reaches the incidents topic through one of these. */
  readonly alarms: {
    readonly enforcerErrors: cloudwatch.Alarm;
    readonly deadLetters: cloudwatch.Alarm;
    readonly invalidValue: cloudwatch.Alarm;
    readonly answeredOutsideMaintenance: cloudwatch.Alarm;
  };

  constructor(scope: Construct, id: string, props: KillswitchProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const parameterArn = KillswitchParameter.arn(this, props.parameterName);
    const readParameter = new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [parameterArn] });
    const writeParameter = new iam.PolicyStatement({ actions: ['ssm:GetParameter', 'ssm:PutParameter'], resources: [parameterArn] });
    const common = { KILLSWITCH_PARAMETER: props.parameterName };

    this.deadLetterQueue = deadLetterQueue(this, {
      isTheDeadLetterQueue: 'This queue is itself the dead-letter queue of the killswitch change rule, reconcile rule and expiry schedules.',
      nothingConsumesIt:
        'This queue is the last stop (a dead-letter queue): the DeadLetters alarm pages the incidents topic as soon as it holds a message; operators inspect it, nothing consumes it.',
    });

    // Readers and writers: named roles only (a String parameter has no resource policy).
    const apiTaskRole = iam.Role.fromRoleArn(this, 'ApiTaskRole', props.apiTaskRoleArn, { mutable: true });
    apiTaskRole.addToPrincipalPolicy(readParameter);
    (props.operatorRoleArns ?? []).forEach((arn, index) => {
      iam.Role.fromRoleArn(this, `OperatorRole${index}`, arn, { mutable: true }).addToPrincipalPolicy(writeParameter);
    });

    // Maintenance responder: the edge 503 with Retry-After (an ALB fixed response cannot set headers).
    const defaultRetryAfterSeconds = (props.defaultRetryAfter ?? Duration.seconds(120)).toSeconds();
    const reconcileInterval = props.reconcileInterval ?? Duration.minutes(5);
    // Never longer than the reconcile: a rule it should have removed is what the alarm is for.
    const responderGraceSeconds = Math.min(MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS, reconcileInterval.toSeconds());
    if (defaultRetryAfterSeconds < 1 || defaultRetryAfterSeconds > 86400) {
      throw new Error(`Killswitch: defaultRetryAfter is ${defaultRetryAfterSeconds} s: use between 1 second and 1 day`);
    }
    this.maintenanceResponder = new HouseFunction(this, 'MaintenanceResponder', {
      entry: 'lambdas/killswitch/maintenance-responder-handler.ts',
      environmentName: props.environmentName,
      serviceName: KILLSWITCH_RESPONDER_SERVICE,
      // The ALB waits for the answer; a warm call reads the value from memory (5 s cache).
      timeout: Duration.seconds(10),
      // A throttle loses nothing (the request is refused either way): no throttle alarm.
      reservedConcurrentExecutions: props.maintenanceResponderReservedConcurrency ?? 10,
      environment: {
        ...common,
        DEFAULT_RETRY_AFTER_SECONDS: String(defaultRetryAfterSeconds),
        REMOVAL_GRACE_SECONDS: String(responderGraceSeconds),
      },
    });
    (this.maintenanceResponder.function.role as iam.IRole).addToPrincipalPolicy(readParameter);
    // Named, so the invoke permission can name it before it exists: ELB checks the permission when
    // the function is registered, so the permission cannot reference the group's (later) ARN.
    const targetGroupName = Names.uniqueResourceName(this, { maxLength: 32, separator: '-' });
    const albInvoke = new lambda.CfnPermission(this, 'MaintenanceResponderAlbInvoke', {
      action: 'lambda:InvokeFunction',
      functionName: this.maintenanceResponder.function.functionArn,
      principal: 'elasticloadbalancing.amazonaws.com',
      sourceAccount: stack.account,
      sourceArn: stack.formatArn({ service: 'elasticloadbalancing', resource: 'targetgroup', resourceName: `${targetGroupName}/*` }),
    });
    const responderFunction = this.maintenanceResponder.function;
    this.maintenanceTargetGroup = new elbv2.ApplicationTargetGroup(this, 'MaintenanceTargetGroup', {
      targetGroupName,
      targetType: elbv2.TargetType.LAMBDA,
      // Not targets.LambdaTarget: its invoke permission has no source ARN (any target group could invoke).
      targets: [
        {
          attachToApplicationTargetGroup: (group) => {
            group.node.addDependency(albInvoke);
            return { targetType: elbv2.TargetType.LAMBDA, targetJson: { id: responderFunction.functionArn } };
          },
        },
      ],
    });

    // Enforcer: the ALB listener follows the parameter.
    this.enforcer = new HouseFunction(this, 'Enforcer', {
      entry: 'lambdas/killswitch/enforce-handler.ts',
      environmentName: props.environmentName,
      serviceName: 'killswitch-enforcer',
      // One at a time: concurrent add/remove of the same rules would race.
      reservedConcurrentExecutions: 1,
      environment: {
        ...common,
        LISTENER_ARN: props.listenerArn,
        LISTENER_RULE_PRIORITY: String(props.listenerRulePriority),
        MAINTENANCE_TARGET_GROUP_ARN: this.maintenanceTargetGroup.targetGroupArn,
        API_TARGET_GROUP_ARN: props.apiTargetGroupArn,
      },
    });
    const enforcerRole = this.enforcer.function.role as iam.IRole;
    enforcerRole.addToPrincipalPolicy(readParameter);
    const listenerRules = `${props.listenerArn.replace(':listener/', ':listener-rule/')}/*`;
    // Rule writes only, on this listener, and only on the rules it tagged: it may create a rule only
    // with its tag (and tag only at creation), and modify or delete only rules that carry the tag.
    // ELBv2 has no condition key for the target group a rule forwards to: "forward only to the
    // responder or the API" is enforced by the code.
    const ownTagValues = ['exempt', 'maintenance'];
    enforcerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'CreateTaggedRulesOnTheListener',
        actions: ['elasticloadbalancing:CreateRule'],
        resources: [props.listenerArn],
        conditions: { StringEquals: { [`aws:RequestTag/${RULE_TAG_KEY}`]: ownTagValues } },
      }),
    );
    enforcerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TagRulesAtCreation',
        actions: ['elasticloadbalancing:AddTags'],
        resources: [listenerRules],
        conditions: {
          StringEquals: { 'elasticloadbalancing:CreateAction': 'CreateRule', [`aws:RequestTag/${RULE_TAG_KEY}`]: ownTagValues },
        },
      }),
    );
    enforcerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ManageOwnRules',
        actions: ['elasticloadbalancing:DeleteRule', 'elasticloadbalancing:ModifyRule'],
        resources: [listenerRules],
        conditions: { StringEquals: { [`aws:ResourceTag/${RULE_TAG_KEY}`]: ownTagValues } },
      }),
    );
    enforcerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'DescribeRulesAndTags',
        actions: ['elasticloadbalancing:DescribeRules', 'elasticloadbalancing:DescribeTags'],
        resources: ['*'],
      }),
    );

    // Expiry: a one-time schedule per change with --expires invokes the reverter.
    this.expiryReverter = new HouseFunction(this, 'ExpiryReverter', {
      entry: 'lambdas/killswitch/revert-handler.ts',
      environmentName: props.environmentName,
      serviceName: 'killswitch-expiry',
      // One pending expiry at a time; reserved so that a maintenance ends on time even when the
      // account's pool is used up. A throttled run is retried by Lambda, then dead-lettered (paged).
      reservedConcurrentExecutions: 1,
      environment: common,
    });
    (this.expiryReverter.function.role as iam.IRole).addToPrincipalPolicy(writeParameter);
    const scheduleGroup = new scheduler.ScheduleGroup(this, 'ExpiryScheduleGroup', {
      scheduleGroupName: `atmr-dr-${props.environmentName}-killswitch`,
      // Holds only the pending expiry (re-armed on the next change): nothing to keep in a stateless stack.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const schedulerRole = new iam.Role(this, 'ExpirySchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
      description: 'EventBridge Scheduler invokes the killswitch expiry reverter',
    });
    // The function itself only (no `:*` versions): the schedule targets its unqualified ARN.
    schedulerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.expiryReverter.function.functionArn] }),
    );
    this.deadLetterQueue.grantSendMessages(schedulerRole);

    // Notifier: every change, whoever made it, is announced once, from here.
    this.notifier = new HouseFunction(this, 'Notifier', {
      entry: 'lambdas/killswitch/notify-handler.ts',
      environmentName: props.environmentName,
      serviceName: KILLSWITCH_NOTIFIER_SERVICE,
      reservedConcurrentExecutions: 1,
      environment: {
        ...common,
        // The commands its messages print name it (--env): pasted without, they act on cdk.json's default environment.
        ENVIRONMENT_NAME: props.environmentName,
        TOPIC_ARN: props.incidentsTopic.topicArn,
        EXPIRY_SCHEDULE_GROUP: scheduleGroup.scheduleGroupName,
        EXPIRY_SCHEDULE_NAME,
        REVERT_FUNCTION_ARN: this.expiryReverter.function.functionArn,
        SCHEDULER_ROLE_ARN: schedulerRole.roleArn,
        DEAD_LETTER_QUEUE_ARN: this.deadLetterQueue.queueArn,
      },
    });
    const notifierRole = this.notifier.function.role as iam.IRole;
    notifierRole.addToPrincipalPolicy(readParameter);
    props.incidentsTopic.grantPublish(notifierRole);
    notifierRole.addToPrincipalPolicy(putEventsOnDefaultBus(stack));
    notifierRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['scheduler:CreateSchedule', 'scheduler:DeleteSchedule'],
        resources: [stack.formatArn({ service: 'scheduler', resource: 'schedule', resourceName: `${scheduleGroup.scheduleGroupName}/${EXPIRY_SCHEDULE_NAME}` })],
      }),
    );
    // Only to EventBridge Scheduler (the expiry schedule's target role): never to another service.
    notifierRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [schedulerRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
    );

    this.changeRule = new events.Rule(this, 'ChangeRule', {
      description: `atmr-dr: ${props.parameterName} changed: enforce at the ALB and notify`,
      eventPattern: {
        source: ['aws.ssm'],
        detailType: ['Parameter Store Change'],
        detail: { name: [props.parameterName], operation: ['Create', 'Update'] },
      },
      targets: [
        new targets.LambdaFunction(this.enforcer.function, { retryAttempts: 4, maxEventAge: Duration.hours(1), deadLetterQueue: this.deadLetterQueue }),
        new targets.LambdaFunction(this.notifier.function, { retryAttempts: 4, maxEventAge: Duration.hours(1), deadLetterQueue: this.deadLetterQueue }),
      ],
    });
    this.reconcileRule = new events.Rule(this, 'ReconcileRule', {
      description: 'atmr-dr: converge the ALB maintenance rules with the killswitch (missed events)',
      schedule: events.Schedule.rate(reconcileInterval),
      // A missed tick is caught up by the next one: no retries, but failures stay visible.
      targets: [new targets.LambdaFunction(this.enforcer.function, { retryAttempts: 0, deadLetterQueue: this.deadLetterQueue })],
    });

    if (props.slack) {
      // Function URL with auth NONE: Slack cannot sign requests with SigV4. Every request is
      // authenticated by Slack's v0 HMAC signature: headers and the 5-minute replay window are
      // checked first (no secret read for junk), then the signature, the workspace and app ids and
      // a user allow-list (lambdas/killswitch/slack.ts). Refusals get a generic answer.
      const endpoint = signedEndpoint(this, 'SlackCommand', {
        entry: 'lambdas/killswitch/slack-handler.ts',
        environmentName: props.environmentName,
        serviceName: 'killswitch-slack',
        // Slack waits 3 seconds for the answer.
        timeout: Duration.seconds(10),
        reservedConcurrentExecutions: props.slackReservedConcurrency ?? 2,
        environment: {
          ...common,
          // The commands its replies print name it (--env).
          ENVIRONMENT_NAME: props.environmentName,
          SLACK_SIGNING_SECRET_ARN: props.slack.signingSecretArn,
          SLACK_ALLOWED_USER_IDS: props.slack.allowedUserIds.join(','),
          SLACK_TEAM_ID: props.slack.teamId,
          SLACK_API_APP_ID: props.slack.apiAppId,
        },
        signingSecret: secretsmanager.Secret.fromSecretCompleteArn(this, 'SlackSigningSecret', props.slack.signingSecretArn),
        caller: 'Slack (which shows failures to the user)',
      });
      this.slackCommand = endpoint.handler;
      this.slackCommandUrl = endpoint.url;
      (this.slackCommand.function.role as iam.IRole).addToPrincipalPolicy(writeParameter);
      // The Request URL of the Slack app's `/killswitch` and `/incident` slash commands (set by hand in the Slack app).
      new CfnOutput(stack, KILLSWITCH_OUTPUTS.slackCommandUrl, { value: endpoint.url.url, description: 'Request URL of the Slack slash commands /killswitch and /incident' });
    }

    this.modeMetric = new cloudwatch.Metric({
      namespace: metricsNamespace(props.environmentName),
      metricName: KILLSWITCH_MODE_METRIC,
      dimensionsMap: { service: KILLSWITCH_NOTIFIER_SERVICE },
      statistic: 'Maximum',
      period: Duration.minutes(1),
    });

    const houseFunctions = [this.enforcer, this.maintenanceResponder, this.notifier, this.expiryReverter, ...(this.slackCommand ? [this.slackCommand] : [])];
    for (const fn of houseFunctions) {
      acknowledgeHouseFunctionFindings(
        fn,
        'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level permissions; for the enforcer also elasticloadbalancing:Describe* (read-only, no resource-level permissions).',
      );
    }
    // Delivery failures dead-letter at the rule/schedule target; failed runs after Lambda's own retries land here too.
    for (const fn of [this.enforcer, this.notifier]) deadLetterAsyncFailures(fn, this.deadLetterQueue, 'the killswitch dead-letter queue');
    // No retry for the reverter: its failure that matters is a conflict with an on-call's write, and
    // a retry would read the value that conflict left, skip it as "changed since" and lose the page.
    // A failed revert leaves users served (readers treat an expired value as normal).
    deadLetterAsyncFailures(this.expiryReverter, this.deadLetterQueue, 'the killswitch dead-letter queue', { retryAttempts: 0 });
    Validations.of(this.maintenanceResponder).acknowledge({
      id: 'Serverless-LambdaDLQ',
      reason: 'Invoked synchronously by the ALB for each request: a failure is the HTTP answer itself, there is no async event to dead-letter.',
    });
    Validations.of(this.notifier).acknowledge({
      id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
      reason: "Granted by topic.grantPublish: data keys of the incidents topic's own key (the operations key, which does not encrypt backups).",
    });
    Validations.of(this.enforcer).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${listenerRules}]`,
      reason: `Rule ARNs are generated by ALB at creation: rules of the one configured listener, DeleteRule/ModifyRule only on rules tagged ${RULE_TAG_KEY}, AddTags only at CreateRule with that tag.`,
    });

    this.alarms = this.createAlarms(props, responderGraceSeconds);
  }

  private createAlarms(props: KillswitchProps, responderGraceSeconds: number): Killswitch['alarms'] {
    const common = {
      environmentName: props.environmentName,
      concern: 'Killswitch',
      runbookSection: 'Killswitch - Mode maintenance',
      topic: props.incidentsTopic,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      // Each of these counts failures: no data means nothing failed.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    const fiveMinutes = Duration.minutes(5);
    const serviceMetric = (metricName: string, service: string) =>
      new cloudwatch.Metric({ namespace: metricsNamespace(props.environmentName), metricName, dimensionsMap: { service }, statistic: 'Sum', period: fiveMinutes });
    const enforcerErrors = new RunbookAlarm(this, 'EnforcerErrorsAlarm', {
      ...common,
      what: 'EnforcerErrors',
      summary: 'the killswitch enforcer failed: the ALB may not follow the killswitch (maintenance not applied, or not lifted)',
      signalsEvent: true,
      firstActions: `${operatorCommand(props.environmentName, 'killswitch status')}, puis vérifier les règles du listener (tag atmr-dr:killswitch) et les logs de l’enforcer`,
      metric: this.enforcer.function.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
    });
    const deadLetters = deadLettersAlarm(this, this.deadLetterQueue, {
      ...common,
      // The expiry's reverter has no retry (a retry cannot tell its own write from a newer one): its
      // failures, a conflict with another write above all, come here at once.
      summary:
        `a killswitch change, reconcile tick or expiry was never delivered or failed (dead-letter queue not empty); an expiry that failed may have overwritten an on-call's newer change, or left an expired maintenance (which one: ${operatorCommand(props.environmentName, 'killswitch status')})`,
    });
    const invalidValue = new RunbookAlarm(this, 'InvalidValueAlarm', {
      ...common,
      what: 'InvalidValue',
      summary: `the killswitch value of ${props.parameterName} is malformed: every reader treats it as normal`,
      // Counted once per distinct value read: the alarm is OK 5 minutes later while the value
      // stays malformed.
      signalsEvent: true,
      firstActions: `réécrire une valeur valide : ${operatorCommand(props.environmentName, 'killswitch disable --reason <raison>')} (mode normal) ; ou ${operatorCommand(props.environmentName, 'killswitch enable --mode <mode> --reason <raison>')} (maintenance ou degraded)`,
      metric: sumOfCounts(
        {
          notifier: serviceMetric(KILLSWITCH_INVALID_METRIC, KILLSWITCH_NOTIFIER_SERVICE),
          responder: serviceMetric(KILLSWITCH_INVALID_METRIC, KILLSWITCH_RESPONDER_SERVICE),
        },
        fiveMinutes,
        'KillswitchInvalid',
      ),
    });
    const answeredOutsideMaintenance = new RunbookAlarm(this, 'AnsweredOutsideMaintenanceAlarm', {
      ...common,
      what: 'AnsweredOutsideMaintenance',
      summary: `the maintenance responder answered 503 more than ${responderGraceSeconds} s after the killswitch left maintenance (stale ALB rule), or while the value could not be read`,
      // Counts answers: 5 minutes without a request on the stale rule (a quiet night) turn it OK
      // while the rule is still there; a human checks the listener.
      signalsEvent: true,
      firstActions: `${operatorCommand(props.environmentName, 'killswitch status')}, puis supprimer les règles taggées atmr-dr:killswitch du listener si le mode est normal`,
      metric: serviceMetric(ANSWERED_OUTSIDE_MAINTENANCE_METRIC, KILLSWITCH_RESPONDER_SERVICE),
    });
    return { enforcerErrors, deadLetters, invalidValue, answeredOutsideMaintenance };
  }
}
