import Prometheus

/// The Prometheus series `GET /metrics` serves. A registry of its own (not the global MetricsSystem,
/// which can be bootstrapped once per process) so several servers can live in one test process.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let queueLength: Gauge
    let running: Gauge
    let generationSeconds: ValueHistogram

    init() {
        queueLength = registry.makeGauge(name: "sd_queue_length", help: "Generation jobs waiting behind the running one.")
        running = registry.makeGauge(name: "sd_jobs_running", help: "Generation jobs running (0 or 1).")
        generationSeconds = registry.makeValueHistogram(name: "sd_generation_seconds",
                                                        buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
                                                        help: "Seconds a job ran (queue wait excluded).")
        for outcome in Outcome.allCases { _ = jobs(outcome) }
    }

    enum Outcome: String, CaseIterable { case done, failed, cancelled, rejected }

    /// sd_jobs_total{outcome="done|failed|cancelled|rejected"}; rejected: refused with a full queue.
    func jobs(_ outcome: Outcome) -> Counter {
        registry.makeCounter(name: "sd_jobs_total", labels: [("outcome", outcome.rawValue)], help: "Generation jobs by how they ended.")
    }

    func request(status: Int) {
        registry.makeCounter(name: "sd_http_requests_total", labels: [("status", String(status))], help: "HTTP requests by status.").increment()
    }

    var text: [UInt8] { registry.emitToBuffer() }
}
