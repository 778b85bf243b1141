//! Reversible tokens for a trusted third party (EHDS Art. 66(3)): deterministic authenticated
//! encryption of a normalised identifier with AES-SIV (RFC 5297).
//!
//! Only the holder of the token key (the access body or a trusted third party, never the researcher)
//! can turn a token back into its identifier, and only with `reidentify`. The same identifier and
//! context always give the same token, so tokens still link within a delivery; a different context
//! (another permit) gives unrelated tokens. A token altered by one bit, or opened with another key or
//! context, fails authentication.

use aes_siv::aead::KeyInit;
use aes_siv::siv::{Aes128Siv, Aes256Siv};
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::kernels::hex;
use crate::kernels::identifier::{Checked, IdentifierRule};
use crate::kernels::keys::SecretKey;

/// HKDF `info` of the 64-byte AES-SIV key derived from a token key.
const TOKEN_KEY_INFO: &[u8] = b"ehds-prep reversible token key v1";
/// First associated-data component of every token: the scheme, so tokens never open under another one.
const TOKEN_SCHEME: &[u8] = b"ehds-prep token v1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("AES-SIV keys are 32 or 64 bytes, not {0}")]
    KeyLength(usize),
    #[error("token does not authenticate: it was altered, or made under another key or context")]
    Authentication,
    #[error("token is not unpadded base64url text")]
    Encoding,
}

/// An AES-SIV key: 32 bytes (AES-SIV-CMAC-256, AES-128) or 64 bytes (AES-SIV-CMAC-512, AES-256).
pub enum SivKey {
    Aes128(Zeroizing<Vec<u8>>),
    Aes256(Zeroizing<Vec<u8>>),
}

impl SivKey {
    pub fn from_raw(key: &[u8]) -> Result<SivKey, TokenError> {
        match key.len() {
            32 => Ok(SivKey::Aes128(Zeroizing::new(key.to_vec()))),
            64 => Ok(SivKey::Aes256(Zeroizing::new(key.to_vec()))),
            n => Err(TokenError::KeyLength(n)),
        }
    }

    /// The AES-256 SIV key derived from a token key with HKDF-SHA-256.
    pub fn derive(token_key: &SecretKey) -> SivKey {
        let mut okm = Zeroizing::new(vec![0u8; 64]);
        crate::kernels::keys::hkdf_sha256(None, token_key.expose(), TOKEN_KEY_INFO, &mut okm)
            .expect("64 bytes is a valid HKDF output length");
        SivKey::Aes256(okm)
    }

    /// AES-SIV encryption of `plaintext` with the associated-data vector `headers` (RFC 5297 S2V).
    pub fn seal(&self, headers: &[&[u8]], plaintext: &[u8]) -> Vec<u8> {
        let out = match self {
            SivKey::Aes128(k) => Aes128Siv::new_from_slice(k)
                .expect("32-byte key")
                .encrypt(headers, plaintext),
            SivKey::Aes256(k) => Aes256Siv::new_from_slice(k)
                .expect("64-byte key")
                .encrypt(headers, plaintext),
        };
        out.expect("at most 126 headers")
    }

    pub fn open(&self, headers: &[&[u8]], sealed: &[u8]) -> Result<Vec<u8>, TokenError> {
        let out = match self {
            SivKey::Aes128(k) => Aes128Siv::new_from_slice(k)
                .expect("32-byte key")
                .decrypt(headers, sealed),
            SivKey::Aes256(k) => Aes256Siv::new_from_slice(k)
                .expect("64-byte key")
                .decrypt(headers, sealed),
        };
        out.map_err(|_| TokenError::Authentication)
    }
}

/// Tokens of one context (by default the permit id), keyed and ready.
pub struct Tokeniser {
    key: SivKey,
    context: String,
}

impl Tokeniser {
    pub fn new(token_key: &SecretKey, context: &str) -> Tokeniser {
        Tokeniser {
            key: SivKey::derive(token_key),
            context: context.into(),
        }
    }

    /// The token of a normalised identifier: unpadded base64url of the SIV tag and ciphertext.
    pub fn token(&self, identifier: &str) -> String {
        let sealed = self.key.seal(
            &[TOKEN_SCHEME, self.context.as_bytes()],
            identifier.as_bytes(),
        );
        hex::base64url(&sealed)
    }

    /// Normalises, validates and tokenises every value, in parallel; `None` where the identifier is not
    /// valid. One AES-SIV instance per task: its key schedule is not redone per value.
    pub fn tokenise(
        &self,
        rule: &IdentifierRule,
        values: &[Option<&str>],
    ) -> (Vec<Checked>, Vec<Option<String>>) {
        let SivKey::Aes256(key) = &self.key else {
            unreachable!("derived token keys are AES-256 SIV keys")
        };
        let headers = [TOKEN_SCHEME, self.context.as_bytes()];
        values
            .par_iter()
            .map_init(
                || {
                    (
                        Aes256Siv::new_from_slice(key).expect("64-byte key"),
                        String::new(),
                    )
                },
                |(siv, normal), v| match rule.check_into(*v, normal) {
                    Checked::Valid => {
                        let sealed = siv
                            .encrypt(headers, normal.as_bytes())
                            .expect("two headers");
                        (Checked::Valid, Some(hex::base64url(&sealed)))
                    }
                    status => (status, None),
                },
            )
            .unzip()
    }

    /// The identifier inside a token, if the token authenticates under this key and context.
    pub fn identifier(&self, token: &str) -> Result<String, TokenError> {
        let sealed = hex::base64url_decode(token.trim()).ok_or(TokenError::Encoding)?;
        let plain = self
            .key
            .open(&[TOKEN_SCHEME, self.context.as_bytes()], &sealed)?;
        String::from_utf8(plain).map_err(|_| TokenError::Authentication)
    }
}

/// What `reidentify` did, for its audit log: counts only, never a token or an identifier.
#[derive(Debug, serde::Serialize)]
pub struct ReidentifyRecord {
    pub event: &'static str,
    pub unix_time: u64,
    pub permit_id: String,
    pub context: String,
    pub tokens_requested: usize,
    pub identifiers_returned: usize,
    pub output: String,
}

/// Opens every listed token (one per line; blank lines ignored), all or nothing: the first token that
/// does not authenticate stops with its line number.
pub fn reidentify(
    tokeniser: &Tokeniser,
    list: &str,
    list_file: &std::path::Path,
) -> crate::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in list.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() {
            continue;
        }
        let identifier = tokeniser
            .identifier(token)
            .map_err(|e| crate::Error::Verify {
                path: list_file.into(),
                message: format!("line {}: {e}", i + 1),
            })?;
        out.push((token.to_string(), identifier));
    }
    Ok(out)
}

impl Tokeniser {
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// The `token,identifier` CSV `reidentify` writes: fields quoted as RFC 4180 says, so that an
/// identifier holding a comma, a quote or a line break cannot forge another line.
pub fn reidentified_csv(pairs: &[(String, String)]) -> String {
    fn field(text: &str) -> std::borrow::Cow<'_, str> {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\"")).into()
        } else {
            text.into()
        }
    }
    let mut out = String::from("token,identifier\n");
    for (token, identifier) in pairs {
        out += &format!("{},{}\n", field(token), field(identifier));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(&s.replace(' ', "")).unwrap()
    }

    /// RFC 5297 appendix A.1 (deterministic) and A.2 (nonce-based, the nonce as last header).
    #[test]
    fn aes_siv_matches_rfc5297_vectors() {
        let key = SivKey::from_raw(&unhex(
            "fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff",
        ))
        .unwrap();
        let ad = unhex("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627");
        let plain = unhex("11223344 55667788 99aabbcc ddee");
        let expected = unhex("85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c");
        assert_eq!(key.seal(&[&ad], &plain), expected);
        assert_eq!(key.open(&[&ad], &expected).unwrap(), plain);

        let key = SivKey::from_raw(&unhex(
            "7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f",
        ))
        .unwrap();
        let ad1 = unhex(
            "00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100",
        );
        let ad2 = unhex("10203040 50607080 90a0");
        let nonce = unhex("09f91102 9d74e35b d84156c5 635688c0");
        let plain = unhex(
            "74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553",
        );
        let expected = unhex(
            "7bdb6e3b 432667eb 06f4d14b ff2fbd0f cb900f2f ddbe4043 26601965 c889bf17 dba77ceb 094fa663 b7a3f748 ba8af829 ea64ad54 4a272e9c 485b62a3 fd5c0d",
        );
        assert_eq!(key.seal(&[&ad1, &ad2, &nonce], &plain), expected);
        assert_eq!(key.open(&[&ad1, &ad2, &nonce], &expected).unwrap(), plain);
        assert!(SivKey::from_raw(&[0u8; 48]).is_err());
    }

    fn token_key() -> SecretKey {
        SecretKey::from_text(&crate::kernels::keys::generate_key_text().unwrap(), "t").unwrap()
    }

    #[test]
    fn tokens_round_trip_and_fail_closed() {
        let key = token_key();
        let t = Tokeniser::new(&key, "FR-2029-0042");
        let token = t.token("185057800608491");
        assert_eq!(token, t.token("185057800608491"), "deterministic");
        assert!(!token.contains("185057800608491"));
        assert_eq!(t.identifier(&token).unwrap(), "185057800608491");
        // Another key, another context, or one altered character: authentication fails.
        assert_eq!(
            Tokeniser::new(&token_key(), "FR-2029-0042").identifier(&token),
            Err(TokenError::Authentication)
        );
        assert_eq!(
            Tokeniser::new(&key, "FR-2029-0099").identifier(&token),
            Err(TokenError::Authentication)
        );
        let mut altered = token.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.identifier(std::str::from_utf8(&altered).unwrap()),
            Err(TokenError::Authentication)
        );
        assert_eq!(t.identifier("not base64!"), Err(TokenError::Encoding));
        // The batch kernel agrees with the one-value path, after normalisation, and skips invalid values.
        let rule = IdentifierRule::new(crate::kernels::identifier::IdentifierKind::Nir);
        let (status, tokens) = t.tokenise(
            &rule,
            &[Some("1 85 05 78 006 084 91"), Some("185057800608490"), None],
        );
        assert_eq!(
            status,
            vec![Checked::Valid, Checked::Invalid, Checked::Missing]
        );
        assert_eq!(tokens, vec![Some(token), None, None]);
    }

    #[test]
    fn reidentified_identifiers_cannot_forge_a_line() {
        let pairs = [
            ("t1".to_string(), "P001".to_string()),
            ("t2".into(), "A,B".into()),
            ("t3".into(), "say \"x\"\nt9,FORGED".into()),
        ];
        assert_eq!(
            reidentified_csv(&pairs),
            "token,identifier\nt1,P001\nt2,\"A,B\"\nt3,\"say \"\"x\"\"\nt9,FORGED\"\n"
        );
    }
}
