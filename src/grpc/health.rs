//! `grpc.health.v1.Health`, following the replica's readiness: `""` and jeton's two services
//! are `SERVING` only while the database answers — a host that holds every acknowledged
//! change, which during a failover is a synchronous standby: the replica validates tokens,
//! so load balancers keep it — and no shutdown has begun; `writes` is `SERVING` while,
//! besides, a database host takes writes (not during a failover); `liveness` is `SERVING`
//! for as long as the process serves at all (for a liveness probe that must not restart a
//! replica whose database is away).

use crate::background::Task;
use crate::readiness::State;
use crate::store::Roles;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health entry that only says the process is alive.
pub(crate) const LIVENESS: &str = "liveness";

/// The health entry that says whether writes can be made now.
pub(crate) const WRITES: &str = "writes";

/// The entries that follow readiness.
const READY: [&str; 3] = ["", "jeton.v1.TokenService", "jeton.v1.DirectoryService"];

/// Keeps `reporter` in step with `readiness` and the database hosts' `roles` until stopped.
pub(crate) fn start_reporting(
    reporter: HealthReporter,
    mut readiness: watch::Receiver<State>,
    mut roles: watch::Receiver<Roles>,
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
            let writable = serving && roles.borrow_and_update().primary.is_some();
            let writes = if writable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(WRITES, writes).await;
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = readiness.changed() => if changed.is_err() { break },
                changed = roles.changed() => if changed.is_err() { break },
            }
        }
    })
}
