import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** A way to reach a human: e-mail, SMS, or HTTPS (PagerDuty, Opsgenie SNS integration URL). */
export interface HumanSubscription {
  readonly protocol: 'email' | 'sms' | 'https';
  readonly endpoint: string;
}

export interface IncidentTopicProps {
  /** Display name (the e-mail sender name). */
  readonly displayName: string;
  /** Customer-managed key: messages are encrypted at rest. Give it, or `unencryptedBecause`. */
  readonly masterKey?: kms.IKey;
  /**
   * No key, and why: for a topic that must still deliver when a key is disabled, since SNS drops a
   * message it cannot get a data key for. Required instead of a key so that no topic is left
   * unencrypted by omission: the cdk-nag packs in use no longer flag it (cdk-nag 3 has no
   * AwsSolutions-SNS2), so this is where the reason is kept.
   */
  readonly unencryptedBecause?: string;
  /** Who this topic reaches. @default - none (a topic nobody reads loses every alarm: give one) */
  readonly subscriptions?: readonly HumanSubscription[];
  /**
   * CloudWatch alarms of this account whose names start with this prefix may publish (alarm
   * actions). @default - no alarm may publish
   */
  readonly alarmNamePrefix?: string;
  /** Messages SNS could not deliver to a subscription (after its own retries) land here. */
  readonly deadLetterQueue: sqs.IQueue;
}

/**
 * An SNS topic that reaches humans: KMS-encrypted (but for one that no key may silence), TLS-only,
 * and a policy that allows exactly its publishers. Without any Allow statement, the enforceSSL Deny alone replaces SNS's default policy,
 * and services such as CloudWatch could not publish: every publisher is named here instead, the
 * services with `aws:SourceAccount` and `aws:SourceArn` conditions (confused deputy).
 */
export class IncidentTopic extends Construct {
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: IncidentTopicProps) {
    super(scope, id);
    const stack = Stack.of(this);
    if ((props.masterKey === undefined) === (props.unencryptedBecause === undefined)) {
      throw new Error(`IncidentTopic ${id}: give masterKey or unencryptedBecause (exactly one)`);
    }
    this.topic = new sns.Topic(this, 'Topic', { displayName: props.displayName, masterKey: props.masterKey, enforceSSL: true });
    for (const subscription of props.subscriptions ?? []) {
      this.topic.addSubscription(subscriptionOf(subscription, props.deadLetterQueue));
    }
    if (props.alarmNamePrefix !== undefined) {
      this.topic.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'CloudWatchAlarmsOfThisAccount',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['sns:Publish'],
          resources: [this.topic.topicArn],
          conditions: {
            StringEquals: { 'aws:SourceAccount': stack.account },
            ArnLike: { 'aws:SourceArn': stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: `${props.alarmNamePrefix}*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
          },
        }),
      );
    }
  }

  get topicArn(): string {
    return this.topic.topicArn;
  }

  /**
   * Lets the CloudWatch alarms of this account with exactly these names publish (alarm actions),
   * and no other alarm: for a topic that only some alarms may reach.
   */
  allowAlarms(alarmNames: readonly string[], sid: string): void {
    const stack = Stack.of(this);
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid,
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnEquals: { 'aws:SourceArn': alarmNames.map((name) => stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME })) },
        },
      }),
    );
  }

  /** Lets one of the app's roles publish: named in the topic policy and granted on its side. */
  allowPublisher(role: iam.IRole, sid: string): void {
    this.namePublisher(role, sid);
    this.topic.grantPublish(role);
  }

  /**
   * Names in the topic policy a role whose own side is already granted by its construct (a Step
   * Functions SnsPublish task, with the key's actions narrowed there): the policy still lists every
   * publisher, and no broader grant is added to the role.
   */
  namePublisher(role: iam.IRole, sid: string): void {
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({ sid, principals: [new iam.ArnPrincipal(role.roleArn)], actions: ['sns:Publish'], resources: [this.topic.topicArn] }),
    );
  }

  /**
   * Makes the topic the target of one EventBridge rule of this account: only that rule (by ARN)
   * may publish through EventBridge.
   */
  addRuleTarget(rule: events.Rule, message: events.RuleTargetInput, sid: string, deadLetterQueue: sqs.IQueue): void {
    const topic = this.topic;
    // Not targets.SnsTopic: its grant lets events.amazonaws.com publish with no source condition.
    rule.addTarget({
      bind: () => ({ arn: topic.topicArn, input: message, deadLetterConfig: { arn: deadLetterQueue.queueArn }, retryPolicy: { maximumRetryAttempts: 185, maximumEventAgeInSeconds: 86400 } }),
    });
    deadLetterQueue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: `${sid}DeadLetters`,
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [deadLetterQueue.queueArn],
        conditions: { ArnEquals: { 'aws:SourceArn': rule.ruleArn } },
      }),
    );
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid,
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account }, ArnEquals: { 'aws:SourceArn': rule.ruleArn } },
      }),
    );
  }
}

function subscriptionOf(subscription: HumanSubscription, deadLetterQueue: sqs.IQueue): sns.ITopicSubscription {
  switch (subscription.protocol) {
    case 'email':
      return new subs.EmailSubscription(subscription.endpoint, { deadLetterQueue });
    case 'sms':
      // Not subs.SmsSubscription: it drops the dead-letter queue.
      return { bind: () => ({ subscriberId: subscription.endpoint, endpoint: subscription.endpoint, protocol: sns.SubscriptionProtocol.SMS, deadLetterQueue }) };
    case 'https':
      return new subs.UrlSubscription(subscription.endpoint, { protocol: sns.SubscriptionProtocol.HTTPS, deadLetterQueue });
  }
}
