//! Content verification: sha256 over what arrived, compared with the descriptor.

use std::fmt::Write;

use oci_spec::image::{Descriptor, Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

use super::RegistryError;

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    hex_digest(Sha256::digest(data).as_slice())
}

fn hex_digest(hash: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 2 * hash.len());
    s.push_str("sha256:");
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hashes content as it streams by and checks it against the digest and size it was
/// fetched by: feed every chunk to [`update`](Self::update), then call
/// [`finish`](Self::finish) before trusting (committing) the content.
pub struct DigestVerifier {
    expected: Digest,
    expected_size: u64,
    hasher: Sha256,
    size: u64,
}

impl DigestVerifier {
    /// A verifier for content of `size` bytes with `digest` (sha256 only).
    pub fn new(digest: &Digest, size: u64) -> Result<DigestVerifier, RegistryError> {
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(RegistryError::UnsupportedDigest {
                digest: digest.to_string(),
            });
        }
        Ok(DigestVerifier {
            expected: digest.clone(),
            expected_size: size,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// A verifier for the content `descriptor` describes.
    pub fn for_descriptor(descriptor: &Descriptor) -> Result<DigestVerifier, RegistryError> {
        DigestVerifier::new(descriptor.digest(), descriptor.size())
    }

    /// Adds a chunk; fails as soon as there is more content than the descriptor says.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.size += chunk.len() as u64;
        if self.size > self.expected_size {
            return Err(self.size_mismatch());
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.size
    }

    /// Checks size and digest of everything seen.
    pub fn finish(self) -> Result<(), RegistryError> {
        if self.size != self.expected_size {
            return Err(self.size_mismatch());
        }
        let actual = hex_digest(self.hasher.finalize().as_slice());
        if actual != self.expected.as_ref() {
            return Err(RegistryError::DigestMismatch {
                expected: self.expected.to_string(),
                actual,
            });
        }
        Ok(())
    }

    fn size_mismatch(&self) -> RegistryError {
        RegistryError::SizeMismatch {
            digest: self.expected.to_string(),
            expected: self.expected_size,
            actual: self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    // sha256("hello world")
    const HELLO: &str = "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_digest(b"hello world"), HELLO);
    }

    #[test]
    fn verifies_chunked_content() {
        let hello = HELLO;
        let d = Digest::from_str(hello).unwrap();
        let other = Digest::from_str(&sha256_digest(b"other")).unwrap();
        // chunks, digest, size, expected error (None: ok)
        type Case<'a> = (Vec<&'a [u8]>, &'a Digest, u64, Option<String>);
        let cases: Vec<Case> = vec![
            (vec![b"hello", b" ", b"world"], &d, 11, None),
            (vec![b"hello world"], &d, 11, None),
            (
                vec![b"hello", b"world"],
                &d,
                11,
                Some(format!(
                    "size mismatch for {hello}: expected 11 bytes, got 10"
                )),
            ),
            (
                vec![b"hello world!"],
                &d,
                11,
                Some(format!(
                    "size mismatch for {hello}: expected 11 bytes, got 12"
                )),
            ),
            (
                vec![b"hello world"],
                &other,
                11,
                Some(format!("digest mismatch for {other}: got {hello}")),
            ),
        ];
        for (chunks, digest, size, want) in cases {
            let mut v = DigestVerifier::new(digest, size).unwrap();
            let result = chunks
                .iter()
                .try_for_each(|c| v.update(c))
                .and_then(|()| v.finish());
            assert_eq!(result.err().map(|e| e.to_string()), want, "{chunks:?}");
        }
    }

    #[test]
    fn refuses_other_algorithms() {
        let d = Digest::from_str(&format!("sha512:{}", "0".repeat(128))).unwrap();
        assert_eq!(
            DigestVerifier::new(&d, 1).err().unwrap().to_string(),
            format!("unsupported digest algorithm in {d}")
        );
    }
}
