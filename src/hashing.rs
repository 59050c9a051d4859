//! Argon2id hashing and verification of token secrets, off the async worker threads.
//!
//! Every computation runs on tokio's blocking pool, and at most `max_concurrent` run at
//! once; a caller that waits longer than `queue_timeout` for its turn is told to come back
//! later. Each slot has its Argon2 working memory (`m` KiB, 19 MiB by default), allocated
//! once and kept for the next computation in that slot, hash or verification: at most
//! `max_concurrent` buffers ever exist. (Allocating it per computation on tokio's blocking
//! threads let glibc's per-thread arenas keep the freed buffers: four clients looping
//! `Generate` held some 900 MiB.) Verifications for ids that recently failed one — the ids someone is guessing
//! secrets for — are [`Lane::Suspect`]: they share at most half of the slots (at least
//! one), and each keeps its place in that lane for [`SUSPECT_REST`] times as long as it
//! computed, so that suspect verifications use at most a quarter of those slots' time. A
//! flood of wrong secrets for a handful of real ids can neither hold every slot nor keep a
//! core busy, and other tokens' first validations and `Generate` go on. (An unknown id costs
//! no Argon2 at all: ids are public, see SECURITY.md.)

use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

/// After a suspect verification that took `d`, its place in the suspect lane stays taken
/// for another `SUSPECT_REST × d`: the lane computes at most 1 / (1 + SUSPECT_REST) of the
/// time.
const SUSPECT_REST: u32 = 3;

/// Argon2id cost and the bound on concurrent computations.
#[derive(Debug, Clone)]
pub(crate) struct HashSettings {
    pub(crate) memory_kib: u32,
    pub(crate) iterations: u32,
    pub(crate) parallelism: u32,
    pub(crate) max_concurrent: usize,
    pub(crate) queue_timeout: Duration,
}

/// The server-side secret mixed into every hash (Argon2's `secret` input). Never printed.
#[derive(Clone, Default)]
pub(crate) struct Pepper(Arc<Vec<u8>>);

impl Pepper {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Pepper(none)"
        } else {
            "Pepper(<redacted>)"
        })
    }
}

/// Which share of the Argon2 slots a verification may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Any slot.
    Normal,
    /// At most half of them, together with the other suspect verifications: for ids that
    /// recently failed a verification.
    Suspect,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    #[error("too many secret verifications in progress")]
    Busy,
    #[error("invalid Argon2 settings: {0}")]
    Settings(String),
    #[error("hashing failed: {0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Hasher {
    params: Params,
    pepper: Pepper,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// The share of the slots that suspect verifications may hold.
    suspects: Arc<Semaphore>,
    /// The slots' working memory.
    memory: Arc<Memory>,
    /// Verifications run so far (tests read it).
    verifications: Arc<std::sync::atomic::AtomicU64>,
    /// Time the suspect lane has spent computing, in nanoseconds (tests read it).
    suspect_computing: Arc<std::sync::atomic::AtomicU64>,
}

impl Hasher {
    pub(crate) fn new(settings: &HashSettings, pepper: Pepper) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Settings(e.to_string()))?;
        let slots = settings.max_concurrent.max(1);
        Ok(Self {
            params,
            pepper,
            permits: Arc::new(Semaphore::new(slots)),
            suspects: Arc::new(Semaphore::new((slots / 2).max(1))),
            memory: Arc::default(),
            queue_timeout: settings.queue_timeout,
            verifications: Arc::default(),
            suspect_computing: Arc::default(),
        })
    }

    /// Hashes a secret into a PHC string (with a fresh random salt).
    pub(crate) async fn hash(&self, secret: Vec<u8>) -> Result<String, HashError> {
        let (params, pepper) = (self.params.clone(), self.pepper.clone());
        if let Some(m) = crate::metrics::get() {
            m.argon2_hashes.increment(1);
        }
        self.run(Lane::Normal, move |memory| {
            hash_now(&params, &pepper, &secret, memory)
        })
        .await
    }

    /// Whether `secret` matches `phc`. The comparison inside is constant-time.
    pub(crate) async fn verify(
        &self,
        secret: Vec<u8>,
        phc: String,
        lane: Lane,
    ) -> Result<bool, HashError> {
        let pepper = self.pepper.clone();
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(m) = crate::metrics::get() {
            m.argon2_verifications.increment(1);
        }
        self.run(lane, move |memory| {
            verify_now(&pepper, &phc, &secret, memory)
        })
        .await
    }

    #[cfg(test)]
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `job` on the blocking pool in a slot of `lane`, with the slot's working memory.
    async fn run<T: Send + 'static>(
        &self,
        lane: Lane,
        job: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let metrics = crate::metrics::get();
        if let Some(m) = metrics {
            m.argon2_waiting.increment(1.0);
        }
        let permits = async {
            let share = match lane {
                Lane::Normal => None,
                Lane::Suspect => Some(self.suspects.clone().acquire_owned().await.ok()?),
            };
            let slot = self.permits.clone().acquire_owned().await.ok()?;
            Some((slot, share))
        };
        let permit = tokio::time::timeout(self.queue_timeout, permits)
            .await
            .ok()
            .flatten();
        if let Some(m) = metrics {
            m.argon2_waiting.decrement(1.0);
        }
        let Some(permit) = permit else {
            if let Some(m) = metrics {
                m.argon2_refused.increment(1);
            }
            return Err(HashError::Busy);
        };
        let (slot, share) = permit;
        let memory = self.memory.clone();
        let (out, took) = tokio::task::spawn_blocking(move || {
            // The buffer goes back before the slot: a computation that gets the slot next
            // finds it.
            let _slot = slot;
            let mut buffer = memory.take();
            if let Some(m) = metrics {
                m.argon2_running.increment(1.0);
            }
            let started = std::time::Instant::now();
            let out = job(&mut buffer);
            if let Some(m) = metrics {
                m.argon2_running.decrement(1.0);
            }
            memory.give(buffer);
            (out, started.elapsed())
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?;
        if let Some(share) = share {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.suspect_computing
                .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
            // The rest the suspect lane owes; the caller has its answer meanwhile.
            tokio::spawn(async move {
                tokio::time::sleep(took * SUSPECT_REST).await;
                drop(share);
            });
        }
        out
    }
}

/// Argon2's working memory, one buffer per slot: a computation takes a buffer when it has
/// its slot and gives it back before it releases the slot, so there are never more buffers
/// than slots, and each is allocated (and its pages faulted in) once rather than for every
/// computation. Reuse is safe: Argon2's first pass writes every block before any is read.
#[derive(Debug, Default)]
struct Memory {
    free: Mutex<Vec<Vec<Block>>>,
    /// Buffers allocated so far (tests read it).
    allocated: std::sync::atomic::AtomicUsize,
}

impl Memory {
    fn take(&self) -> Vec<Block> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        free.unwrap_or_else(|| {
            self.allocated
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Vec::new()
        })
    }

    fn give(&self, buffer: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}

/// The first `need` blocks of `buffer`, grown when it is smaller (a verification of a hash
/// made with a larger memory cost); never shrunk.
fn blocks(buffer: &mut Vec<Block>, need: usize) -> &mut [Block] {
    if buffer.len() < need {
        // Dropped before the larger one is allocated: one copy of the memory at a time.
        *buffer = Vec::new();
        *buffer = vec![Block::default(); need];
    }
    &mut buffer[..need]
}

fn argon(pepper: &Pepper, params: Params) -> Result<Argon2<'_>, HashError> {
    argon_with(pepper, Algorithm::Argon2id, Version::V0x13, params)
}

fn argon_with(
    pepper: &Pepper,
    algorithm: Algorithm,
    version: Version,
    params: Params,
) -> Result<Argon2<'_>, HashError> {
    if pepper.0.is_empty() {
        Ok(Argon2::new(algorithm, version, params))
    } else {
        Argon2::new_with_secret(&pepper.0, algorithm, version, params)
            .map_err(|e| HashError::Settings(e.to_string()))
    }
}

/// Verifies `secret` against a PHC string with the parameters recorded in it, in the slot's
/// `memory`. Constant-time comparison of the outputs.
fn verify_now(
    pepper: &Pepper,
    phc: &str,
    secret: &[u8],
    memory: &mut Vec<Block>,
) -> Result<bool, HashError> {
    let bad = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let hash = argon2::PasswordHash::new(phc).map_err(|e| bad(&e))?;
    let params = Params::try_from(&hash).map_err(|e| bad(&e))?;
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|e| bad(&e))?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|e| bad(&e))?,
        None => Version::default(),
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Ok(false);
    };
    let argon = argon_with(pepper, algorithm, version, params.clone())?;
    let mut out = vec![0u8; expected.len()];
    argon
        .hash_password_into_with_memory(
            secret,
            salt,
            &mut out,
            blocks(memory, params.block_count()),
        )
        .map_err(|e| bad(&e))?;
    Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
        out.as_slice(),
        expected.as_bytes(),
    )))
}

/// Hashes `secret` with `params` and a fresh random salt, in the slot's `memory`, into a PHC
/// string: what `PasswordHasher::hash_password` makes, without its own allocation of the
/// working memory.
fn hash_now(
    params: &Params,
    pepper: &Pepper,
    secret: &[u8],
    memory: &mut Vec<Block>,
) -> Result<String, HashError> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let bad = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let salt = argon2::password_hash::try_generate_salt().map_err(|e| bad(&e))?;
    let argon = argon(pepper, params.clone())?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    argon
        .hash_password_into_with_memory(
            secret,
            &salt,
            &mut out,
            blocks(memory, params.block_count()),
        )
        .map_err(|e| bad(&e))?;
    let phc = argon2::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| bad(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| bad(&e))?),
        hash: Some(Output::new(&out).map_err(|e| bad(&e))?),
    };
    Ok(phc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashSettings {
        HashSettings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn hash_then_verify_with_and_without_pepper() {
        for pepper in [Pepper::default(), Pepper::new(b"pepper".to_vec())] {
            let h = Hasher::new(&cheap(), pepper).unwrap();
            let phc = h.hash(b"secret".to_vec()).await.unwrap();
            assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
            assert!(
                h.verify(b"secret".to_vec(), phc.clone(), Lane::Normal)
                    .await
                    .unwrap()
            );
            assert!(
                !h.verify(b"secreT".to_vec(), phc, Lane::Suspect)
                    .await
                    .unwrap()
            );
        }
    }

    /// The PHC strings made in the slot's memory are the argon2 crate's own: its verifier
    /// accepts them, and hashes it made verify here.
    #[tokio::test]
    async fn hashes_are_the_argon2_crates_phc_strings() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let h = Hasher::new(&cheap(), Pepper::default()).unwrap();
        let ours = h.hash(b"secret".to_vec()).await.unwrap();
        let crate_argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, h.params.clone());
        let parsed = argon2::PasswordHash::new(&ours).unwrap();
        assert!(crate_argon.verify_password(b"secret", &parsed).is_ok());
        assert!(crate_argon.verify_password(b"secreT", &parsed).is_err());
        let theirs = crate_argon.hash_password(b"secret").unwrap().to_string();
        assert!(
            h.verify(b"secret".to_vec(), theirs, Lane::Normal)
                .await
                .unwrap()
        );
    }

    /// Working memory is per slot: however many hashes and verifications run, in both lanes,
    /// and however they interleave, no more buffers are allocated than there are slots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn working_memory_is_allocated_once_per_slot() {
        let settings = HashSettings {
            max_concurrent: 3,
            queue_timeout: Duration::from_secs(60),
            ..cheap()
        };
        let h = Hasher::new(&settings, Pepper::default()).unwrap();
        let phc = h.hash(b"right".to_vec()).await.unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..60 {
            let (h, phc) = (h.clone(), phc.clone());
            calls.spawn(async move {
                match i % 3 {
                    0 => h.hash(b"new".to_vec()).await.map(|_| true),
                    1 => h.verify(b"right".to_vec(), phc, Lane::Normal).await,
                    _ => h
                        .verify(b"wrong".to_vec(), phc, Lane::Suspect)
                        .await
                        .map(|ok| !ok),
                }
            });
        }
        while let Some(done) = calls.join_next().await {
            assert!(done.unwrap().unwrap(), "every answer is right");
        }
        let allocated = h
            .memory
            .allocated
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (1..=3).contains(&allocated),
            "{allocated} buffers for 3 slots"
        );
    }

    #[tokio::test]
    async fn pepper_is_part_of_the_hash() {
        let a = Hasher::new(&cheap(), Pepper::new(b"one".to_vec())).unwrap();
        let b = Hasher::new(&cheap(), Pepper::new(b"two".to_vec())).unwrap();
        let phc = a.hash(b"secret".to_vec()).await.unwrap();
        assert!(
            !b.verify(b"secret".to_vec(), phc, Lane::Normal)
                .await
                .unwrap()
        );
    }

    /// Beyond `max_concurrent`, callers wait at most `queue_timeout`, then are told to come
    /// back (RESOURCE_EXHAUSTED at the edge) instead of piling up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy() {
        let slow = HashSettings {
            memory_kib: 64 * 1024,
            iterations: 4,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(1),
        };
        let h = Hasher::new(&slow, Pepper::default()).unwrap();
        let busy = h.clone();
        let first = tokio::spawn(async move { busy.hash(b"one".to_vec()).await });
        while h.permits.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(matches!(
            h.hash(b"two".to_vec()).await,
            Err(HashError::Busy)
        ));
        assert!(
            first.await.unwrap().is_ok(),
            "the one in progress completes"
        );
        assert!(
            h.hash(b"two".to_vec()).await.is_ok(),
            "and the slot is free again"
        );
    }

    /// Wrong secrets for attacked ids cannot take every slot: suspect verifications hold at
    /// most half of them, and a normal computation gets a slot while they queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suspects_hold_at_most_half_the_slots() {
        let slow = HashSettings {
            memory_kib: 16 * 1024,
            iterations: 4,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(30),
        };
        let h = Hasher::new(&slow, Pepper::default()).unwrap();
        let phc = h.hash(b"right".to_vec()).await.unwrap();
        let flood: Vec<_> = (0..4)
            .map(|_| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(async move { h.verify(b"wrong".to_vec(), phc, Lane::Suspect).await })
            })
            .collect();
        while h.suspects.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(h.permits.available_permits(), 1, "one slot stays free");
        h.hash(b"legit".to_vec()).await.unwrap();
        // Each suspect computes and then rests three times as long before the next may
        // start: when the normal hash (as long as one of them) is done, at most the suspect
        // that held the lane has answered — two, if the machine stalled the hash for the
        // whole rest.
        let done = flood.iter().filter(|t| t.is_finished()).count();
        assert!(
            done <= 2,
            "{done} queued suspects answered before a normal hash"
        );
        for t in flood {
            assert!(!t.await.unwrap().unwrap());
        }
    }

    /// A suspect verification keeps its place in the lane after it answered (the rest that
    /// bounds the lane's share of time), while normal computations go on; then the place
    /// comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_suspect_verification_rests_its_lane_after_answering() {
        let h = Hasher::new(&cheap(), Pepper::default()).unwrap();
        let phc = h.hash(b"right".to_vec()).await.unwrap();
        assert!(
            !h.verify(b"wrong".to_vec(), phc.clone(), Lane::Suspect)
                .await
                .unwrap()
        );
        assert_eq!(h.suspects.available_permits(), 0, "the lane rests");
        assert!(
            h.verify(b"right".to_vec(), phc, Lane::Normal)
                .await
                .unwrap()
        );
        tokio::time::timeout(Duration::from_secs(5), async {
            while h.suspects.available_permits() == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the lane's place came back after its rest");
    }

    /// The suspect lane's duty cycle, measured: a flood of wrong secrets that always has a
    /// suspect verification waiting keeps the lane's one slot computing at most a quarter of
    /// the time (it rests three times as long as it computed), and at least some of it (the
    /// lane is not starved either, so the measure means something).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_suspect_lane_computes_at_most_a_quarter_of_the_time() {
        let settings = HashSettings {
            memory_kib: 8 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(30),
        };
        let h = Hasher::new(&settings, Pepper::default()).unwrap();
        let phc = h.hash(b"right".to_vec()).await.unwrap();
        let window = Duration::from_secs(2);
        let started = std::time::Instant::now();
        let flood: Vec<_> = (0..8)
            .map(|_| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(async move {
                    let mut answered = 0u32;
                    while started.elapsed() < window {
                        assert!(
                            !h.verify(b"wrong".to_vec(), phc.clone(), Lane::Suspect)
                                .await
                                .unwrap()
                        );
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let mut answered = 0;
        for t in flood {
            answered += t.await.unwrap();
        }
        let elapsed = started.elapsed();
        let busy = Duration::from_nanos(
            h.suspect_computing
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let share = busy.as_secs_f64() / elapsed.as_secs_f64();
        // The computations that were running when the window closed finish without their
        // rest inside it: one computation's worth of slack, bounded by the 10 % here.
        assert!(
            share <= 0.25 + 0.10,
            "the suspect lane computed {busy:?} of {elapsed:?} ({share:.2}, {answered} answers)"
        );
        assert!(
            share >= 0.05,
            "the suspect lane barely ran: {busy:?} of {elapsed:?} ({answered} answers)"
        );
    }
}
