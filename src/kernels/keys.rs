//! Secret keys: loading from a file or an environment variable, domain sub-keys (HKDF-SHA-256) and
//! fingerprints.
//!
//! A key never appears in the permit text, on the command line, in a log or in an output: [`SecretKey`]
//! zeroizes its bytes on drop and prints as `SecretKey(<redacted>)`.

use std::fmt;
use std::path::Path;

use hkdf::Hkdf;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::kernels::hex;

/// The shortest key accepted, in bytes (256 bits, the HMAC-SHA-256 block security level).
pub const MIN_KEY_BYTES: usize = 32;

/// The largest key file read: a key's hex text with room for white space (a bound, so that a
/// device such as `/dev/zero` given as a key file is refused at once).
const MAX_KEY_FILE_BYTES: usize = 4096;

/// The fixed label whose MAC under a key is that key's public fingerprint.
const FINGERPRINT_LABEL: &[u8] = b"ehds-prep key fingerprint v1";

/// The HKDF `info` prefix of pseudonymisation domain sub-keys; the domain's context string follows.
const DOMAIN_INFO_PREFIX: &[u8] = b"ehds-prep pseudonymisation domain v1\x00";

/// Key material that is wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SecretKey {
    /// Wraps raw key bytes after checking length and a minimum of variety.
    pub fn new(bytes: Vec<u8>, source_name: &str) -> Result<Self> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_KEY_BYTES {
            return Err(Error::Key {
                source_name: source_name.into(),
                message: format!(
                    "key is {} bytes; at least {MIN_KEY_BYTES} random bytes are required \
                     (create one with `ehds-prep keygen --out FILE`)",
                    bytes.len()
                ),
            });
        }
        if looks_low_entropy(&bytes) {
            return Err(Error::Key {
                source_name: source_name.into(),
                message: "key has too little variety to be random (repeated bytes or a short \
                          pattern); create one with `ehds-prep keygen --out FILE`"
                    .into(),
            });
        }
        Ok(SecretKey(bytes))
    }

    /// Parses the text form of a key: hexadecimal digits, surrounding white space ignored.
    pub fn from_text(text: &str, source_name: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim()).map_err(|message| Error::Key {
            source_name: source_name.into(),
            message: format!("key must be hexadecimal ({message})"),
        })?;
        Self::new(bytes, source_name)
    }

    /// Reads a key file, which must be readable by its owner only unless `allow_readable_by_others`
    /// (see [`read_secret_file`]).
    pub fn from_private_file(path: &Path, allow_readable_by_others: bool) -> Result<Self> {
        let name = format!("file {}", path.display());
        let readable = (!allow_readable_by_others)
            .then_some(", or set allow_readable_by_others = true for this key in the permit");
        let text = read_secret_file(path, "key", readable).map_err(|message| Error::Key {
            source_name: name.clone(),
            message,
        })?;
        let text = std::str::from_utf8(&text).map_err(|_| Error::Key {
            source_name: name.clone(),
            message: "key must be hexadecimal text (the file is not UTF-8)".into(),
        })?;
        Self::from_text(text, &name)
    }

    /// Reads a key file, whatever its permissions.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_private_file(path, true)
    }

    /// Reads a key from an environment variable. The variable is read once per process and then
    /// wiped from the environment ([`take_from_environment`]); later reads of the same variable
    /// get the text read first.
    pub fn from_env(var: &str) -> Result<Self> {
        let name = format!("environment variable {var}");
        let text = take_from_environment(var).ok_or_else(|| Error::Key {
            source_name: name.clone(),
            message: "variable is not set or not valid Unicode".into(),
        })?;
        Self::from_text(&text, &name)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A public identifier of this key: the first 16 bytes of HMAC-SHA-256(key, fixed label), in hex.
    /// Two parties can compare fingerprints to know they hold the same key without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(FINGERPRINT_LABEL);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The sub-key of one pseudonymisation domain: HKDF-SHA-256 with no salt, this key as input keying
    /// material and the domain's context as `info`. Distinct contexts give independent keys, so
    /// pseudonyms of two domains cannot be joined.
    pub fn domain_key(&self, context: &str) -> SecretKey {
        let mut info = DOMAIN_INFO_PREFIX.to_vec();
        info.extend_from_slice(context.as_bytes());
        let mut okm = vec![0u8; 32];
        hkdf_sha256(None, &self.0, &info, &mut okm)
            .expect("32 bytes is a valid HKDF output length");
        SecretKey(Zeroizing::new(okm))
    }
}

/// The bytes of a secret file (`what`: "key", "connection"). With `readable_by_others_refused`
/// (a remedy beside `chmod 600`, or ""), a file that group or others may read is refused. The file
/// is opened once and everything is checked on that descriptor: a regular file (a FIFO or a device
/// would block or never end), its mode, and a size no secret file exceeds. The error message never
/// holds the file's content.
pub fn read_secret_file(
    path: &Path,
    what: &str,
    readable_by_others_refused: Option<&str>,
) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {what} file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} file: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "is not a regular file (a {what} file holds the {what}'s text)"
        ));
    }
    let mode = meta.permissions().mode();
    if let Some(or_allow) = readable_by_others_refused
        && mode & 0o077 != 0
    {
        return Err(format!(
            "{what} file is readable by group or others (mode {:o}); run `chmod 600` on it{or_allow}",
            mode & 0o777
        ));
    }
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES + 1));
    (&mut file)
        .take(MAX_KEY_FILE_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {what} file: {e}"))?;
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{what} file is larger than {MAX_KEY_FILE_BYTES} bytes: not a {what} file"
        ));
    }
    Ok(text)
}

/// The text of environment variable `var`, read once: the first read overwrites the value where
/// the process's environment holds it (what `/proc/PID/environ` shows, and a memory image would
/// hold) and removes the variable; the text is kept for later reads in this process only.
pub fn take_from_environment(var: &str) -> Option<Zeroizing<String>> {
    use std::sync::Mutex;
    static TAKEN: Mutex<Vec<(String, Zeroizing<String>)>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, text)) = taken.iter().find(|(name, _)| name == var) {
        return Some(text.clone());
    }
    let text = Zeroizing::new(std::env::var(var).ok()?);
    let name = std::ffi::CString::new(var).ok()?;
    // SAFETY: getenv returns a pointer just past `NAME=` inside the environment's `NAME=value`
    // string (or null). The variable is removed from the environment first (the string itself is
    // neither moved nor freed: it lies in the block the kernel gave the process, or in one the C
    // library keeps), then the whole string is overwritten within its length. The engine reads keys
    // before it starts any thread of its own, and std's environment functions hold their lock; C
    // code reading the environment concurrently is the remaining assumption.
    unsafe {
        let value = libc::getenv(name.as_ptr());
        std::env::remove_var(var);
        if !value.is_null() {
            let entry = value.sub(var.len() + 1);
            std::ptr::write_bytes(entry, 0, var.len() + 1 + libc::strlen(value));
        }
    }
    taken.push((var.to_string(), text.clone()));
    Some(text)
}

/// HKDF-SHA-256 (RFC 5869): extract then expand into `okm`.
pub fn hkdf_sha256(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    okm: &mut [u8],
) -> Result<(), String> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, okm)
        .map_err(|e| e.to_string())
}

/// Keys made by hand rather than drawn at random: few distinct bytes, or a short repeating pattern.
fn looks_low_entropy(bytes: &[u8]) -> bool {
    let mut seen = [false; 256];
    for &b in bytes {
        seen[b as usize] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count();
    // 32 random bytes have about 30 distinct values; fewer than 12 is hand-made.
    if distinct < 12 {
        return true;
    }
    (1..=bytes.len() / 2).any(|period| bytes.iter().skip(period).zip(bytes).all(|(a, b)| a == b))
}

/// Draws a new key from the operating system's random source and returns its text form.
pub fn generate_key_text() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; MIN_KEY_BYTES]);
    getrandom_fill(bytes.as_mut())?;
    let mut text = hex::encode(bytes.as_ref());
    text.push('\n');
    let out = Zeroizing::new(text.clone());
    text.zeroize();
    Ok(out)
}

pub(crate) fn getrandom_fill(buf: &mut [u8]) -> Result<()> {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Key {
            source_name: "operating system random source".into(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869 appendix A, test cases 1 to 3 (SHA-256).
    #[test]
    fn hkdf_matches_rfc5869_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                Some("000102030405060708090a0b0c"),
                "f0f1f2f3f4f5f6f7f8f9",
                42,
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
                Some(
                    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                ),
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                82,
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                None,
                "",
                42,
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (ikm, salt, info, len, expected) in cases {
            let salt = salt.map(unhex);
            let mut okm = vec![0u8; len];
            hkdf_sha256(salt.as_deref(), &unhex(ikm), &unhex(info), &mut okm).unwrap();
            assert_eq!(hex::encode(&okm), expected);
        }
    }

    fn random_key() -> SecretKey {
        SecretKey::from_text(&generate_key_text().unwrap(), "test").unwrap()
    }

    #[test]
    fn short_and_patterned_keys_are_refused() {
        assert!(SecretKey::new(vec![7u8; 16], "t").is_err());
        assert!(SecretKey::new(vec![0u8; 32], "t").is_err());
        let pattern: Vec<u8> = (0..64).map(|i| (i % 16) as u8 * 13).collect();
        assert!(SecretKey::new(pattern, "t").is_err());
        assert!(
            SecretKey::from_text("not hex at all, not hex at all, not hex at all, !!", "t")
                .is_err()
        );
        assert!(random_key().expose().len() == 32);
    }

    #[test]
    fn key_never_prints() {
        let key = random_key();
        let hex_key = hex::encode(key.expose());
        for shown in [format!("{key:?}"), format!("{key}")] {
            assert!(!shown.contains(&hex_key[..16]));
            assert!(shown.contains("redacted"));
        }
    }

    #[test]
    fn domains_give_independent_keys_and_fingerprints_are_stable() {
        let key = random_key();
        let a = key.domain_key("permit-1/linkage");
        let b = key.domain_key("permit-2/linkage");
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose(), key.domain_key("permit-1/linkage").expose());
        assert_eq!(key.fingerprint(), key.clone().fingerprint());
        assert_ne!(key.fingerprint(), random_key().fingerprint());
        assert_eq!(key.fingerprint().len(), 32);
        assert!(!hex::encode(key.expose()).contains(&key.fingerprint()));
    }

    fn private(path: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn key_files_are_regular_bounded_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good.hex");
        let text = generate_key_text().unwrap();
        private(&good, text.as_bytes());
        let key = SecretKey::from_private_file(&good, false).unwrap();
        assert_eq!(hex::encode(key.expose()), text.trim());
        // A FIFO with no writer: refused at once, not waited on.
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo.as_path(), Path::new("/dev/zero"), tmp.path()] {
            let e = SecretKey::from_private_file(path, true).err().unwrap();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        // A key followed by megabytes of anything: not a key file.
        let big = tmp.path().join("big.hex");
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(MAX_KEY_FILE_BYTES + 1, b' ');
        private(&big, &bytes);
        let e = SecretKey::from_private_file(&big, false).err().unwrap();
        assert!(e.to_string().contains("larger than"), "{e}");
        bytes.truncate(MAX_KEY_FILE_BYTES);
        private(&big, &bytes);
        assert!(SecretKey::from_private_file(&big, false).is_ok());
        // Readable by others: refused unless allowed.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SecretKey::from_private_file(&good, false).is_err());
        assert!(SecretKey::from_private_file(&good, true).is_ok());
    }
}
