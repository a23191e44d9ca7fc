import Prometheus

/// The Prometheus series `GET /metrics` serves. A registry of its own (not the global MetricsSystem,
/// which can be bootstrapped once per process) so several servers can live in one test process.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let queueLength: Gauge
    let running: Gauge
    let generationSeconds: ValueHistogram
    let openConnections: Gauge
    let refusedConnections: Counter
    // The shared queue's (`--queue`); zero without one.
    let leaseExpiries: Counter
    let retries: Counter
    let workersAlive: Gauge
    let claimWaitSeconds: ValueHistogram

    init() {
        queueLength = registry.makeGauge(descriptor: Self.name("queue_length", help: "Generation jobs waiting behind the running one."))
        running = registry.makeGauge(descriptor: Self.name("jobs_running", help: "Generation jobs running (0 or 1)."))
        generationSeconds = registry.makeValueHistogram(descriptor: Self.name("generation", unit: "seconds",
                                                                              help: "Seconds a job ran (queue wait excluded)."),
                                                        buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600])
        openConnections = registry.makeGauge(descriptor: Self.name("open_connections", help: "HTTP connections open now."))
        refusedConnections = registry.makeCounter(descriptor: Self.name("connections_refused", unit: "total",
                                                                        help: "Connections answered 503 and closed: --max-connections were open."))
        leaseExpiries = registry.makeCounter(descriptor: Self.name("queue_lease_expiries", unit: "total",
                                                                   help: "Running jobs whose worker stopped renewing its lease."))
        retries = registry.makeCounter(descriptor: Self.name("queue_retries", unit: "total", help: "Jobs requeued after a lease expired."))
        workersAlive = registry.makeGauge(descriptor: Self.name("queue_workers_alive", help: "Workers with a recent heartbeat."))
        claimWaitSeconds = registry.makeValueHistogram(descriptor: Self.name("queue_claim_wait", unit: "seconds",
                                                                             help: "Seconds from a job's submission to its claim by a worker."),
                                                       buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600])
        for outcome in Outcome.allCases { _ = jobs(outcome) }
    }

    enum Outcome: String, CaseIterable { case done, failed, cancelled, rejected }

    /// sd_jobs_total{outcome="done|failed|cancelled|rejected"}; rejected: refused with a full queue.
    func jobs(_ outcome: Outcome) -> Counter {
        registry.makeCounter(descriptor: Self.name("jobs", unit: "total", help: "Generation jobs by how they ended."),
                             labels: [("outcome", outcome.rawValue)])
    }

    /// sd_queue_jobs{state=...}: the shared queue's jobs by state.
    func jobsInState(_ state: String) -> Gauge {
        registry.makeGauge(descriptor: Self.name("queue_jobs", help: "The shared queue's jobs by state."), labels: [("state", state)])
    }

    /// sd_queue_depth{model=...}: jobs waiting in the shared queue for each model.
    func queueDepth(model: String) -> Gauge {
        registry.makeGauge(descriptor: Self.name("queue_depth", help: "Jobs waiting in the shared queue, by model."), labels: [("model", model)])
    }

    func request(status: Int) {
        registry.makeCounter(descriptor: Self.name("http_requests", unit: "total", help: "HTTP requests by status."),
                             labels: [("status", String(status))]).increment()
    }

    var text: [UInt8] { registry.emitToBuffer() }

    /// `sd_<metric>[_<unit>]`.
    private static func name(_ metric: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "sd", metricName: metric, unitName: unit, helpText: help)
    }
}
