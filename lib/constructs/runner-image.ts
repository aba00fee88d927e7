import { IgnoreMode } from 'aws-cdk-lib';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as path from 'node:path';
import { RUNNER_TASK_ROOT } from '../../lambdas/backup/runner-contract';
import { REPO_ROOT } from './house-function';

/**
 * The runner image: ONE arm64 container image built from `lambdas/backup/Dockerfile`
 * with the repository root as context, holding pg_dump/pg_restore/psql of the server's major
 * version. The backup runner, its Fargate variant and the restore test all use the same asset;
 * only the command differs. At synth the asset is staged, never built (no Docker needed).
 */

/** Handlers bundled into the image (esbuild step of the Dockerfile). */
export type RunnerImageHandler = 'backup.handler' | 'restore.handler';

export interface RunnerImageOptions {
  /**
   * PostgreSQL client major version installed in the image: pass `config.database.engineMajorVersion`.
   * @default 15 (the config default)
   */
  readonly pgMajorVersion?: number;
}

export const DEFAULT_PG_MAJOR_VERSION = 15;

/** Build context (repository root, filtered by the root `.dockerignore`). */
export const RUNNER_IMAGE_DIRECTORY = REPO_ROOT;
/** Dockerfile, relative to the build context. */
export const RUNNER_IMAGE_DOCKERFILE = path.join('lambdas', 'backup', 'Dockerfile');

/**
 * Asset settings shared by every user of the image. Identical settings give the identical asset
 * hash, so Lambda functions and the ECS task definition reference one staged asset and one ECR image.
 */
export function runnerImageAssetOptions(options: RunnerImageOptions = {}): ecrAssets.DockerImageAssetOptions {
  return {
    file: RUNNER_IMAGE_DOCKERFILE,
    platform: ecrAssets.Platform.LINUX_ARM64,
    buildArgs: { PG_MAJOR: String(options.pgMajorVersion ?? DEFAULT_PG_MAJOR_VERSION) },
    ignoreMode: IgnoreMode.DOCKER,
    // The CDK output directory and dependencies are never part of the context, even without .dockerignore.
    exclude: ['cdk.out', 'node_modules', '.git'],
  };
}

/** Lambda code for one of the image's handlers (same asset, different CMD). */
export function runnerImageCode(handler: RunnerImageHandler, options: RunnerImageOptions = {}): lambda.DockerImageCode {
  return lambda.DockerImageCode.fromImageAsset(RUNNER_IMAGE_DIRECTORY, { ...runnerImageAssetOptions(options), cmd: [handler] });
}

/** The same image for an ECS task definition (entry point set by the container definition). */
export function runnerContainerImage(options: RunnerImageOptions = {}): ecs.ContainerImage {
  return ecs.ContainerImage.fromAsset(RUNNER_IMAGE_DIRECTORY, runnerImageAssetOptions(options));
}

/** Entry point of the ECS backup task inside the image: `node /var/task/task.js`. */
export const RUNNER_TASK_ENTRY_POINT = ['node', `${RUNNER_TASK_ROOT}/task.js`];
