//! The installation's ES256 signing key, for tokens that a verifier checks with the public half
//! only (a JWKS, `auth.jwks`). Compose gives the JWKS to the services that check Prometheus's
//! scrapes: with the HS256 secret instead, each of them could mint an operator's token.
//!
//! The key is PKCS#8 PEM (`<creds_dir>/edge-jwt-es256.pem`, made once by `oms-provision creds`);
//! its JWKS (`edge-jwks.json`) is written beside it. The `kid` is the key's RFC 7638 thumbprint,
//! so the two never disagree.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::jwk::{
    CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oms_config::AuthConfig;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use crate::{Claims, Role};

/// The signing key's file, in the credentials folder.
pub const KEY_FILE: &str = "edge-jwt-es256.pem";
/// Its public half, as the JWKS verifiers load (`auth.jwks`), beside it.
pub const JWKS_FILE: &str = "edge-jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a P-256 private key in PKCS#8 PEM: {1}")]
    NotAKey(String, jsonwebtoken::errors::Error),
}

/// A P-256 key that signs ES256 tokens.
pub struct Es256Key {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Es256Key {
    /// A new key, as PKCS#8 PEM.
    pub fn generate_pem() -> String {
        let key = loop {
            // A random scalar is out of range with a chance of about 2^-32: draw again.
            if let Ok(key) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        key.to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes as PKCS#8")
            .to_string()
    }

    /// The key of a PKCS#8 PEM; `name` says where it came from, in errors.
    pub fn from_pem(pem: &[u8], name: &str) -> Result<Es256Key, KeyError> {
        let not_a_key = |e| KeyError::NotAKey(name.to_string(), e);
        let encoding = EncodingKey::from_ec_pem(pem).map_err(not_a_key)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(not_a_key)?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::ES256),
            key_id: Some(jwk.thumbprint(ThumbprintHash::SHA256)),
            ..Default::default()
        };
        Ok(Es256Key { encoding, jwk })
    }

    /// The key in `path`.
    pub fn read(path: &Path) -> Result<Es256Key, KeyError> {
        let pem = std::fs::read(path).map_err(io(path))?;
        Es256Key::from_pem(&pem, &path.display().to_string())
    }

    /// Its public half, as the JWKS a verifier loads.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// A token for `sub` as `role`, valid for `ttl`, with `iss`/`aud` from `cfg`.
    pub fn mint(&self, cfg: &AuthConfig, sub: &str, role: Role, ttl: Duration) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk.common.key_id.clone();
        let claims = Claims::new(cfg, sub, role, ttl);
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("ES256 over serializable claims cannot fail")
    }
}

/// Makes the signing key in `creds_dir` if there is none (owner only), and writes its JWKS
/// beside it (public, readable by all). Safe to run at every start.
pub fn ensure(creds_dir: &Path) -> Result<Es256Key, KeyError> {
    let path = creds_dir.join(KEY_FILE);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(Es256Key::generate_pem().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io(&path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let key = Es256Key::read(&path)?;
    let jwks_path = creds_dir.join(JWKS_FILE);
    let jwks = serde_json::to_string_pretty(&key.jwks()).expect("a JWKS serializes");
    let tmp = creds_dir.join(format!(".{JWKS_FILE}.tmp"));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(jwks.as_bytes()).and_then(|()| f.sync_all()))
        // Public keys only: readable by all, whatever the umask.
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, &jwks_path));
    written.map_err(io(&jwks_path))?;
    Ok(key)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verifier;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_token_it_signs_is_checked_with_its_jwks_alone() {
        let cfg = AuthConfig::default();
        let key = Es256Key::from_pem(Es256Key::generate_pem().as_bytes(), "new").unwrap();
        let jwks = key.jwks();
        let public_only = Verifier::new(&cfg, None, Some(&jwks));
        let token = key.mint(&cfg, "prometheus", Role::Operator, HOUR);
        let caller = public_only
            .verify(&token)
            .expect("accepted by the public key");
        assert_eq!(
            (caller.sub.as_str(), caller.role),
            ("prometheus", Role::Operator)
        );

        // Neither an HS256 token (whoever holds only the JWKS cannot have made it, and its
        // secret is not there) nor another key's token gets in.
        let secret = b"0123456789abcdef0123456789abcdef-test";
        let hs256 = crate::mint(&cfg, secret, "mallory", Role::Operator, HOUR);
        assert!(public_only.verify(&hs256).is_err(), "an HS256 token");
        let other = Es256Key::from_pem(Es256Key::generate_pem().as_bytes(), "other").unwrap();
        let forged = other.mint(&cfg, "mallory", Role::Operator, HOUR);
        assert!(public_only.verify(&forged).is_err(), "another key's token");
        // The JWKS holds the public point only.
        let text = serde_json::to_string(&jwks).unwrap();
        assert!(!text.contains("\"d\""), "{text}");
    }

    #[test]
    fn the_key_is_made_once_and_its_jwks_kept_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path()).unwrap();
        let again = ensure(dir.path()).unwrap();
        assert_eq!(first.jwks(), again.jwks(), "kept");
        let kid = first.jwk.common.key_id.clone().expect("a kid");
        let written: JwkSet =
            serde_json::from_slice(&std::fs::read(dir.path().join(JWKS_FILE)).unwrap()).unwrap();
        assert_eq!(written.keys[0].common.key_id.as_deref(), Some(kid.as_str()));
        let mode = |f: &str| {
            let meta = std::fs::metadata(dir.path().join(f)).unwrap();
            meta.permissions().mode() & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600, "the private key: its owner's");
        assert_eq!(mode(JWKS_FILE), 0o644, "the public keys: anyone's");
        assert!(
            Es256Key::from_pem(b"not a key", "junk").is_err(),
            "junk is not a key"
        );
    }
}
