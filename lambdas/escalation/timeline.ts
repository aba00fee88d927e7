import { formatSeconds, isoSecond } from '../shared/format';
import { Incident, levelsPaged, runbookOf, TimelineEntry } from './model';

const LABEL: Record<TimelineEntry['kind'], string> = {
  state: 'Alarm state',
  page: 'Page',
  'page-failed': 'Page FAILED',
  reminder: 'Reminder',
  ack: 'Acknowledgement',
  action: 'Automated action',
  resolved: 'Resolution',
  note: 'Note',
};

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\s+/g, ' ').trim();

/** The incident as Markdown, ready to paste into the post-mortem (runbook: within 24 hours). */
export function timelineMarkdown(incident: Incident, entries: readonly TimelineEntry[]): string {
  const { section, link } = runbookOf(incident.alarmDescription);
  // A page step stopped between its publish and its record, whose record the table refused, or whose
  // publish's outcome is unknown (a timeout: SNS may have delivered it), left its page's intent (model.ts `pageIntents`): its level may have been paged, and was told of the resolution.
  const possibly = levelsPaged(incident, undefined).filter((level) => !incident.pagedLevels.includes(level));
  const lines = [
    `## Incident ${incident.id}: ${incident.alarmName}`,
    '',
    `- Opened: ${isoSecond(incident.openedAt)}`,
    `- Status: ${incident.status}`,
    ...(section ? [`- Runbook section: ${section}${link ? ` (${link})` : ''}`] : []),
    `- Levels paged: ${incident.pagedLevels.length > 0 ? incident.pagedLevels.join(', ') : 'none'}${possibly.length > 0 ? `; possibly paged, not recorded: ${possibly.join(', ')}` : ''}`,
    `- Acknowledged: ${incident.ack ? `${isoSecond(incident.ack.at)} by ${incident.ack.by} (${incident.ack.via})` : 'no'}`,
    `- Resolved: ${incident.resolution ? `${isoSecond(incident.resolution.at)}, ${incident.resolution.how}, by ${incident.resolution.by} (${incident.resolution.via})${incident.resolution.note ? `; note: ${incident.resolution.note}` : ''}` : 'no'}`,
    ...(incident.ack ? [`- Time to acknowledge: ${duration(incident.openedAt, incident.ack.at)}`] : []),
    ...(incident.resolution ? [`- Time to resolve: ${duration(incident.openedAt, incident.resolution.at)}`] : []),
    '',
    '| Time (UTC) | What | Detail |',
    '| --- | --- | --- |',
    ...entries.map((e) => `| ${isoSecond(e.at)} | ${LABEL[e.kind]}${e.level !== undefined ? ` (level ${e.level})` : ''} | ${cell(e.text)} |`),
    '',
  ];
  return lines.join('\n');
}

/** "50 s", "7 h 01 min": to the second (a 50 s acknowledgement is not "1 min"). */
function duration(from: string, to: string): string {
  return formatSeconds(Math.round((Date.parse(to) - Date.parse(from)) / 1000));
}
