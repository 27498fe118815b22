// Activity failures lifted to the workflow with the step's name, so the UI and CLI show one clear line.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** The stable type (workflows/errors.ts) of an activity's ApplicationFailure, if it has one. */
export function failureType(err: unknown): string | undefined {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause.type ?? undefined : undefined;
}

export function stepFailure(what: string, err: unknown): unknown {
  if (!(err instanceof ActivityFailure)) return err;
  const cause = err.cause instanceof Error ? err.cause : undefined;
  return ApplicationFailure.create({
    message: `${what} failed: ${cause?.message ?? err.message}`,
    type: failureType(err) ?? 'ActivityFailed',
    nonRetryable: true,
    cause: err,
  });
}

/** Runs one step; its activity failure becomes a non-retryable workflow failure naming the step. */
export async function runStep<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw stepFailure(what, err);
  }
}
