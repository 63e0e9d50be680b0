import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';

/** The service's Prometheus metrics, one registry per process context. */
export class Metrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'billing_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  readonly outcomes = new Counter({
    name: 'billing_gateway_outcomes_total',
    help:
      'Answers to the gateway by operation and outcome (free, balance, insufficient_balance, duplicate, ...; ' +
      'unavailable: batch items and DeductStream messages that met an outage or were not tried after one)',
    labelNames: ['op', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly jobDuration = new Histogram({
    name: 'billing_job_duration_seconds',
    help: 'BullMQ job run time by job name and result',
    labelNames: ['job', 'result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    registers: [this.registry],
  });

  readonly persistenceLag = new Histogram({
    name: 'billing_persistence_lag_seconds',
    help: 'From a change accepted in Redis to its commit in MySQL (oldest change of each batch)',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly reconciliationMismatches = new Counter({
    name: 'billing_reconciliation_mismatches_total',
    help: 'Mismatches found by reconciliation, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'billing_dead_letters_total',
    help: 'Changes MySQL refused even alone, parked for an operator (GET /admin/v1/dead-letters)',
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: 'billing_queue_jobs',
    help: 'Jobs per queue and state, read at scrape time',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
  });

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'billing_' });
  }
}
