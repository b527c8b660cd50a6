//! The parts of an X.509 certificate notation's checks read, from a small DER reader:
//! names (raw, for chain linkage, and as attributes, for trusted identities), validity,
//! key usage, basic constraints, extended key usage, revocation pointers and the key.
//! Signatures are not checked here (rustls-webpki and ring do that).

/// A DER reader over untrusted bytes: every read is bounds-checked.
pub(super) struct Der<'a> {
    data: &'a [u8],
}

/// One TLV: its tag, its content and the whole encoding (header included).
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

impl<'a> Der<'a> {
    pub fn new(data: &'a [u8]) -> Der<'a> {
        Der { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub fn read(&mut self) -> Result<Tlv<'a>, String> {
        let data = self.data;
        let (&tag, rest) = data.split_first().ok_or("truncated DER (no tag)")?;
        if tag & 0x1f == 0x1f {
            return Err("DER tag in high-tag-number form".into());
        }
        let (&first, mut rest) = rest.split_first().ok_or("truncated DER (no length)")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err("DER length is indefinite or too long".into());
            }
            let (bytes, after) = split(rest, n).ok_or("truncated DER length")?;
            rest = after;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 || bytes.first() == Some(&0) {
                return Err("DER length not in minimal form".into());
            }
            len
        };
        let header = data.len() - rest.len();
        let (content, after) = split(rest, len).ok_or("DER value runs past its container")?;
        let whole = data
            .get(..header + len)
            .ok_or("DER value runs past its container")?;
        self.data = after;
        Ok(Tlv {
            tag,
            content,
            whole,
        })
    }

    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, String> {
        let tlv = self.read().map_err(|e| format!("{what}: {e}"))?;
        if tlv.tag != tag {
            return Err(format!(
                "{what}: expected DER tag {tag:#04x}, found {:#04x}",
                tlv.tag
            ));
        }
        Ok(tlv)
    }

    /// The next TLV if it has `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, String> {
        if self.peek() == Some(tag) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }
}

fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (n <= data.len()).then(|| data.split_at(n))
}

pub(super) const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;

const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_CRL_DISTRIBUTION_POINTS: &[u8] = &[0x55, 0x1d, 0x1f];
const OID_AUTHORITY_INFO_ACCESS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
const OID_AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), the OID's DER content.
pub(super) const OID_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Extended key usages notation refuses in a signing certificate.
const EXCLUDED_EKUS: &[(u8, &str)] = &[
    (1, "ServerAuth"),
    (2, "ClientAuth"),
    (4, "EmailProtection"),
    (8, "Timestamping"),
    (9, "OCSPSigning"),
];

/// The attribute types Go's `pkix.Name.String()` names (what notation compares); any
/// other type in a signing certificate's subject makes notation's DN parser refuse it.
const NAMED_ATTRIBUTES: &[(u8, &str)] = &[
    (3, "CN"),
    (5, "SERIALNUMBER"),
    (6, "C"),
    (7, "L"),
    (8, "ST"),
    (9, "STREET"),
    (10, "O"),
    (11, "OU"),
    (17, "POSTALCODE"),
];

/// Key usage bits, as RFC 5280 numbers them (bit 0 is digitalSignature).
pub(super) const KU_DIGITAL_SIGNATURE: u16 = 1 << 0;
const KU_KEY_ENCIPHERMENT: u16 = 1 << 2;
const KU_DATA_ENCIPHERMENT: u16 = 1 << 3;
const KU_KEY_AGREEMENT: u16 = 1 << 4;
pub(super) const KU_KEY_CERT_SIGN: u16 = 1 << 5;
const KU_CRL_SIGN: u16 = 1 << 6;
const KU_ENCIPHER_ONLY: u16 = 1 << 7;
const KU_DECIPHER_ONLY: u16 = 1 << 8;

/// The signing key's type and size, which fix the signature algorithm notation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeySpec {
    Rsa(usize),
    Ec(usize),
}

#[derive(Debug, Clone)]
pub(super) struct Cert {
    /// The whole certificate (DER).
    pub der: Vec<u8>,
    pub raw_subject: Vec<u8>,
    pub raw_issuer: Vec<u8>,
    /// The subject's attributes in certificate order: (type name or dotted OID, value),
    /// one `Vec` per RDN.
    pub subject: Vec<Vec<(String, String)>>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// `Some((bits, critical))` when the key usage extension is present.
    pub key_usage: Option<(u16, bool)>,
    /// `Some((ca, path_len))` when basic constraints are present.
    pub basic_constraints: Option<(bool, Option<u64>)>,
    /// The extended key usage OIDs (DER content), when present.
    pub ext_key_usage: Option<Vec<Vec<u8>>>,
    /// An OCSP responder or a CRL distribution point is named.
    pub revocable: bool,
    pub key: Result<KeySpec, String>,
    /// The subjectPublicKey bits: RSAPublicKey DER or an uncompressed EC point.
    pub public_key: Vec<u8>,
    /// The signed part (tbsCertificate, DER), its signature algorithm OID and signature.
    pub tbs: Vec<u8>,
    pub sig_alg: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Cert {
    pub fn parse(der: &[u8]) -> Result<Cert, String> {
        let mut outer = Der::new(der);
        let cert = outer.expect(SEQUENCE, "certificate")?;
        if !outer.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let mut c = Der::new(cert.content);
        let tbs = c.expect(SEQUENCE, "tbsCertificate")?;
        let sig_alg = c.expect(SEQUENCE, "signatureAlgorithm")?;
        let sig_alg = Der::new(sig_alg.content)
            .expect(OID, "signature algorithm")?
            .content
            .to_vec();
        let signature = c
            .expect(BIT_STRING, "signatureValue")?
            .content
            .split_first()
            .filter(|(unused, _)| **unused == 0)
            .map(|(_, s)| s.to_vec())
            .ok_or("certificate signature has unused bits")?;
        if !c.is_empty() {
            return Err("trailing fields in the certificate".into());
        }
        let mut t = Der::new(tbs.content);
        t.optional(0xa0)?; // version
        t.expect(INTEGER, "serialNumber")?;
        t.expect(SEQUENCE, "signature algorithm")?;
        let issuer = t.expect(SEQUENCE, "issuer")?;
        let validity = t.expect(SEQUENCE, "validity")?;
        let subject = t.expect(SEQUENCE, "subject")?;
        let spki = t.expect(SEQUENCE, "subjectPublicKeyInfo")?;
        t.optional(0x81)?; // issuerUniqueID
        t.optional(0x82)?; // subjectUniqueID
        let extensions = t.optional(0xa3)?;

        let mut v = Der::new(validity.content);
        let not_before = parse_time(&v.read()?)?;
        let not_after = parse_time(&v.read()?)?;
        let (key, public_key) = parse_spki(spki.content)?;

        let mut out = Cert {
            der: der.to_vec(),
            raw_subject: subject.whole.to_vec(),
            raw_issuer: issuer.whole.to_vec(),
            subject: parse_name(subject.content)?,
            not_before,
            not_after,
            key_usage: None,
            basic_constraints: None,
            ext_key_usage: None,
            revocable: false,
            key,
            public_key,
            tbs: tbs.whole.to_vec(),
            sig_alg,
            signature,
        };
        if let Some(ext) = extensions {
            let mut wrapper = Der::new(ext.content);
            let list = wrapper.expect(SEQUENCE, "extensions")?;
            let mut exts = Der::new(list.content);
            while !exts.is_empty() {
                let e = exts.expect(SEQUENCE, "extension")?;
                let mut e = Der::new(e.content);
                let oid = e.expect(OID, "extension id")?.content;
                let critical = match e.optional(BOOLEAN)? {
                    Some(b) => b.content.first().is_some_and(|x| *x != 0),
                    None => false,
                };
                let value = e.expect(OCTET_STRING, "extension value")?.content;
                out.extension(oid, critical, value)?;
            }
        }
        Ok(out)
    }

    fn extension(&mut self, oid: &[u8], critical: bool, value: &[u8]) -> Result<(), String> {
        let mut d = Der::new(value);
        if oid == OID_KEY_USAGE {
            let bits = d.expect(BIT_STRING, "key usage")?.content;
            let mut ku = 0u16;
            for (i, byte) in bits.iter().skip(1).take(2).enumerate() {
                for bit in 0..8 {
                    if byte & (0x80 >> bit) != 0 {
                        ku |= 1 << (i * 8 + bit);
                    }
                }
            }
            self.key_usage = Some((ku, critical));
        } else if oid == OID_BASIC_CONSTRAINTS {
            let seq = d.expect(SEQUENCE, "basic constraints")?;
            let mut s = Der::new(seq.content);
            let ca = match s.optional(BOOLEAN)? {
                Some(b) => b.content.first().is_some_and(|x| *x != 0),
                None => false,
            };
            let path_len = match s.optional(INTEGER)? {
                Some(i) if i.content.len() <= 8 => Some(
                    i.content
                        .iter()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                ),
                Some(_) => return Err("basic constraints: path length too large".into()),
                None => None,
            };
            self.basic_constraints = Some((ca, path_len));
        } else if oid == OID_EXT_KEY_USAGE {
            let seq = d.expect(SEQUENCE, "extended key usage")?;
            let mut s = Der::new(seq.content);
            let mut ekus = Vec::new();
            while !s.is_empty() {
                ekus.push(s.expect(OID, "extended key usage")?.content.to_vec());
            }
            self.ext_key_usage = Some(ekus);
        } else if oid == OID_CRL_DISTRIBUTION_POINTS {
            let seq = d.expect(SEQUENCE, "CRL distribution points")?;
            self.revocable |= !seq.content.is_empty();
        } else if oid == OID_AUTHORITY_INFO_ACCESS {
            let seq = d.expect(SEQUENCE, "authority information access")?;
            let mut s = Der::new(seq.content);
            while !s.is_empty() {
                let ad = s.expect(SEQUENCE, "access description")?;
                let mut a = Der::new(ad.content);
                if a.expect(OID, "access method")?.content == OID_AD_OCSP {
                    self.revocable = true;
                }
            }
        }
        Ok(())
    }

    /// The subject as `C=US, ST=WA, O=…, CN=…` (certificate order), for messages.
    pub fn subject_string(&self) -> String {
        let rdns: Vec<String> = self
            .subject
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        if rdns.is_empty() {
            "(empty subject)".into()
        } else {
            rdns.join(", ")
        }
    }

    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints, Some((true, _)))
    }

    pub fn self_issued(&self) -> bool {
        self.raw_subject == self.raw_issuer
    }

    /// The subject as notation compares it (one value per attribute type, `S` read as
    /// `ST`); refuses what notation's DN parser refuses.
    pub fn subject_map(&self) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for rdn in &self.subject {
            if rdn.len() > 1 {
                return Err(format!(
                    "subject {:?} has a multi-valued RDN, which notation does not compare",
                    self.subject_string()
                ));
            }
            for (k, v) in rdn {
                if k.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(format!(
                        "subject {:?} has attribute {k}, which notation's identity syntax cannot name",
                        self.subject_string()
                    ));
                }
                if out.iter().any(|(have, _)| have == k) {
                    return Err(format!(
                        "subject {:?} has attribute {k} twice",
                        self.subject_string()
                    ));
                }
                out.push((k.clone(), v.clone()));
            }
        }
        Ok(out)
    }

    /// notation's requirements of a signing (leaf) certificate (`validateCodeSigningLeafCertificate`).
    pub fn check_leaf(&self) -> Result<(), String> {
        let who = self.subject_string();
        if self.is_ca() {
            return Err(format!(
                "signing certificate {who:?} is a CA (basic constraints cA=true)"
            ));
        }
        let ku = self.key_usage_present(&who)?;
        if ku & KU_DIGITAL_SIGNATURE == 0 {
            return Err(format!(
                "signing certificate {who:?}: key usage lacks digitalSignature"
            ));
        }
        let bad: Vec<&str> = [
            (KU_KEY_ENCIPHERMENT, "KeyEncipherment"),
            (KU_DATA_ENCIPHERMENT, "DataEncipherment"),
            (KU_KEY_AGREEMENT, "KeyAgreement"),
            (KU_KEY_CERT_SIGN, "CertSign"),
            (KU_CRL_SIGN, "CRLSign"),
            (KU_ENCIPHER_ONLY, "EncipherOnly"),
            (KU_DECIPHER_ONLY, "DecipherOnly"),
        ]
        .iter()
        .filter(|(bit, _)| ku & bit != 0)
        .map(|(_, name)| *name)
        .collect();
        if !bad.is_empty() {
            return Err(format!(
                "signing certificate {who:?}: key usage must be digitalSignature only, found {}",
                bad.join(", ")
            ));
        }
        if let Some(ekus) = &self.ext_key_usage {
            for eku in ekus {
                if let Some((_, name)) = EXCLUDED_EKUS.iter().find(|(last, _)| {
                    eku.len() == OID_CODE_SIGNING.len()
                        && eku.get(..7) == OID_CODE_SIGNING.get(..7)
                        && eku.last() == Some(last)
                }) {
                    return Err(format!(
                        "signing certificate {who:?}: extended key usage must not contain {name}"
                    ));
                }
            }
        }
        self.key
            .clone()
            .map(|_| ())
            .map_err(|e| format!("signing certificate {who:?}: {e}"))
    }

    /// notation's requirements of a CA certificate `depth` below which `expected_path_len`
    /// certificates follow (`validateCodeSigningCACertificate`).
    pub fn check_ca(&self, expected_path_len: u64) -> Result<(), String> {
        let who = self.subject_string();
        match self.basic_constraints {
            Some((true, path_len)) => {
                if let Some(max) = path_len {
                    if max < expected_path_len {
                        return Err(format!(
                            "CA certificate {who:?}: path length {max}, the chain needs {expected_path_len}"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "certificate {who:?} issues another but is not a CA (basic constraints cA=true missing)"
                ))
            }
        }
        if self.key_usage_present(&who)? & KU_KEY_CERT_SIGN == 0 {
            return Err(format!(
                "CA certificate {who:?}: key usage lacks keyCertSign"
            ));
        }
        Ok(())
    }

    fn key_usage_present(&self, who: &str) -> Result<u16, String> {
        match self.key_usage {
            Some((ku, true)) => Ok(ku),
            Some((_, false)) => Err(format!(
                "certificate {who:?}: the key usage extension must be critical"
            )),
            None => Err(format!(
                "certificate {who:?}: the key usage extension must be present"
            )),
        }
    }
}

fn parse_spki(spki: &[u8]) -> Result<(Result<KeySpec, String>, Vec<u8>), String> {
    let mut s = Der::new(spki);
    let alg = s.expect(SEQUENCE, "public key algorithm")?;
    let bits = s.expect(BIT_STRING, "public key")?.content;
    let key = bits
        .split_first()
        .filter(|(unused, _)| **unused == 0)
        .map(|(_, k)| k)
        .ok_or("public key bit string has unused bits")?;
    let mut a = Der::new(alg.content);
    let oid = a.expect(OID, "public key algorithm")?.content;
    let spec = if oid == OID_RSA {
        let mut k = Der::new(key);
        let seq = k.expect(SEQUENCE, "RSA public key")?;
        let mut k = Der::new(seq.content);
        let modulus = k.expect(INTEGER, "RSA modulus")?.content;
        let len = modulus.iter().skip_while(|b| **b == 0).count();
        match len * 8 {
            bits @ (2048 | 3072 | 4096) => Ok(KeySpec::Rsa(bits)),
            bits => Err(format!("RSA key size {bits} bits is not supported")),
        }
    } else if oid == OID_EC {
        match a.optional(OID)?.map(|t| t.content) {
            Some(c) if c == OID_P256 => Ok(KeySpec::Ec(256)),
            Some(c) if c == OID_P384 => Ok(KeySpec::Ec(384)),
            Some(c) if c == OID_P521 => Ok(KeySpec::Ec(521)),
            _ => Err("EC curve is not supported (P-256, P-384, P-521 are)".into()),
        }
    } else {
        Err("public key type is not supported (RSA and EC are)".into())
    };
    Ok((spec, key.to_vec()))
}

fn parse_name(name: &[u8]) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut rdns = Vec::new();
    let mut n = Der::new(name);
    while !n.is_empty() {
        let set = n.expect(SET, "RDN")?;
        let mut s = Der::new(set.content);
        let mut rdn = Vec::new();
        while !s.is_empty() {
            let atv = s.expect(SEQUENCE, "attribute")?;
            let mut a = Der::new(atv.content);
            let oid = a.expect(OID, "attribute type")?.content;
            let value = a.read()?;
            let name = match oid {
                [0x55, 0x04, last] => NAMED_ATTRIBUTES
                    .iter()
                    .find(|(n, _)| n == last)
                    .map(|(_, name)| name.to_string()),
                _ => None,
            }
            .unwrap_or_else(|| dotted(oid));
            rdn.push((name, string_value(&value)?));
        }
        rdns.push(rdn);
    }
    Ok(rdns)
}

fn string_value(v: &Tlv<'_>) -> Result<String, String> {
    match v.tag {
        // UTF8String, PrintableString, IA5String, NumericString
        0x0c | 0x13 | 0x16 | 0x12 => String::from_utf8(v.content.to_vec())
            .map_err(|_| "name attribute is not valid UTF-8".into()),
        // TeletexString, read as Latin-1 as Go does
        0x14 => Ok(v.content.iter().map(|b| char::from(*b)).collect()),
        // BMPString
        0x1e => {
            if v.content.len() % 2 != 0 {
                return Err("BMPString of odd length".into());
            }
            let units: Vec<u16> = v
                .content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| "BMPString is not valid UTF-16".into())
        }
        other => Err(format!("name attribute of DER type {other:#04x}")),
    }
}

pub(super) fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for (i, b) in oid.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < 8 {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn parse_time(t: &Tlv<'_>) -> Result<i64, String> {
    let s = std::str::from_utf8(t.content).map_err(|_| "validity time is not ASCII")?;
    let digits = s
        .strip_suffix('Z')
        .ok_or("validity time is not in UTC (Z)")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("validity time {s:?} is malformed"));
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        digits
            .get(r)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("validity time {s:?} is malformed"))
    };
    let (year, rest) = match (t.tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return Err(format!("validity time {s:?} is malformed")),
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let hour = num(rest + 4..rest + 6)?;
    let minute = num(rest + 6..rest + 8)?;
    let second = num(rest + 8..rest + 10)?;
    civil_to_unix(year, month, day, hour, minute, second)
        .ok_or_else(|| format!("validity time {s:?} is out of range"))
}

/// Seconds since the epoch of a UTC civil time (proleptic Gregorian), or `None` when a
/// field is out of range.
pub(super) fn civil_to_unix(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_times() {
        for (y, mo, d, h, mi, s, want) in [
            (1970, 1, 1, 0, 0, 0, 0),
            (2000, 3, 1, 0, 0, 0, 951_868_800),
            (2020, 1, 1, 0, 0, 0, 1_577_836_800),
            (2024, 2, 29, 12, 30, 15, 1_709_209_815),
        ] {
            assert_eq!(
                civil_to_unix(y, mo, d, h, mi, s),
                Some(want),
                "{y}-{mo}-{d}"
            );
        }
        assert_eq!(civil_to_unix(2020, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(dotted(OID_CODE_SIGNING), "1.3.6.1.5.5.7.3.3");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }

    #[test]
    fn hostile_der_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x82, 0x00, 0x10],
            &[0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
            &[0x30, 0x03, 0x30, 0x05, 0x00],
            &[0x1f, 0x01, 0x00],
            &[0x30, 0x02, 0x30, 0x00, 0xff],
        ];
        for c in cases {
            assert!(Cert::parse(c).is_err(), "{c:02x?}");
        }
        // Every truncation of a real certificate.
        let pem = include_str!("../../../tests/fixtures/notation/leaf-ec.crt");
        let der = super::super::pem_certificates(pem.as_bytes()).expect("fixture");
        let der = der.first().expect("one certificate");
        assert!(Cert::parse(der).is_ok());
        for n in 0..der.len() {
            assert!(Cert::parse(&der[..n]).is_err(), "prefix {n}");
        }
    }
}
