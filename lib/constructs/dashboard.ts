import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';

/** One graph of the dashboard. */
export interface DashboardGraph {
  readonly title: string;
  readonly metrics: readonly cloudwatch.IMetric[];
  /** Horizontal annotations (objectives, thresholds). @default - none */
  readonly annotations?: readonly cloudwatch.HorizontalAnnotation[];
}

export interface OpsDashboardProps {
  /** Environment name, in the dashboard name. */
  readonly environmentName: string;
  /** Every runbook alarm, shown as one status grid at the top. */
  readonly alarms: readonly cloudwatch.IAlarm[];
  /** Graphs, two per row, in this order. */
  readonly graphs: readonly DashboardGraph[];
  /** Default time range. @default Duration.days(2) */
  readonly defaultRange?: Duration;
}

/**
 * The on-call dashboard: the status of every runbook alarm first (what is on fire), then the
 * graphs an engineer checks in the runbook's first five minutes (killswitch mode, backups, restore tests).
 */
export class OpsDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: OpsDashboardProps) {
    super(scope, id);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `atmr-dr-${props.environmentName}`,
      defaultInterval: props.defaultRange ?? Duration.days(2),
    });
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Runbook alarms', alarms: [...props.alarms], width: 24 }),
    );
    const widgets = props.graphs.map(
      (graph) =>
        new cloudwatch.GraphWidget({
          title: graph.title,
          left: [...graph.metrics],
          leftAnnotations: graph.annotations ? [...graph.annotations] : undefined,
          width: 12,
        }),
    );
    for (let i = 0; i < widgets.length; i += 2) this.dashboard.addWidgets(...widgets.slice(i, i + 2));
  }
}
