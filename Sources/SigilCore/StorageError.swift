/// A store operation that could not be carried out. `reason` is for logs; it never holds key material.
public struct StorageError: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case unavailable, notFound = "not_found", corrupt, insecure, conflict
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The database cannot be opened, read or written (disk full, permissions, server down).
        public static let unavailable = Code(.unavailable)
        public static let notFound = Code(.notFound)
        /// Stored data fails to decode or authenticate (tampering, wrong key-encryption key).
        public static let corrupt = Code(.corrupt)
        /// A file holding secrets is readable by others.
        public static let insecure = Code(.insecure)
        /// A uniqueness or state rule would be broken.
        public static let conflict = Code(.conflict)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int

    public init(_ code: Code, reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "store_\(code): \(reason)" }
    public static func == (lhs: StorageError, rhs: StorageError) -> Bool { lhs.code == rhs.code }
}
