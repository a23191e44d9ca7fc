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

    init() {
        queueLength = registry.makeGauge(descriptor: Self.name("queue_length", help: "Generation jobs waiting behind the running one."))
        running = registry.makeGauge(descriptor: Self.name("jobs_running", help: "Generation jobs running (0 or 1)."))
        generationSeconds = registry.makeValueHistogram(descriptor: Self.name("generation", unit: "seconds",
                                                                              help: "Seconds a job ran (queue wait excluded)."),
                                                        buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600])
        openConnections = registry.makeGauge(descriptor: Self.name("open_connections", help: "HTTP connections open now."))
        refusedConnections = registry.makeCounter(descriptor: Self.name("connections_refused", unit: "total",
                                                                        help: "Connections answered 503 and closed: --max-connections were open."))
        for outcome in Outcome.allCases { _ = jobs(outcome) }
    }

    enum Outcome: String, CaseIterable { case done, failed, cancelled, rejected }

    /// sd_jobs_total{outcome="done|failed|cancelled|rejected"}; rejected: refused with a full queue.
    func jobs(_ outcome: Outcome) -> Counter {
        registry.makeCounter(descriptor: Self.name("jobs", unit: "total", help: "Generation jobs by how they ended."),
                             labels: [("outcome", outcome.rawValue)])
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
