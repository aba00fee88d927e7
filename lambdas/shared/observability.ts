import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';

import { METRICS_NAMESPACE } from './constants';

/** Powertools instances for one concern; service name from POWERTOOLS_SERVICE_NAME in Lambda. */
export function observability(serviceName: string): { logger: Logger; metrics: Metrics; tracer: Tracer } {
  return {
    logger: new Logger({ serviceName }),
    metrics: new Metrics({ namespace: METRICS_NAMESPACE, serviceName }),
    tracer: new Tracer({ serviceName }),
  };
}
