//! Throwaway signing keys for the tests, made at run time so that no key is ever committed: an
//! RSA 2048 key (kid `rsa-1`, RS256) and a P-256 key (kid `ec-1`, ES256), as the PEMs
//! jsonwebtoken reads and as the JWKS an edge with `auth.jwks` loads. Made once per test
//! binary: an RSA key takes a while in a debug build.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use serde::Serialize;

pub const RSA_KID: &str = "rsa-1";
pub const EC_KID: &str = "ec-1";

pub struct TestKeys {
    /// PKCS#8 PEM (`PRIVATE KEY`), for `EncodingKey::from_rsa_pem`.
    pub rsa_private_pem: String,
    /// SPKI PEM (`PUBLIC KEY`), for `DecodingKey::from_rsa_pem`.
    pub rsa_public_pem: String,
    /// PKCS#8 PEM (`PRIVATE KEY`), for `EncodingKey::from_ec_pem`.
    pub ec_private_pem: String,
    /// `{"keys": [...]}`: the RSA key (`alg` RS256) and the EC key (no `alg`), both `use` sig.
    pub jwks: String,
    rsa: EncodingKey,
}

/// The keys of this test binary.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(generate)
}

/// `claims` signed RS256 with the RSA key, kid `rsa-1`.
pub fn rs256(claims: &impl Serialize) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(RSA_KID.into());
    jsonwebtoken::encode(&header, claims, &keys().rsa).expect("RS256 over serializable claims")
}

fn generate() -> TestKeys {
    let rsa = rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("an RSA key");
    let ec = p256::SecretKey::random(&mut OsRng);
    let point = ec.public_key().to_encoded_point(false);
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let jwks = serde_json::json!({"keys": [
        {
            "kty": "RSA",
            "kid": RSA_KID,
            "use": "sig",
            "alg": "RS256",
            "n": b64(&rsa.n().to_bytes_be()),
            "e": b64(&rsa.e().to_bytes_be()),
        },
        {
            "kty": "EC",
            "kid": EC_KID,
            "use": "sig",
            "crv": "P-256",
            "x": b64(point.x().expect("an uncompressed point")),
            "y": b64(point.y().expect("an uncompressed point")),
        },
    ]});
    TestKeys {
        rsa_private_pem: rsa.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
        rsa_public_pem: rsa
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM"),
        ec_private_pem: ec.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
        jwks: jwks.to_string(),
        rsa: EncodingKey::from_rsa_der(rsa.to_pkcs1_der().expect("DER").as_bytes()),
    }
}
