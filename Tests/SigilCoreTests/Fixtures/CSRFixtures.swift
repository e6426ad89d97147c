/// CSRs that Sigil's own API cannot make, generated once with the `openssl` CLI (see README.md in this
/// directory). Only the CSRs are kept: their private keys were throw-away and never committed.
enum CSRFixtures {
    /// A 1024-bit RSA key (below every allowed size; `PrivateKey.generate` refuses it) with the URI SAN
    /// `spiffe://example.org/ns/default/sa/legacy`; its self-signature verifies.
    static let rsa1024 = """
        -----BEGIN CERTIFICATE REQUEST-----
        MIIBiTCB8wIBADAAMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC/x2KiZbEM
        iL9uYXgtNbm1tuJgq8E0Fqg5cgr9hQKejvtJ2B6TXvL1Eotyiu8p81Iletw1pxaC
        MYIfP5QwpJVTgOs9684uCohLgwu5MI5lPlgSGdQZ1DL53kf2CkkGLD8/a0hOYZ1P
        lY2BRhUVPwmBvG+HcYGjBwtJ00yCWDIooQIDAQABoEowSAYJKoZIhvcNAQkOMTsw
        OTA3BgNVHREBAf8ELTArhilzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9kZWZhdWx0
        L3NhL2xlZ2FjeTANBgkqhkiG9w0BAQsFAAOBgQA0myqC92prLevdE/9Lk4a5QMUX
        fB735rQOJHi+a8U2BirVgoxQsYwoFgYUUSQ1kcxTelbUQ2mpkl0/98oQKvqPJGY6
        VXq8VjbAUngi/HwutVABN2/wuYb2ARg7BJRfG96r6MF9r6kW8hiYo4uCVB1Nf5wJ
        GD57ZleZ5Y+sDXsHLA==
        -----END CERTIFICATE REQUEST-----
        """

    /// An EC P-256 key asking for basicConstraints cA=TRUE, with the URI SAN
    /// `spiffe://example.org/ns/default/sa/web`; its self-signature verifies.
    static let requestsCA = """
        -----BEGIN CERTIFICATE REQUEST-----
        MIIBEzCBugIBADAAMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKoX24bMILRiN
        4wN9qpHx3kohnvOxIPqhFOyu4HWbgb5WkXTDFY2qbanWw6I0Er8h+EF2wc+Yz0g9
        P3X7xYh5BqBYMFYGCSqGSIb3DQEJDjFJMEcwDwYDVR0TAQH/BAUwAwEB/zA0BgNV
        HREBAf8EKjAohiZzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9kZWZhdWx0L3NhL3dl
        YjAKBggqhkjOPQQDAgNIADBFAiA7u7oCeFTogsn4/UrgT/hZ31Ryv9KM901Dy1l4
        ycsGvgIhAMJ+kfblsTLM6EfhiWBZQ0K/4ICdHXVmL5/pCI9EzN97
        -----END CERTIFICATE REQUEST-----
        """
}
