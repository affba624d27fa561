//! TLS material for the tests, made with the openssl command.

/// A test CA and a certificate for `localhost` and `127.0.0.1` signed by it, made with the
/// openssl command (the test fails, never skips, without it): (CA file, chain file, key file).
pub fn test_certificates(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed for the TLS tests");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
    let (leaf, key) = (path("leaf.pem"), path("leaf.key"));
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=myelin test CA",
    ]);
    openssl(&args);
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &key,
        "-out",
        &leaf,
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    openssl(&args);
    let chain = path("chain.pem");
    let text = std::fs::read_to_string(&leaf).unwrap() + &std::fs::read_to_string(&ca).unwrap();
    std::fs::write(&chain, text).unwrap();
    (ca, chain, key)
}
