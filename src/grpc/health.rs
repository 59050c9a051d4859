//! `grpc.health.v1.Health`, following the replica's readiness: `""` and jeton's two services
//! are `SERVING` only while the database answers and no shutdown has begun; `liveness` is
//! `SERVING` for as long as the process serves at all (for a liveness probe that must not
//! restart a replica whose database is away).

use crate::background::Task;
use crate::readiness::State;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health entry that only says the process is alive.
pub(crate) const LIVENESS: &str = "liveness";

/// The entries that follow readiness.
const READY: [&str; 3] = ["", "jeton.v1.TokenService", "jeton.v1.DirectoryService"];

/// Keeps `reporter` in step with `readiness` until stopped.
pub(crate) fn start_reporting(
    reporter: HealthReporter,
    mut readiness: watch::Receiver<State>,
) -> Task {
    Task::spawn("health reporter", move |mut stop| async move {
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        loop {
            let serving = *readiness.borrow_and_update() == State::Serving;
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in READY {
                reporter.set_service_status(service, status).await;
            }
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = readiness.changed() => if changed.is_err() { break },
            }
        }
    })
}
