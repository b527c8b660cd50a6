//! cosign key-based verification (leda-cm's extension): being written (issue 17).

use std::path::Path;

use super::{Signature, Target, Verdict};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignError {
    #[error("cosign verification is not available in this build")]
    Unavailable,
}

#[derive(Debug)]
pub struct PublicKey {}

impl PublicKey {
    pub fn load(_path: &Path) -> Result<PublicKey, CosignError> {
        Err(CosignError::Unavailable)
    }

    pub fn verify(
        &self,
        _target: &Target,
        _signatures: &[Signature],
    ) -> Result<Verdict, CosignError> {
        Err(CosignError::Unavailable)
    }
}
