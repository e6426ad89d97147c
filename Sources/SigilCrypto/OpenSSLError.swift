internal import COpenSSL

/// An operation on the system OpenSSL library that could not be carried out.
///
/// `reason` is written for logs: it holds the drained OpenSSL error queue and never key material.
public struct OpenSSLError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable classification; compare errors by code only.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case invalidEncoding = "invalid_encoding"
            case unsupportedKey = "unsupported_key"
            case invalidArgument = "invalid_argument"
            case operationFailed = "operation_failed"
            case decryptionFailed = "decryption_failed"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Bytes that do not decode as the expected PEM/DER structure.
        public static let invalidEncoding = Code(.invalidEncoding)
        /// A key type or size this wrapper does not handle.
        public static let unsupportedKey = Code(.unsupportedKey)
        /// A value the caller passed that OpenSSL cannot use (e.g. an IP SAN that is not an address).
        public static let invalidArgument = Code(.invalidArgument)
        /// An OpenSSL call failed on valid input (allocation, signing, encoding).
        public static let operationFailed = Code(.operationFailed)
        /// Authenticated decryption failed: wrong key or tampered ciphertext.
        public static let decryptionFailed = Code(.decryptionFailed)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int

    init(code: Code, reason: String, file: String, line: Int) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(reason)" }

    public static func == (lhs: OpenSSLError, rhs: OpenSSLError) -> Bool { lhs.code == rhs.code }

    /// Builds an error at the failure site, draining the thread's OpenSSL error queue into `reason`.
    static func drain(
        _ code: Code, _ what: String, file: String = #fileID, line: Int = #line
    ) -> OpenSSLError {
        let queue = drainErrorQueue()
        let reason = queue.isEmpty ? what : "\(what): \(queue.joined(separator: "; "))"
        return OpenSSLError(code: code, reason: reason, file: file, line: line)
    }
}

/// Empties the calling thread's OpenSSL error queue, returning one string per entry.
@discardableResult
func drainErrorQueue() -> [String] {
    var messages: [String] = []
    while true {
        let error = ERR_get_error()
        if error == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(error, &buffer, buffer.count)
        messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return messages
}
