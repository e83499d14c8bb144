//! `oms-token` as a person runs it: the token it prints is what the edge accepts, with the
//! settings the edge would read, and without a secret it says where one goes.

use std::process::{Command, Output};
use std::time::Duration;

use oms_config::AuthConfig;
use oms_edge::auth::{Caller, Verifier};

const SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes";

/// Runs `oms-token` with only `env` (no OMS_* of the machine leaks in) and no config file.
fn oms_token(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oms-token"))
        .args(args)
        .env_clear()
        .env("OMS_CONFIG", "/nonexistent/oms.toml")
        .envs(env.iter().copied())
        .output()
        .expect("oms-token runs")
}

fn printed_token(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "just the token: {stdout:?}");
    lines[0].to_string()
}

fn claims(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims
}

#[test]
fn prints_a_token_the_edge_accepts() {
    let env = [("OMS_AUTH__HS256_SECRET", SECRET)];
    let verifier = Verifier::new(&AuthConfig::default(), Some(SECRET.as_bytes()), None);

    let token = printed_token(&oms_token(
        &["--customer", "OMS-Cust-001", "--ttl", "1h"],
        &env,
    ));
    assert_eq!(
        verifier.verify(&token),
        Ok(Caller::customer("OMS-Cust-001"))
    );
    let c = claims(&token);
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (Some("oms"), Some("oms"))
    );

    let token = printed_token(&oms_token(&["--operator"], &env));
    assert_eq!(verifier.verify(&token), Ok(Caller::operator("ops")));
    let c = claims(&token);
    let ttl = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(
        Duration::from_secs(ttl),
        Duration::from_secs(12 * 3600),
        "12 h by default"
    );

    let token = printed_token(&oms_token(&["--operator", "--name", "alice"], &env));
    assert_eq!(verifier.verify(&token), Ok(Caller::operator("alice")));

    // Issuer and audience come from the config, as the edge's do.
    let custom = [
        ("OMS_AUTH__HS256_SECRET", SECRET),
        ("OMS_AUTH__ISSUER", "acme"),
        ("OMS_AUTH__AUDIENCE", "acme-oms"),
    ];
    let token = printed_token(&oms_token(&["--operator"], &custom));
    assert!(
        verifier.verify(&token).is_err(),
        "not for the default audience"
    );
    let c = claims(&token);
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (Some("acme"), Some("acme-oms"))
    );
}

#[test]
fn reads_the_provisioned_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("creds")).unwrap();
    let provisioned = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2YtcmFuZG9t";
    std::fs::write(
        dir.path().join("creds/edge-jwt.secret"),
        format!("{provisioned}\n"),
    )
    .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let token = printed_token(&oms_token(
        &["--customer", "OMS-Cust-002"],
        &[("OMS_DATA_DIR", data_dir)],
    ));
    let verifier = Verifier::new(&AuthConfig::default(), Some(provisioned.as_bytes()), None);
    assert_eq!(
        verifier.verify(&token),
        Ok(Caller::customer("OMS-Cust-002"))
    );
}

#[test]
fn says_what_is_missing_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let output = oms_token(&["--operator"], &[("OMS_DATA_DIR", data_dir)]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OMS_AUTH__HS256_SECRET") && stderr.contains("edge-jwt.secret"),
        "{stderr}"
    );

    let env = [("OMS_AUTH__HS256_SECRET", SECRET)];
    for args in [
        &[][..],
        &["--customer", "OMS-Cust-001", "--operator"][..],
        &["--customer", "not valid!"][..],
        &["--customer", "OMS-Cust-001", "--name", "x"][..],
        &["--operator", "--ttl", "soon"][..],
    ] {
        let output = oms_token(args, &env);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// `--es256-key`: a token that a verifier holding the key's JWKS alone accepts (what compose's
/// services check Prometheus's scrapes with), and that the HS256 secret does not.
#[test]
fn signs_es256_with_the_provisioned_key() {
    use oms_edge::auth::es256;
    let dir = tempfile::tempdir().unwrap();
    let key = es256::ensure(dir.path()).expect("a key and its JWKS");
    let pem = dir.path().join(es256::KEY_FILE);
    let output = oms_token(
        &[
            "--operator",
            "--name",
            "prometheus",
            "--es256-key",
            pem.to_str().unwrap(),
        ],
        &[],
    );
    let token = printed_token(&output);
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&std::fs::read(dir.path().join(es256::JWKS_FILE)).unwrap()).unwrap();
    assert_eq!(jwks, key.jwks());
    let public_only = Verifier::new(&AuthConfig::default(), None, Some(&jwks));
    assert_eq!(
        public_only.verify(&token),
        Ok(Caller::operator("prometheus"))
    );
    let secret_only = Verifier::new(&AuthConfig::default(), Some(SECRET.as_bytes()), None);
    assert!(secret_only.verify(&token).is_err(), "not an HS256 token");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid, jwks.keys[0].common.key_id);

    let missing = oms_token(&["--operator", "--es256-key", "/nonexistent.pem"], &[]);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty(), "no token");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.pem"),
        "says which file"
    );
}
