import Foundation
import Prometheus
import SigilCore

/// The server's Prometheus metrics, on a registry of its own (so several servers in one test process do not mix).
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let issuanceDuration: DurationHistogram
    let issued: Counter
    let tokenCacheHits: Gauge
    let tokenCacheMisses: Gauge
    let deniedUnaudited: Counter
    let rejectedAuthorities: Gauge

    init() {
        issuanceDuration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "sigil", metricName: "issuance_duration", unitName: "seconds",
                helpText: "Time from request to issued certificate, durable records included."),
            buckets: [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
            ])
        issued = registry.makeCounter(
            descriptor: Self.name("certificates_issued", "total", "Leaf certificates issued."))
        tokenCacheHits = registry.makeGauge(
            descriptor: Self.name("token_cache_hits", nil, "Token validations answered from the cache."))
        tokenCacheMisses = registry.makeGauge(
            descriptor: Self.name("token_cache_misses", nil, "Token validations that checked a signature."))
        deniedUnaudited = registry.makeCounter(
            descriptor: Self.name(
                "audit_denials_suppressed", "total",
                "Unauthenticated denials over the audit budget: counted and summarised, not recorded one by one."))
        rejectedAuthorities = registry.makeGauge(
            descriptor: Self.name(
                "authority_rows_rejected", nil,
                "Authority rows in the store that fail their integrity check and are ignored."))
    }

    static func name(_ metric: String, _ unit: String?, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "sigil", metricName: metric, unitName: unit ?? "", helpText: help)
    }

    func request(route: String, status: Int) {
        registry.makeCounter(
            descriptor: Self.name("http_requests", "total", "HTTP requests by route and status code."),
            labels: [("route", route), ("code", String(status))]
        ).increment()
    }

    func denied(_ code: CAError.Code) {
        registry.makeCounter(
            descriptor: Self.name("certificates_denied", "total", "Issuance requests refused, by code."),
            labels: [("reason", code.rawValue)]
        ).increment()
    }

    func authorityExpiry(_ records: [AuthorityRecord], at now: Date) {
        for record in records where record.state == .active || record.state == .prepared {
            registry.makeGauge(
                descriptor: Self.name(
                    "authority_seconds_until_expiry", nil, "Seconds until each authority's certificate expires."),
                labels: [("role", record.role.rawValue), ("state", record.state.rawValue), ("id", record.id)]
            ).set(to: record.notAfter.timeIntervalSince(now))
        }
    }
}
