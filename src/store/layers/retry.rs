//! Retries of whole operations on `Transient` errors only, with exponential
//! backoff and jitter, for every remote kind. Streams are not retried here:
//! OpenDAL's retry layer in `store::remote` already retries starting an
//! upload or a read and each part or chunk of it, and a streamed WebDAV body
//! cannot be replayed; what is retried here is every operation on whole
//! objects, which `store::remote` runs without OpenDAL's retries (so nothing
//! is retried twice).

use std::time::Duration;

use rand::Rng;

use crate::Result;
use crate::config::Transfer;
use crate::error::StorageKind;
use crate::pipeline::Source;
use crate::store::{Destination, ObjectInfo, Upload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first.
    pub retries: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The destination's `transfer.retries`, waiting 200 ms to 10 s between tries.
    pub fn of(transfer: &Transfer) -> Self {
        RetryPolicy {
            retries: transfer.retries,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }

    /// The wait before try `retry + 1`: doubling, capped, with jitter so that
    /// parallel uploads do not retry in step.
    fn delay(&self, retry: u32) -> Duration {
        let full = self
            .min_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

pub struct Retry {
    inner: Box<dyn Destination>,
    policy: RetryPolicy,
}

impl Retry {
    pub fn new(inner: Box<dyn Destination>, policy: RetryPolicy) -> Self {
        Retry { inner, policy }
    }

    fn retried<T>(&self, op: &str, key: &str, run: impl Fn() -> Result<T>) -> Result<T> {
        let mut retry = 0;
        loop {
            match run() {
                Err(e)
                    if e.storage_kind() == Some(StorageKind::Transient)
                        && retry < self.policy.retries =>
                {
                    let delay = self.policy.delay(retry);
                    retry += 1;
                    tracing::warn!(
                        destination = %self.inner.name(),
                        op,
                        key,
                        "{e}; retrying in {} ms ({retry} of {})",
                        delay.as_millis(),
                        self.policy.retries
                    );
                    std::thread::sleep(delay);
                }
                result => return result,
            }
        }
    }
}

impl Destination for Retry {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.inner.create(key)
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.retried("put_atomic", key, || self.inner.put_atomic(key, bytes))
    }

    fn open(&self, key: &str) -> Result<Source> {
        self.inner.open(key)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.retried("get", key, || self.inner.get(key))
    }

    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        self.retried("get", key, || self.inner.get_at_most(key, limit))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.retried("size", key, || self.inner.size(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.retried("list", prefix, || self.inner.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.retried("delete", key, || self.inner.delete(key))
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.retried("list_partial", prefix, || self.inner.list_partial(prefix))
    }

    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        self.retried("remove_empty_folder", key, || {
            self.inner.remove_empty_folder(key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layers::fault::{Fault, FaultDestination, Faults, Op};
    use crate::store::memory::MemoryDestination;

    fn setup(retries: u32) -> (MemoryDestination, Retry, Faults) {
        let memory = MemoryDestination::new("m");
        let faults = Faults::new();
        let policy = RetryPolicy {
            retries,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        let dest = Retry::new(
            Box::new(FaultDestination::new(
                Box::new(memory.clone()),
                faults.clone(),
            )),
            policy,
        );
        (memory, dest, faults)
    }

    #[test]
    fn transient_errors_are_retried_until_the_operation_succeeds() {
        let (memory, dest, faults) = setup(3);
        faults.inject(Fault::fail(Op::PutAtomic, StorageKind::Transient).times(2));
        dest.put_atomic("job/m", b"1").unwrap();
        assert_eq!(memory.bytes("job/m").unwrap(), b"1");
        assert_eq!(faults.fired().len(), 2);
    }

    #[test]
    fn retries_stop_after_the_policy_and_keep_the_last_error() {
        let (_memory, dest, faults) = setup(2);
        faults.inject(Fault::fail(Op::List, StorageKind::Transient));
        let error = dest.list("job/").unwrap_err();
        assert_eq!(error.storage_kind(), Some(StorageKind::Transient));
        assert_eq!(faults.fired().len(), 3, "one try and two retries");
    }

    #[test]
    fn other_kinds_are_not_retried() {
        let (_memory, dest, faults) = setup(5);
        for kind in [
            StorageKind::NotFound,
            StorageKind::Denied,
            StorageKind::NoSpace,
            StorageKind::Damaged,
            StorageKind::Other,
        ] {
            faults.clear();
            faults.inject(Fault::fail(Op::Get, kind));
            let before = faults.fired().len();
            assert_eq!(dest.get("job/x").unwrap_err().storage_kind(), Some(kind));
            assert_eq!(faults.fired().len(), before + 1, "{kind:?} tried once");
        }
    }

    #[test]
    fn uploads_are_not_retried_once_started() {
        let (memory, dest, faults) = setup(5);
        faults.inject(Fault::fail(Op::Commit, StorageKind::Transient));
        let mut upload = dest.create("job/d").unwrap();
        std::io::Write::write_all(&mut upload, b"data").unwrap();
        assert!(upload.commit().is_err());
        assert_eq!(faults.fired().len(), 1);
        assert!(memory.keys().is_empty());
    }
}
