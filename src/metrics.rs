//! Prometheus metrics, recorded through the `metrics` crate and rendered by
//! `metrics-exporter-prometheus` on `--metrics-listen` (off by default).
//!
//! Every handle is registered once, when metrics are turned on, so that recording on the hot
//! path is an atomic add behind one `OnceLock` load; with metrics off nothing is recorded at
//! all. Labels take values from fixed lists only (methods, status codes, namespaces,
//! reasons, outcomes): never a token, a secret, a tenant-chosen string or a principal id.
//! Values that are cheap to read but costly to count (cache entries, pool connections,
//! pending last-use times) are read when Prometheus scrapes.

use crate::domain::{Namespace, Reason, Spelled};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// gRPC methods with metrics of their own; anything else is counted as "other".
pub(crate) const METHODS: &[&str] = &[
    "jeton.v1.TokenService/Generate",
    "jeton.v1.TokenService/List",
    "jeton.v1.TokenService/Revoke",
    "jeton.v1.TokenService/Validate",
    "jeton.v1.TokenService/RevokeLeaked",
    "jeton.v1.DirectoryService/PutPrincipal",
    "jeton.v1.DirectoryService/GetPrincipal",
    "jeton.v1.DirectoryService/ListPrincipals",
    "jeton.v1.DirectoryService/DeletePrincipal",
    "jeton.v1.DirectoryService/ActivateRole",
    "jeton.v1.DirectoryService/DeactivateRole",
    "jeton.v1.DirectoryService/GetTenant",
    "jeton.v1.DirectoryService/UpdateTenant",
    "jeton.v1.DirectoryService/ListAuditEvents",
    "jeton.v1.DirectoryService/WatchAuditEvents",
    "envoy.service.auth.v3.Authorization/Check",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "other",
];

/// gRPC status codes by number.
pub(crate) const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The outcome label of a good validation; the others are the reasons' lower-case names.
const VALID: &str = "valid";

/// How a cache lookup of a token id ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheLookup {
    Hit = 0,
    Stale = 1,
    Miss = 2,
    Absent = 3,
}

const LOOKUPS: [&str; 4] = ["hit", "stale", "miss", "absent"];

/// Latency buckets of calls, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

pub(crate) struct Handles {
    rpc: Vec<[Counter; 17]>,
    rpc_seconds: Vec<Histogram>,
    /// By namespace, then outcome, in the spelling tables' order.
    validations: Vec<Vec<Counter>>,
    cache: [Counter; 4],
    pub(crate) argon2_running: Gauge,
    pub(crate) argon2_waiting: Gauge,
    pub(crate) argon2_hashes: Counter,
    pub(crate) argon2_verifications: Counter,
    pub(crate) argon2_refused: Counter,
    pub(crate) paced: Counter,
    pub(crate) db_unavailable: Counter,
    pub(crate) db_errors: Counter,
    pub(crate) change_log_lag: Gauge,
    pub(crate) change_log_last_poll: Gauge,
    pub(crate) last_use_flush_seconds: Histogram,
    pub(crate) stale_answers: Counter,
    /// By [`crate::store::ReadWent`].
    pub(crate) read_host: [Counter; 3],
    pub(crate) refusals_dropped: Counter,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();
static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handles, when metrics are on.
#[inline]
pub(crate) fn get() -> Option<&'static Handles> {
    HANDLES.get()
}

/// Turns metrics on for this process (once; later calls return the same recorder).
pub(crate) fn install() -> Result<&'static PrometheusHandle, String> {
    if let Some(h) = RECORDER.get() {
        return Ok(h);
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    let _ = RECORDER.set(handle);
    let _ = HANDLES.set(register());
    RECORDER
        .get()
        .ok_or_else(|| "metrics recorder lost".to_owned())
}

fn register() -> Handles {
    metrics::describe_counter!(
        "jeton_rpc_requests_total",
        "gRPC calls by method and status code"
    );
    metrics::describe_histogram!("jeton_rpc_duration_seconds", "gRPC call latency by method");
    metrics::describe_counter!(
        "jeton_validations_total",
        "token validations by namespace and outcome (valid or the reason)"
    );
    metrics::describe_counter!(
        "jeton_cache_lookups_total",
        "validation cache lookups by result"
    );
    metrics::describe_gauge!("jeton_cache_entries", "entries of the validation caches");
    metrics::describe_gauge!("jeton_argon2_running", "Argon2 computations running");
    metrics::describe_gauge!(
        "jeton_argon2_waiting",
        "Argon2 computations waiting for a slot"
    );
    metrics::describe_counter!(
        "jeton_argon2_computations_total",
        "Argon2 computations by kind"
    );
    metrics::describe_counter!(
        "jeton_argon2_refused_total",
        "calls refused because the Argon2 queue was full (RESOURCE_EXHAUSTED)"
    );
    metrics::describe_counter!(
        "jeton_validations_paced_total",
        "answers that found no token and waited because more than 1000 a second were given"
    );
    metrics::describe_gauge!(
        "jeton_db_pool_connections",
        "database pool connections by state"
    );
    metrics::describe_gauge!(
        "jeton_db_pool_waiting",
        "database operations waiting for a pool connection"
    );
    metrics::describe_counter!("jeton_db_errors_total", "database errors by kind");
    metrics::describe_gauge!(
        "jeton_change_log_lag_seconds",
        "age of the oldest change applied by the last poll of the change log"
    );
    metrics::describe_gauge!(
        "jeton_change_log_last_poll_timestamp_seconds",
        "when the change log was last read successfully (Unix time)"
    );
    metrics::describe_gauge!(
        "jeton_last_use_pending",
        "last-use times waiting to be written"
    );
    metrics::describe_histogram!(
        "jeton_last_use_flush_duration_seconds",
        "last-use flush duration"
    );
    metrics::describe_gauge!(
        "jeton_build_info",
        "always 1; the label version is the running jeton's version"
    );
    metrics::describe_gauge!(
        "jeton_database_up",
        "1 while the database answers with jeton's schema"
    );
    metrics::describe_gauge!(
        "jeton_database_writable",
        "1 while a database host takes writes (0 during a failover: Validate goes on from a synchronous standby)"
    );
    metrics::describe_counter!(
        "jeton_stale_answers_total",
        "validations answered from the cache past its trust window because no database host answered (--stale-if-error)"
    );
    metrics::describe_counter!(
        "jeton_database_reads_total",
        "reads meant for the --database-read-url host, by where they went (it, or the primary because it was behind or away)"
    );
    metrics::describe_counter!(
        "jeton_refusals_dropped_total",
        "refused uses of tokens not recorded in the audit trail because too many came at once"
    );
    gauge!("jeton_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Handles {
        rpc: METHODS
            .iter()
            .map(|m| {
                CODES.map(|c| counter!("jeton_rpc_requests_total", "method" => *m, "code" => c))
            })
            .collect(),
        rpc_seconds: METHODS
            .iter()
            .map(|m| histogram!("jeton_rpc_duration_seconds", "method" => *m))
            .collect(),
        validations: Namespace::ALL
            .iter()
            .map(|ns| {
                std::iter::once(VALID)
                    .chain(Reason::ALL.iter().map(|r| r.lower_name()))
                    .map(|o| {
                        counter!("jeton_validations_total", "namespace" => ns.lower_name(), "outcome" => o)
                    })
                    .collect()
            })
            .collect(),
        cache: LOOKUPS.map(|r| counter!("jeton_cache_lookups_total", "result" => r)),
        argon2_running: gauge!("jeton_argon2_running"),
        argon2_waiting: gauge!("jeton_argon2_waiting"),
        argon2_hashes: counter!("jeton_argon2_computations_total", "kind" => "hash"),
        argon2_verifications: counter!("jeton_argon2_computations_total", "kind" => "verify"),
        argon2_refused: counter!("jeton_argon2_refused_total"),
        paced: counter!("jeton_validations_paced_total"),
        db_unavailable: counter!("jeton_db_errors_total", "kind" => "unavailable"),
        db_errors: counter!("jeton_db_errors_total", "kind" => "other"),
        change_log_lag: gauge!("jeton_change_log_lag_seconds"),
        change_log_last_poll: gauge!("jeton_change_log_last_poll_timestamp_seconds"),
        last_use_flush_seconds: histogram!("jeton_last_use_flush_duration_seconds"),
        stale_answers: counter!("jeton_stale_answers_total"),
        read_host: crate::store::ReadWent::LABELS
            .map(|h| counter!("jeton_database_reads_total", "host" => h)),
        refusals_dropped: counter!("jeton_refusals_dropped_total"),
    }
}

/// Index of a gRPC method path in [`METHODS`] ("other" when unknown).
pub(crate) fn method_index(path: &str) -> usize {
    let name = path.strip_prefix('/').unwrap_or(path);
    METHODS
        .iter()
        .position(|m| *m == name)
        .unwrap_or(METHODS.len() - 1)
}

impl Handles {
    /// A finished gRPC call.
    pub(crate) fn rpc(&self, method: usize, code: usize, took: Duration) {
        if let (Some(codes), Some(h)) = (self.rpc.get(method), self.rpc_seconds.get(method)) {
            codes[code.min(16)].increment(1);
            h.record(took.as_secs_f64());
        }
    }

    /// A validation asked in namespace `ns`, and its outcome.
    pub(crate) fn validation(&self, ns: Namespace, outcome: Result<(), Reason>) {
        // Label values in the spelling tables' order: "valid", then each reason.
        let ns = Namespace::ALL.iter().position(|n| *n == ns);
        let outcome = match outcome {
            Ok(()) => Some(0),
            Err(r) => Reason::ALL.iter().position(|x| *x == r).map(|i| i + 1),
        };
        if let Some(c) = ns
            .zip(outcome)
            .and_then(|(ns, o)| self.validations.get(ns)?.get(o))
        {
            c.increment(1);
        }
    }

    pub(crate) fn cache_lookup(&self, result: CacheLookup) {
        self.cache[result as usize].increment(1);
    }
}

/// Values read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub cache_tokens: u64,
    pub cache_absent: u64,
    pub cache_principals: u64,
    pub pool_in_use: u32,
    pub pool_idle: u32,
    pub pool_waiting: u32,
    pub last_use_pending: usize,
    pub database_up: bool,
    pub database_writable: bool,
}

/// Renders the metrics, with the scrape-time values of `snapshot`.
pub(crate) fn render(recorder: &PrometheusHandle, snapshot: &Snapshot) -> String {
    gauge!("jeton_cache_entries", "cache" => "tokens").set(snapshot.cache_tokens as f64);
    gauge!("jeton_cache_entries", "cache" => "absent").set(snapshot.cache_absent as f64);
    gauge!("jeton_cache_entries", "cache" => "principals").set(snapshot.cache_principals as f64);
    gauge!("jeton_db_pool_connections", "state" => "in_use").set(f64::from(snapshot.pool_in_use));
    gauge!("jeton_db_pool_connections", "state" => "idle").set(f64::from(snapshot.pool_idle));
    gauge!("jeton_db_pool_waiting").set(f64::from(snapshot.pool_waiting));
    gauge!("jeton_last_use_pending").set(snapshot.last_use_pending as f64);
    gauge!("jeton_database_up").set(if snapshot.database_up { 1.0 } else { 0.0 });
    gauge!("jeton_database_writable").set(if snapshot.database_writable { 1.0 } else { 0.0 });
    recorder.render()
}

/// Keeps histograms from growing between scrapes.
pub(crate) fn upkeep(recorder: &'static PrometheusHandle) -> crate::background::Task {
    crate::background::Task::every("metrics upkeep", Duration::from_secs(5), move || {
        recorder.run_upkeep();
        std::future::ready(())
    })
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// `promtool check metrics` warns about a family without `# HELP`: every family
    /// registered here has one.
    #[test]
    fn every_registered_metric_has_help_text() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            super::register();
        });
        let text = handle.render();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.contains(&"jeton_build_info"), "{text}");
        for family in families {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} has no help text:\n{text}"
            );
        }
    }
}
