import { SSMClient } from '@aws-sdk/client-ssm';
import { serviceNow } from '../shared/clock-offset';
import { OperatorError } from '../shared/errors';
import { utcMinute } from '../shared/format';
import { KillswitchReading, KillswitchWriteResult, readKillswitch, writeKillswitch } from './core';
import { isExpired, KillswitchValue, parseEnableMode, parseExpires, parseReason } from './value';

/** One killswitch command, as the CLI and the Slack slash command both express it. */
export type KillswitchCommand =
  | { readonly action: 'status' }
  | { readonly action: 'enable'; readonly mode?: string; readonly reason?: string; readonly expires?: string }
  | { readonly action: 'disable'; readonly reason?: string };

export type KillswitchCommandResult =
  | { readonly action: 'status'; readonly reading: KillswitchReading }
  | { readonly action: 'enable' | 'disable'; readonly write: KillswitchWriteResult }
  /** The parameter already held what was asked: nothing was written (`line` says so, for every caller alike). */
  | { readonly action: 'enable' | 'disable'; readonly unchanged: KillswitchReading; readonly line: string };

export interface CommandDeps {
  readonly ssm: SSMClient;
  readonly parameterName: string;
  /** Who acts (STS caller ARN, Slack user): resolved only once the inputs are valid. */
  readonly resolveActor: () => Promise<string>;
  /** Default: SSM's clock as of the read before the write (see runKillswitchCommand). */
  readonly now?: () => Date;
  /** What fixes a parameter that does not exist, for this caller's user. @default MISSING_PARAMETER_FIX.function (Slack) */
  readonly missingParameterFix?: string;
  /**
   * The CLI's "are you sure?": asked once the value is read and the request would change it, so a
   * request for what the parameter already holds is answered without a question; throws to write
   * nothing. @default - none (the slash command typed in Slack is its own confirmation)
   */
  readonly confirm?: () => Promise<void>;
}

/**
 * The shared core of the CLI and ChatOps: validates every input BEFORE any AWS call, so a bad
 * mode, a missing reason or a malformed duration writes nothing.
 */
export async function runKillswitchCommand(deps: CommandDeps, command: KillswitchCommand): Promise<KillswitchCommandResult> {
  // `--expires 30m` means 30 minutes from now by AWS's clock, which the expiry schedule and the
  // readers keep: a laptop's clock off by minutes (no NTP, a VM resumed) would write an expiry
  // already past (the API reopened at once) or later than asked. The read before the write gives
  // the SDK SSM's clock (systemClockOffset), so the time is taken from it: exact to about a second,
  // and the on-call is never stopped from enabling maintenance on a worst day because of a clock,
  // as a refusal would (which, with a tolerance, would also still let a smaller skew through).
  const now = deps.now ?? (() => serviceNow(deps.ssm));
  switch (command.action) {
    case 'status':
      return { action: 'status', reading: await readKillswitch(deps.ssm, deps.parameterName, deps.missingParameterFix) };
    case 'enable': {
      const mode = parseEnableMode(command.mode);
      const reason = parseReason(command.reason, true) as string;
      const expiresInSeconds = command.expires === undefined ? undefined : parseExpires(command.expires);
      const [actor, previous] = await actorAndReading(deps);
      // The mode in effect to re-enable, and the expiry written, as of `at`: one instant for
      // updatedAt and the expiry, so "2h" is exactly two hours after the change.
      const heldAt = (at: Date) => (previous.value && previous.value.mode === mode && !isExpired(previous.value, at.getTime()) ? previous.value : null);
      // Without --expires, re-enabling the mode in effect (to change its reason) keeps its expiry:
      // one set on purpose must not vanish unseen, leaving the mode on until someone disables it.
      const expiresAtAt = (at: Date): Date | null => {
        const held = heldAt(at);
        if (expiresInSeconds === undefined) return held?.expiresAt ? new Date(held.expiresAt) : null;
        return expiresInSeconds === null ? null : new Date(at.getTime() + expiresInSeconds * 1000);
      };
      let at = now();
      const held = heldAt(at);
      const expiresAt = expiresAtAt(at);
      if (held && held.reason === reason && (held.expiresAt === null ? expiresAt === null : Date.parse(held.expiresAt) === expiresAt?.getTime())) {
        return unchanged('enable', previous, held);
      }
      if (deps.confirm) {
        await deps.confirm();
        // Counted from the answer, not the read: "30m" after a minute at the prompt is still 30 min,
        // and a mode that expired meanwhile has no expiry left to keep.
        at = now();
      }
      const write = await writeKillswitch(
        { ssm: deps.ssm, now: () => at },
        { parameterName: deps.parameterName, mode, reason, actor, expiresAt: expiresAtAt(at) },
        previous,
      );
      return { action: 'enable', write };
    }
    case 'disable': {
      const reason = parseReason(command.reason, false) ?? 'disabled';
      const [actor, previous] = await actorAndReading(deps);
      // An expired mode still needs this write (its edge rule stays until the value says normal).
      if (previous.value?.mode === 'normal') return unchanged('disable', previous, previous.value);
      await deps.confirm?.();
      const write = await writeKillswitch(
        { ssm: deps.ssm, now },
        { parameterName: deps.parameterName, mode: 'normal', reason, actor, expiresAt: null },
        previous,
      );
      return { action: 'disable', write };
    }
    default:
      throw new OperatorError(`killswitch: unknown action: use status, enable or disable`, 2);
  }
}

/**
 * A request for what the parameter already holds writes nothing: every write is a new version, a
 * notification to the incidents topic and an event, which would announce a change that is none.
 */
function unchanged(action: 'enable' | 'disable', reading: KillswitchReading, held: KillswitchValue): KillswitchCommandResult {
  const until = held.expiresAt ? `, until ${utcMinute(Date.parse(held.expiresAt))}` : '';
  return { action, unchanged: reading, line: `killswitch already ${held.mode} (since ${utcMinute(Date.parse(held.updatedAt))}, by ${held.actor}${until}): nothing changed` };
}

/**
 * Who acts and the value before the write, asked at the same time: neither needs the other, and
 * with AWS silent the CLI's actor lookup (STS, about 6 s before it falls back to $USER) and the
 * SSM read (about 9 s) one after the other kept the on-call waiting for both before the line.
 */
function actorAndReading(deps: CommandDeps): Promise<[string, KillswitchReading]> {
  return Promise.all([deps.resolveActor(), readKillswitch(deps.ssm, deps.parameterName, deps.missingParameterFix)]);
}
