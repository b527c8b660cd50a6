//! The Notary Project's verification (notation): trust policy, trust stores, JWS and COSE
//! envelopes. Being written (issue 17); until then a notation configuration is refused.

use std::path::Path;
use std::time::SystemTime;

use super::{Signature, Target, Verdict};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotationError {
    #[error("notation verification is not available in this build")]
    Unavailable,
}

/// A loaded trust policy with its trust stores.
#[derive(Debug)]
pub struct Policy {}

impl Policy {
    /// Reads `<config_dir>/trustpolicy.json` and the trust stores it names.
    pub fn load(_config_dir: &Path) -> Result<Policy, NotationError> {
        Err(NotationError::Unavailable)
    }

    /// False only where the policy's level for the scope is `skip`.
    pub fn needs_signatures(&self, _repository: &str) -> bool {
        true
    }

    pub fn verify(
        &self,
        _target: &Target,
        _signatures: &[Signature],
        _now: SystemTime,
    ) -> Result<Verdict, NotationError> {
        Err(NotationError::Unavailable)
    }
}
