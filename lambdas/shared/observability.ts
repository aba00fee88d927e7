import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * Powertools instances for one concern; service name from POWERTOOLS_SERVICE_NAME in Lambda. The
 * metrics namespace is not given here: Powertools reads POWERTOOLS_METRICS_NAMESPACE, which the
 * constructs set to the environment's own (`metricsNamespace(<env>)`); a namespace passed here would
 * override it, and every environment would publish in the same one.
 */
export function observability(serviceName: string): { logger: Logger; metrics: Metrics; tracer: Tracer } {
  return {
    logger: new Logger({ serviceName }),
    metrics: new Metrics({ serviceName }),
    tracer: new Tracer({ serviceName }),
  };
}
