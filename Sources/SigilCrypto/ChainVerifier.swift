internal import COpenSSL
import Foundation

/// The outcome of a path validation.
public enum ChainVerification: Equatable, Sendable {
    case valid
    /// OpenSSL's verification error text and the depth it was found at.
    case invalid(reason: String, depth: Int)
}

/// RFC 5280 path validation through OpenSSL's X509_STORE, in strict mode.
public enum ChainVerifier {
    /// Verifies `leaf` up to one of `roots`, using `intermediates` as untrusted candidates, at `time`.
    /// With `crls`, every certificate of the path must be covered by one (X509_V_FLAG_CRL_CHECK_ALL).
    public static func verify(
        _ leaf: Certificate, intermediates: [Certificate], roots: [Certificate],
        crls: [CertificateRevocationList] = [], at time: Date
    ) throws -> ChainVerification {
        guard let store = X509_STORE_new() else { throw OpenSSLError.drain(.operationFailed, "X509_STORE_new") }
        defer { X509_STORE_free(store) }
        for root in roots {
            guard X509_STORE_add_cert(store, root.keyedPointer) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "X509_STORE_add_cert")
            }
        }
        for crl in crls {
            guard X509_STORE_add_crl(store, crl.pointer) == 1 else {
                throw OpenSSLError.drain(.operationFailed, "X509_STORE_add_crl")
            }
        }
        var flags = UInt(X509_V_FLAG_X509_STRICT)
        if !crls.isEmpty { flags |= UInt(X509_V_FLAG_CRL_CHECK) | UInt(X509_V_FLAG_CRL_CHECK_ALL) }
        X509_STORE_set_flags(store, flags)

        guard let untrusted = copenssl_sk_X509_new_null() else {
            throw OpenSSLError.drain(.operationFailed, "sk_X509_new")
        }
        defer { copenssl_sk_X509_free(untrusted) }  // the stack only borrows the certificates
        for intermediate in intermediates {
            guard copenssl_sk_X509_push(untrusted, intermediate.keyedPointer) > 0 else {
                throw OpenSSLError.drain(.operationFailed, "sk_X509_push")
            }
        }
        guard let context = X509_STORE_CTX_new() else {
            throw OpenSSLError.drain(.operationFailed, "X509_STORE_CTX_new")
        }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, leaf.keyedPointer, untrusted) == 1 else {
            throw OpenSSLError.drain(.operationFailed, "X509_STORE_CTX_init")
        }
        X509_STORE_CTX_set_time(context, 0, time_t(time.timeIntervalSince1970))
        let result = X509_verify_cert(context)
        drainErrorQueue()
        if result == 1 { return .valid }
        let code = X509_STORE_CTX_get_error(context)
        let reason = String(cString: X509_verify_cert_error_string(Int(code)))
        return .invalid(reason: reason, depth: Int(X509_STORE_CTX_get_error_depth(context)))
    }
}
